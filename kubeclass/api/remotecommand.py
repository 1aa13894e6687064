"""The remote command protocol of pods/exec and pods/attach over WebSocket (k8s.io/apimachinery's
util/remotecommand and the API server's wsstream): one binary message per chunk, its first byte the channel.

Versions, as the client offers them in Sec-WebSocket-Protocol:
- `channel.k8s.io` (v1) and `v2.channel.k8s.io`: stdin 0, stdout 1, stderr 2, error 3 (plain text);
- `v3.channel.k8s.io`: adds resize 4 (JSON {"Width": w, "Height": h});
- `v4.channel.k8s.io`: the error channel carries a metav1.Status (its exit code in details.causes);
- `v5.channel.k8s.io` (kubectl 1.30+): adds close 255 ([255, channel]: that stream ended, e.g. stdin's EOF).

Pure: no I/O; the node agent and the API server both use it."""
from __future__ import annotations

import json

V1, V2, V3, V4, V5 = "channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io"
PROTOCOLS = (V5, V4, V3, V2, V1)          # the server's preference
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def offered(header: str | list[str] | None) -> list[str]:
    """The protocols a client offers that we speak, in the client's order."""
    if header is None:
        return []
    items = header if isinstance(header, list) else [header]
    out = []
    for item in items:
        for p in item.split(","):
            p = p.strip()
            if p in PROTOCOLS and p not in out:
                out.append(p)
    return out


def exit_status(code: int, cmd: list[str]) -> dict:
    """What the error channel carries (v4+) when the command ended with code, as kubelet words it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {_go_list(cmd)}, exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
            "details": {"causes": [{"message": message}]}, "code": 500}


def error_frame(protocol: str, code: int | None, cmd: list[str], message: str = "") -> bytes | None:
    """The error channel's message at the end of a session (None: nothing to send)."""
    if protocol in (V4, V5):
        st = exit_status(code, cmd) if code is not None else error_status(message)
        return bytes([ERROR]) + json.dumps(st, separators=(",", ":")).encode()
    if code == 0:
        return None
    text = message or f"command terminated with non-zero exit code: error executing command {_go_list(cmd)}, exit code {code}"
    return bytes([ERROR]) + text.encode()


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a resize channel message, None when it is not one."""
    try:
        d = json.loads(data)
        w, h = int(d.get("Width", 0)), int(d.get("Height", 0))
    except (ValueError, TypeError, AttributeError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"
