"""No request can crash the server or corrupt the store: garbage bodies, paths, headers and methods
all get a Status (never a traceback), and the stored data is intact afterwards."""
from __future__ import annotations

import os
import random
import subprocess
import sys

from conftest import ROOT

PATHS = ["/api/v1/namespaces/default/pods", "/apis/node.k8s.io/v1/runtimeclasses", "/api/v1/nodes/x",
         "/apis/node.k8s.io/v1alpha1/runtimeclasses/x", "/api/v1/namespaces/default/pods/x/status",
         "/apis/apps/v1/namespaces/default/deployments/x/scale", "/api/v1/namespaces/default/pods/x/binding",
         "/api/v1/namespaces", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "/openapi/v3/apis/none/v1",
         "/api/v1/namespaces/default/pods/x/log", "/apis/node.k8s.io", "/api/v1/namespaces/../../etc/passwd"]
CTYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/merge-patch+json",
          "application/strategic-merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml", ""]


def test_garbage_never_crashes(cluster):
    rng = random.Random(1234)
    # the survivor lives where no garbage request can legitimately touch it (DELETE on a listed
    # collection is a valid deletecollection)
    cluster.request("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "survivor"}})
    bodies = [b"", b"null", b"[]", b"{}", b'{"metadata":null}', b'{"metadata":{"name":5}}', b'{"spec":[1,2]}',
              b"k8s\x00" + bytes(rng.randrange(256) for _ in range(40)), b"\xff\xfe", b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"},"spec":{"containers":"no"}}',
              b'[{"op":"remove","path":"/nope"}]', b'{"metadata":{"labels":{"a":{"b":1}}}}', b"- a\n- b\n"]
    for _ in range(300):
        method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE"])
        st, _, body = cluster.request(method, rng.choice(PATHS), rng.choice(bodies), {"Content-Type": rng.choice(CTYPES)})
        assert st < 500, (method, st, body)
        if st >= 400:
            assert isinstance(body, dict) and body.get("kind") == "Status", body
            assert "Traceback" not in body.get("message", "")
    st, _, body = cluster.request("GET", "/api/v1/namespaces/default/serviceaccounts/survivor")
    assert st == 200 and body["metadata"]["name"] == "survivor"
    assert cluster.request("GET", "/readyz", token=None)[0] == 200
    cluster.request("DELETE", "/api/v1/namespaces/default/serviceaccounts/survivor")


def test_a_second_server_on_a_taken_port_exits_with_a_clear_error(cluster, tmp_path):
    """The listener binds with SO_REUSEPORT; kubeclass checks the address first so a second server
    never silently shares the port with the first."""
    r = subprocess.run([sys.executable, "-m", "kubeclass.cli", "up", "--data-dir", str(tmp_path / "second"),
                        "--port", str(cluster.port), "--no-node", "--no-scheduler", "--no-simulator"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{cluster.port}" in r.stderr and "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr
    st, _, _ = cluster.request("GET", "/api/v1/namespaces")
    assert st == 200


def test_a_second_up_whose_node_port_is_taken_fails_at_once(cluster, tmp_path):
    """Two `kubeclass up` on one machine: the second one's node agent would die on 10250 while its Node stayed
    Ready and `kubectl logs` reached the first cluster's agent; now it stops before starting anything."""
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "kubeclass.cli", "up", "--data-dir", str(tmp_path / "second"),
                            "--port", "0", "--node-port", str(port), "--no-scheduler", "--no-simulator"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: the node agent cannot listen on 127.0.0.1:{port} (Address already in use)" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "second" / "kubeclass.db")    # nothing was started
