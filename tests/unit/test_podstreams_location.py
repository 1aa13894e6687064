"""Where the API server sends a pods/exec, attach or portforward request (kubeclass/server/podstreams.py), and the
refusals upstream words the same way."""
import pytest

from kubeclass.api.errors import StatusError
from kubeclass.server import podstreams

POD = {"metadata": {"name": "web", "namespace": "default"},
       "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}],
                "ephemeralContainers": [{"name": "dbg"}]}}
NODE = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}


def test_container_choice_as_upstream():
    with pytest.raises(StatusError) as e:
        podstreams.choose_container(POD, "")
    assert e.value.status()["message"] == ("a container name must be specified for pod web, choose one of: [a b] or one of "
                                           "the init containers: [i] or one of the ephemeral containers: [dbg]")
    assert podstreams.choose_container(POD, "dbg") == "dbg"
    with pytest.raises(StatusError, match="container x is not valid for pod web"):
        podstreams.choose_container(POD, "x")


def test_exec_and_attach_locations_use_kubelets_parameters():
    q = {"container": ["a"], "command": ["sh", "-c", "echo hi"], "stdin": ["true"], "stdout": ["1"], "tty": ["false"]}
    url = podstreams.exec_location(POD, NODE, q)
    assert url == "https://10.0.0.7:10250/exec/default/web/a?command=sh&command=-c&command=echo+hi&input=1&output=1"
    assert podstreams.exec_location(POD, NODE, q, "attach") == "https://10.0.0.7:10250/attach/default/web/a?input=1&output=1"


def test_portforward_location_and_protocols():
    assert podstreams.portforward_location(POD, NODE, {"ports": ["8080,9090"]}) == \
        "https://10.0.0.7:10250/portForward/default/web?port=8080&port=9090"
    with pytest.raises(StatusError, match="invalid port"):
        podstreams.portforward_location(POD, NODE, {"ports": ["70000"]})
    assert podstreams.portforward_protocols("SPDY/3.1+portforward.k8s.io") == ["SPDY/3.1+portforward.k8s.io"]
    assert podstreams.portforward_protocols("v5.channel.k8s.io,v4.channel.k8s.io") == ["v4.channel.k8s.io"]


def test_a_pod_without_a_node():
    with pytest.raises(StatusError, match="pod web does not have a host assigned"):
        podstreams.exec_location({**POD, "spec": {**POD["spec"], "nodeName": ""}}, None, {"container": ["a"]})
