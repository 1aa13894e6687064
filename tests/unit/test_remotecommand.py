"""The remote command protocol's pure parts: subprotocol negotiation, the error channel's Status, resizes."""
import json

from kubeclass.api import remotecommand as rc


def test_offered_keeps_the_clients_order_and_drops_unknown():
    assert rc.offered("v5.channel.k8s.io") == ["v5.channel.k8s.io"]
    assert rc.offered("base64.channel.k8s.io, v4.channel.k8s.io,channel.k8s.io") == ["v4.channel.k8s.io", "channel.k8s.io"]
    assert rc.offered(None) == []


def test_exit_status_as_kubelet_words_it():
    assert rc.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    st = rc.exit_status(3, ["sh", "-c", "exit 3"])
    assert st["reason"] == "NonZeroExitCode" and st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert st["message"] == "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"


def test_error_frames_per_protocol():
    f = rc.error_frame(rc.V5, 0, ["true"])
    assert f[0] == rc.ERROR and json.loads(f[1:])["status"] == "Success"
    assert rc.error_frame(rc.V1, 0, ["true"]) is None          # v1-v3: nothing on success
    assert rc.error_frame(rc.V2, 2, ["false"]).startswith(b"\x03command terminated with non-zero exit code")


def test_resize():
    assert rc.parse_resize(b'{"Width":80,"Height":24}') == (80, 24)
    assert rc.parse_resize(b'{"Width":0,"Height":24}') is None
    assert rc.parse_resize(b"not json") is None
    assert rc.parse_resize(b"[1,2]") is None
