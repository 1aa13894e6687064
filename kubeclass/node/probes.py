"""Container probes as kubelet's prober runs them: startupProbe, livenessProbe and readinessProbe with
exec, tcpSocket and httpGet actions, upstream's timing fields (initialDelaySeconds, periodSeconds,
timeoutSeconds, successThreshold, failureThreshold) and messages (`Liveness probe failed: ...`).

exec runs through the Pod's runtime (`runc exec`, `runsc exec`: inside the gVisor sandbox). tcpSocket and
httpGet connect from the node to the Pod's IP, as kubelet's do (a gVisor Pod answers from its own netstack);
a Pod without an address of its own is reached on its loopback from inside its network namespace (nsenter)."""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

KINDS = ("startup", "liveness", "readiness")
FIELDS = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
TITLE = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}

# the connection a tcpSocket / httpGet probe makes, run inside the Pod's network namespace
NET_SCRIPT = r"""
import socket, sys, http.client, ssl
kind, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    if kind == "tcp":
        socket.create_connection((host, port), timeout=timeout).close()
        sys.exit(0)
    scheme, path = sys.argv[5], sys.argv[6]
    headers = dict(h.split(":", 1) for h in sys.argv[7:])
    headers.setdefault("User-Agent", "kube-probe/1.32")
    headers.setdefault("Accept", "*/*")
    if scheme == "HTTPS":
        ctx = ssl._create_unverified_context()
        c = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    if 200 <= r.status < 400:
        sys.exit(0)
    print(f"HTTP probe failed with statuscode: {r.status}")
    sys.exit(1)
except socket.timeout:
    print(f"Get \"{sys.argv[5].lower() if kind == 'http' else 'tcp'}://{host}:{port}{sys.argv[6] if kind == 'http' else ''}\": context deadline exceeded" if kind == "http"
          else f"dial tcp {host}:{port}: i/o timeout")
    sys.exit(1)
except OSError as e:
    what = "connection refused" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
    print(f"Get \"{sys.argv[5].lower()}://{host}:{port}{sys.argv[6]}\": dial tcp {host}:{port}: connect: {what}" if kind == "http"
          else f"dial tcp {host}:{port}: connect: {what}")
    sys.exit(1)
"""


def defaults(probe: dict) -> dict:
    p = dict(probe)
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)
    p.setdefault("initialDelaySeconds", 0)
    return p


@dataclass
class ProbeState:
    kind: str
    spec: dict
    next_at: float
    successes: int = 0
    failures: int = 0
    result: bool | None = None   # the verdict after the thresholds (None: not decided yet)


@dataclass
class ContainerProbes:
    """One container attempt's probes and what they decided."""
    states: dict[str, ProbeState] = field(default_factory=dict)

    @classmethod
    def for_container(cls, spec: dict, started: float) -> "ContainerProbes":
        out = cls()
        for kind in KINDS:
            if spec.get(FIELDS[kind]):
                p = defaults(spec[FIELDS[kind]])
                out.states[kind] = ProbeState(kind, p, started + p["initialDelaySeconds"])
        return out

    @property
    def started(self) -> bool:
        s = self.states.get("startup")
        return s is None or s.result is True

    @property
    def ready(self) -> bool:
        if not self.started:
            return False
        r = self.states.get("readiness")
        return r is None or r.result is True

    def due(self, now: float) -> list[ProbeState]:
        """The probes to run now: the startup probe alone until it passes, then liveness and readiness."""
        if "startup" in self.states and not self.started:
            s = self.states["startup"]
            return [s] if now >= s.next_at else []
        return [s for k, s in self.states.items() if k != "startup" and now >= s.next_at]

    def next_due(self, now: float) -> float | None:
        pending = [s.next_at for s in self.states.values()
                   if (s.kind == "startup") == (not self.started) or (s.kind != "startup" and self.started)]
        return max(0.0, min(pending) - now) if pending else None

    def record(self, s: ProbeState, ok: bool, now: float) -> str | None:
        """Count one result; returns 'failed' when the probe crossed its failure threshold (liveness and
        startup: restart the container), 'passed' / 'unready' on readiness changes."""
        s.next_at = now + s.spec["periodSeconds"]
        if ok:
            s.successes, s.failures = s.successes + 1, 0
            if s.result is not True and s.successes >= (1 if s.kind != "readiness" else s.spec["successThreshold"]):
                s.result = True
                return "passed"
            return None
        s.failures, s.successes = s.failures + 1, 0
        if s.failures >= s.spec["failureThreshold"]:
            changed = s.result is not False
            s.result = False
            if s.kind in ("liveness", "startup"):
                s.failures = 0
                return "failed"
            return "unready" if changed else None
        return None


def resolve_port(port, container: dict) -> int | None:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


async def run_network(netns: str | None, args: list[str], timeout: float) -> tuple[bool, str]:
    """The tcpSocket / httpGet connection, made by a helper process inside the Pod's network namespace."""
    argv = ([("nsenter"), f"--net={netns}"] if netns else []) + [sys.executable, "-c", NET_SCRIPT, *args]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 5)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return False, "probe timed out"
    return proc.returncode == 0, out.decode(errors="replace").strip()


async def run(probe: dict, container: dict, sandbox, cid: str, pod_host: str) -> tuple[bool, str]:
    """(success, message) of one probe of a container, through its sandbox."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if probe.get("exec"):
        cmd = probe["exec"].get("command") or []
        try:
            code, out = await sandbox.exec(cid, cmd, timeout)
        except asyncio.TimeoutError:
            return False, f"command \"{' '.join(cmd)}\" timed out"
        except Exception as e:  # noqa: BLE001 - the runtime's complaint is the probe's message
            return False, str(e)
        return code == 0, out.strip()
    if probe.get("tcpSocket") or probe.get("httpGet"):
        act = probe.get("tcpSocket") or probe.get("httpGet")
        port = resolve_port(act.get("port"), container)
        if port is None:
            return False, f"unable to resolve port {act.get('port')!r} of container {container.get('name')}"
        host = act.get("host") or pod_host
        netns = None
        if pod_host == "127.0.0.1":   # a Pod without an address of its own: from inside its namespace
            try:
                netns = sandbox.probe_netns()
            except Exception as e:  # noqa: BLE001
                return False, str(e)
        if probe.get("tcpSocket"):
            return await run_network(netns, ["tcp", host, str(port), str(timeout)], timeout)
        h = probe["httpGet"]
        headers = [f"{x.get('name')}:{x.get('value', '')}" for x in h.get("httpHeaders") or []]
        return await run_network(netns, ["http", host, str(port), str(timeout), h.get("scheme", "HTTP"), h.get("path", "/"), *headers],
                                 timeout)
    return False, "probe has no handler (exec, tcpSocket or httpGet)"
