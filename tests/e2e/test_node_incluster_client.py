"""Service accounts and in-cluster access end to end (issues 12 and 14): a Pod on the real node runs the official
Python client with `config.load_incluster_config()` — from the node's network, from a runc Pod's own network
and from a gVisor Pod's netstack, each reaching the API server at the kubernetes Service's address
(KUBERNETES_SERVICE_HOST, served by the agent, in the API server's certificate) — and lists the Pods of its
namespace with the token the node wrote into its kube-api-access volume, and is refused (403) outside what its
Role grants."""
from __future__ import annotations

import json
import os
import sys

import kubernetes
import pytest
import yaml

from nodecluster import IMAGE, node_cluster, wait_for  # noqa: F401 - fixture

SCRIPT = """
import sys
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_incluster_config()
v1 = client.CoreV1Api()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
print("namespace", ns)
print("pods", " ".join(sorted(p.metadata.name for p in v1.list_namespaced_pod(ns).items)))
try:
    v1.list_namespaced_pod("default")
    print("default allowed")
except ApiException as e:
    print("default", e.status)
"""


def _host_mounts() -> list[str]:
    """What the host's Python needs inside the container: its prefix, its packages, the system libraries."""
    want = ["/usr", "/lib", "/lib64", sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(kubernetes.__file__))]
    out: list[str] = []
    for p in sorted({os.path.normpath(w) for w in want if os.path.exists(w)}, key=len):
        if not any(p == o or p.startswith(o + "/") for o in out):
            out.append(p)
    return out


@pytest.mark.parametrize("net", ["host", "runc", "gvisor"])
def test_in_cluster_client_with_its_service_account_token(node_cluster, net):
    nc = node_cluster
    ns = f"sa-e2e-{net}"
    nc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n")
    nc.ok("create", "namespace", ns)
    nc.ok("create", "serviceaccount", "reader", "-n", ns)
    nc.ok("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", ns)
    nc.ok("create", "rolebinding", "reader", "--role=pod-reader", f"--serviceaccount={ns}:reader", "-n", ns)
    mounts = _host_mounts()
    spec = {"serviceAccountName": "reader", "restartPolicy": "Never",
            "volumes": [{"name": f"host{i}", "hostPath": {"path": p}} for i, p in enumerate(mounts)],
            "containers": [{"name": "client", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                            "command": [sys.executable, "-c", SCRIPT],
                            "volumeMounts": [{"name": f"host{i}", "mountPath": p, "readOnly": True} for i, p in enumerate(mounts)]}]}
    if net == "host":
        spec["hostNetwork"] = True
    if net == "gvisor":
        spec["runtimeClassName"] = "gvisor"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster", "namespace": ns}, "spec": spec}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(pod))
    wait_for(lambda: json.loads(nc.ok("get", "pod", "incluster", "-n", ns, "-o", "json"))["status"].get("phase")
             in ("Succeeded", "Failed"), 120, what="the client Pod finished")
    out = nc.ok("logs", "incluster", "-n", ns)
    assert out.splitlines() == [f"namespace {ns}", "pods incluster", "default 403"], out
    p = json.loads(nc.ok("get", "pod", "incluster", "-n", ns, "-o", "json"))
    assert p["status"]["phase"] == "Succeeded"
    if net != "host":
        assert p["status"]["podIP"] != p["status"]["hostIP"]      # its own address, not the node's
    vol = next(v for v in p["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    assert vol["projected"]["sources"][0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    import re
    assert re.search(r"^Service Account:\s+reader$", nc.ok("describe", "pod", "incluster", "-n", ns), re.M)
    nc.ok("delete", "namespace", ns)


def test_containers_get_the_kubernetes_service_variables(node_cluster):
    """KUBERNETES_SERVICE_HOST is the first address of the Service CIDR and the port 443, as upstream."""
    nc = node_cluster
    nc.ok("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "svc-env"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                                           "command": ["env"]}]}}))
    wait_for(lambda: nc.phase("svc-env") in ("Succeeded", "Failed"), 60, what="env printed")
    env = dict(line.split("=", 1) for line in nc.logs("svc-env").splitlines() if "=" in line)
    flags = nc.extra
    cidr = flags[flags.index("--service-cluster-ip-range") + 1]
    import ipaddress
    ip = str(ipaddress.ip_network(cidr).network_address + 1)
    assert env["KUBERNETES_SERVICE_HOST"] == ip and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_PORT"] == f"tcp://{ip}:443" and env["KUBERNETES_PORT_443_TCP_ADDR"] == ip
    nc.ok("delete", "pod", "svc-env")
