"""Service accounts end to end (issue 12): a Pod on the real node runs the official Python client with
`config.load_incluster_config()` (hostNetwork until Pods have their own IPs: the kubernetes service's
variables name the API server's address) and lists the Pods of its namespace with the token the node
wrote into its kube-api-access volume, and is refused (403) outside what its Role grants."""
from __future__ import annotations

import json
import os
import sys

import kubernetes
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


def test_in_cluster_client_with_its_service_account_token(node_cluster):
    nc = node_cluster
    nc.ok("create", "namespace", "sa-e2e")
    nc.ok("create", "serviceaccount", "reader", "-n", "sa-e2e")
    nc.ok("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "sa-e2e")
    nc.ok("create", "rolebinding", "reader", "--role=pod-reader", "--serviceaccount=sa-e2e:reader", "-n", "sa-e2e")
    mounts = _host_mounts()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster", "namespace": "sa-e2e"},
           "spec": {"serviceAccountName": "reader", "hostNetwork": True, "restartPolicy": "Never",
                    "volumes": [{"name": f"host{i}", "hostPath": {"path": p}} for i, p in enumerate(mounts)],
                    "containers": [{"name": "client", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                    "command": [sys.executable, "-c", SCRIPT],
                                    "volumeMounts": [{"name": f"host{i}", "mountPath": p, "readOnly": True} for i, p in enumerate(mounts)]}]}}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(pod))
    wait_for(lambda: json.loads(nc.ok("get", "pod", "incluster", "-n", "sa-e2e", "-o", "json"))["status"].get("phase")
             in ("Succeeded", "Failed"), 90, what="the client Pod finished")
    out = nc.ok("logs", "incluster", "-n", "sa-e2e")
    assert out.splitlines() == ["namespace sa-e2e", "pods incluster", "default 403"], out
    p = json.loads(nc.ok("get", "pod", "incluster", "-n", "sa-e2e", "-o", "json"))
    assert p["status"]["phase"] == "Succeeded"
    vol = next(v for v in p["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    assert vol["projected"]["sources"][0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert "Service Account:  reader" in nc.ok("describe", "pod", "incluster", "-n", "sa-e2e")
    nc.ok("delete", "namespace", "sa-e2e")
