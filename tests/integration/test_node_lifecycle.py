"""The node lifecycle controller (issue 13, item 8): a Node whose heartbeats stop goes Ready=Unknown with the
unreachable taints, its Pods are evicted when their tolerations run out (DefaultTolerationSeconds gives
each 300 s), and the taints go once the node reports Ready again."""
from __future__ import annotations

import datetime

from conftest import Cluster, free_port, wait_for


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_silent_node_goes_unknown_is_tainted_and_its_pods_evicted(tmp_path):
    c = Cluster(str(tmp_path / "data"), port=free_port(), extra=["--no-node", "--no-scheduler", "--node-monitor-grace-period", "3",
                                                                  "--node-monitor-period", "0.5"]).start()
    try:
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": now(), "lastTransitionTime": now()}
        assert c.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "lost"},
                                                   "status": {"conditions": [ready]}})[0] == 201
        for name, tols in (("short", [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                                       "tolerationSeconds": 2}]), ("patient", None)):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"nodeName": "lost", "containers": [{"name": "c", "image": "busybox"}], **({"tolerations": tols} if tols else {})}}
            assert c.request("POST", "/api/v1/namespaces/default/pods", pod)[0] == 201

        def node():
            return c.request("GET", "/api/v1/nodes/lost")[2]

        def ready_of(n):
            return next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
        n = wait_for(lambda: (lambda n: n if ready_of(n)["status"] == "Unknown" else None)(node()), 20, what="Ready=Unknown")
        assert ready_of(n)["reason"] == "NodeStatusUnknown" and ready_of(n)["message"] == "Kubelet stopped posting node status."
        assert {x["type"]: x["status"] for x in n["status"]["conditions"]} == dict.fromkeys(
            ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"], "Unknown")
        n = wait_for(lambda: (lambda n: n if len((n.get("spec") or {}).get("taints") or []) == 2 else None)(node()), 10, what="taints")
        assert [(t["key"], t["effect"]) for t in n["spec"]["taints"]] == [("node.kubernetes.io/unreachable", "NoSchedule"),
                                                                           ("node.kubernetes.io/unreachable", "NoExecute")]
        assert "timeAdded" in n["spec"]["taints"][1]

        def pod(name):
            return c.request("GET", f"/api/v1/namespaces/default/pods/{name}")[2]
        wait_for(lambda: pod("short")["metadata"].get("deletionTimestamp"), 15, what="short evicted")
        assert not pod("patient")["metadata"].get("deletionTimestamp")   # 300 s from DefaultTolerationSeconds
        events = c.request("GET", "/api/v1/namespaces/default/events")[2]["items"]
        assert any(e["reason"] == "TaintManagerEviction" and e["message"] == "Marking for deletion Pod default/short"
                   and e["involvedObject"]["name"] == "short" for e in events)
        # the kubelet is back: Ready again, the taints go
        st = node()
        st["status"]["conditions"] = [{**ready, "lastHeartbeatTime": now(), "lastTransitionTime": now()}]
        assert c.request("PUT", "/api/v1/nodes/lost/status", st)[0] == 200
        wait_for(lambda: not (node().get("spec") or {}).get("taints"), 10, what="taints removed")
    finally:
        c.stop()
