"""kubectl port-forward (issue 14): kubectl 1.32 tunnels SPDY through a WebSocket to the API server, which relays
it to the agent; the agent connects into the runc Pod's network namespace (localhost, as containerd does) or to
the gVisor Pod's netstack, and the official client's portforward() (WebSocket channels) works too."""
from __future__ import annotations

import os
import time

import pytest
import yaml

from conftest import free_port
from nodecluster import IMAGE, PortForward, node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n---\n"
           "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: standard\nhandler: runc\n")
# httpd on 8080 on every address, plus one listener bound to the Pod's loopback only (port 9090)
SERVE = ("mkdir -p /www /lo; head -c 3000000 /dev/urandom > /www/blob; md5sum /www/blob | cut -c1-32 > /www/sum; "
         "echo hello from $HOSTNAME > /www/index.html; echo loopback only > /lo/index.html; "
         "httpd -p 127.0.0.1:9090 -h /lo; exec httpd -f -p 8080 -h /www")


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    for rc in ("standard", "gvisor"):
        node_cluster.ok("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pf-{rc}"},
            "spec": {"runtimeClassName": rc, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sh", "-c", SERVE], "ports": [{"containerPort": 8080}]}]}}))
    for rc in ("standard", "gvisor"):
        node_cluster.wait_phase(f"pf-{rc}", ("Running",))
    yield node_cluster
    node_cluster.kubectl("delete", "pod", "pf-standard", "pf-gvisor", "--grace-period=1")


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_kubectl_port_forward_reaches_the_pod(nc, rc):
    pf = PortForward(nc, f"pod/pf-{rc}", "8080")
    try:
        assert pf.get() == f"hello from pf-{rc}\n".encode()
        import hashlib
        blob = pf.get("/blob")
        assert len(blob) == 3_000_000 and hashlib.md5(blob).hexdigest() == pf.get("/sum").decode().strip()
        # several connections at once, each its own stream pair
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as ex:
            assert set(ex.map(lambda _: pf.get(), range(8))) == {f"hello from pf-{rc}\n".encode()}
    finally:
        pf.stop()


def test_runc_pods_forward_to_their_loopback(nc):
    """As containerd does: the connection is made inside the Pod's network namespace, so a listener on the
    Pod's 127.0.0.1 is reachable."""
    pf = PortForward(nc, "pod/pf-standard", "9090")
    try:
        assert pf.get() == b"loopback only\n"
    finally:
        pf.stop()


def test_a_closed_port_is_reported_as_kubectl_prints_it(nc):
    pf = PortForward(nc, "pod/pf-standard", "7070")
    try:
        with pytest.raises(Exception):
            pf.get()
        time.sleep(0.5)
    finally:
        err = pf.stop()
    assert "an error occurred forwarding" in err and "-> 7070" in err and "connection refused" in err, err


def test_official_client_portforward(nc):
    from kubernetes import client, config
    from kubernetes.stream import portforward
    cfg = client.Configuration()
    config.load_kube_config(config_file=nc.kubeconfig, client_configuration=cfg)
    v1 = client.CoreV1Api(client.ApiClient(cfg))
    pf = portforward(v1.connect_get_namespaced_pod_portforward, "pf-gvisor", "default", ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
    data = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.") and data.endswith(b"hello from pf-gvisor\n"), data
    assert pf.error(8080) is None
    pf.close()


def test_port_forward_needs_create(nc):
    nc.ok("create", "role", "pf-get", "--verb=get", "--resource=pods,pods/portforward")
    nc.ok("create", "rolebinding", "pf-get", "--role=pf-get", "--user=mallory")
    out = nc.kubectl("--as=mallory", "port-forward", "pod/pf-standard", f"{free_port()}:8080", timeout=30)
    assert out.returncode != 0 and 'cannot create resource "pods/portforward"' in out.stderr, out.stderr
    nc.kubectl("delete", "role,rolebinding", "pf-get")


def test_an_upload_larger_than_any_buffer_reaches_the_pod(nc):
    """Data the client sends faster than the Pod reads is held back (the session stops reading), not buffered
    without bound: 40 MB through port-forward into `nc -l > file` in the Pod arrive whole."""
    nc.ok("exec", "pf-standard", "--", "sh", "-c", "(sleep 120 | nc -l -p 7000 > /tmp/upload) >/dev/null 2>&1 </dev/null & sleep 0.2")
    pf = PortForward(nc, "pod/pf-standard", "7000")
    try:
        import socket as sk
        blob = os.urandom(1 << 20) * 40
        with sk.create_connection(("127.0.0.1", pf.local), timeout=60) as s:
            s.sendall(blob)
        import hashlib
        want = hashlib.md5(blob).hexdigest()
        wait_for(lambda: nc.ok("exec", "pf-standard", "--", "sh", "-c", "md5sum /tmp/upload | cut -c1-32").strip() == want, 60,
                 what="the upload complete in the Pod")
    finally:
        pf.stop()
