"""Simulated nodes (KWOK's convention) at scale: `kubeclass up --simulated-nodes 1000` with a template
(labels, capacity, runtimeHandlers); the real scheduler spreads Pods over them, the simulator runs them
without containers (Running, Ready) and confirms their deletion."""
from __future__ import annotations

import json
import time

import yaml

from conftest import Cluster

TEMPLATE = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "runtime.kubernetes.io/gvisor": "true"}},
            "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "runtimeHandlers": [{"name": "runc", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}},
                                           {"name": "runsc", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}},
                                           {"name": "", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}}]}}


def wait(fn, timeout=120, step=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out; last {last!r}")


def test_thousand_simulated_nodes_run_pods(tmp_path):
    tpl = tmp_path / "node.yaml"
    tpl.write_text(yaml.safe_dump(TEMPLATE))
    c = Cluster(str(tmp_path / "data"), extra=["--no-node", "--simulated-nodes", "1000",
                                                "--simulated-node-template", str(tpl)]).start()
    try:
        def ready_nodes():
            nodes = json.loads(c.ok("get", "nodes", "-l", "type=kwok", "-o", "json"))["items"]
            ready = [n for n in nodes if any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"].get("conditions", []))]
            return nodes if len(ready) == 1000 else None
        nodes = wait(ready_nodes)
        assert nodes[0]["status"]["runtimeHandlers"][1]["name"] == "runsc"
        c.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n"
                                       "scheduling:\n  nodeSelector:\n    runtime.kubernetes.io/gvisor: \"true\"\n"
                                       "  tolerations:\n  - key: kwok.x-k8s.io/node\n    operator: Exists\n    effect: NoSchedule\n")
        docs = [yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"sim-{i}"},
                                "spec": {"runtimeClassName": "gvisor",
                                         "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                                         "resources": {"requests": {"cpu": "500m"}}}]}}) for i in range(300)]
        c.ok("apply", "-f", "-", input="---\n".join(docs))

        def running():
            pods = json.loads(c.ok("get", "pods", "-o", "json"))["items"]
            ok = [p for p in pods if p["status"].get("phase") == "Running"
                  and p["status"]["containerStatuses"][0]["ready"]]
            return pods if len(ok) == 300 else None
        pods = wait(running)
        assert len({p["spec"]["nodeName"] for p in pods}) > 200       # spread by LeastAllocated
        out = c.ok("get", "pods", "sim-0", "-o", "wide").splitlines()[1].split()
        assert out[1] == "1/1" and out[2] == "Running" and out[5].startswith("10.244.")
        c.ok("delete", "pods", "--all", "--wait=true")
        assert json.loads(c.ok("get", "pods", "-o", "json"))["items"] == []
    finally:
        c.stop()
