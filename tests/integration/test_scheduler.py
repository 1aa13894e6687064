"""The scheduler, started by `kubeclass up`, against simulated Node objects created through the API with
real kubectl: seed 001's heterogeneous layout, overhead in the fit, taints, the RuntimeHandler filter,
preemption, requeue on node events, FailedScheduling texts as upstream 1.32, and `kubeclass explain`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

import seeds
from conftest import ROOT, Cluster

PRODUCTION_SET = seeds.block("001", "name: standard", "name: kata-fc")


def node(name: str, labels: dict | None = None, taints: list | None = None, cpu: str = "2", memory: str = "4Gi",
         pods: str = "110", extra: dict | None = None, handlers: list[str] | None = None) -> str:
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
           "spec": {"taints": taints} if taints else {},
           "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})},
                      "allocatable": {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}}}
    if handlers is not None:
        obj["status"]["runtimeHandlers"] = [{"name": h, "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}}
                                            for h in handlers]
    return yaml.safe_dump(obj)


def pod(name: str, rc: str | None = None, cpu: str | None = None, extra_spec: dict | None = None, ns: str = "default") -> str:
    c = {"name": "app", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    spec = {"containers": [c], **(extra_spec or {})}
    if rc:
        spec["runtimeClassName"] = rc
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec})


@pytest.fixture
def sched_cluster(tmp_path):
    # the Nodes here are posted by hand and never heartbeat: without --no-node-lifecycle they would be
    # tainted unreachable at once (as upstream's node lifecycle controller does for a node that never posted status)
    c = Cluster(str(tmp_path / "data"), extra=["--record-decisions", "--no-node", "--no-node-lifecycle"]).start()
    yield c
    c.stop()


def node_of(c: Cluster, name: str, timeout: float = 10, ns: str = "default") -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = c.ok("get", "pod", name, "-n", ns, "-o", "jsonpath={.spec.nodeName}")
        if got:
            return got
        time.sleep(0.05)
    return ""


def scheduled_condition(c: Cluster, name: str, timeout: float = 10) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = json.loads(c.ok("get", "pod", name, "-o", "json"))
        cond = next((x for x in (p.get("status") or {}).get("conditions") or [] if x["type"] == "PodScheduled"), None)
        if cond:
            return cond
        time.sleep(0.05)
    return {}


def seed_layout(c: Cluster) -> None:
    """Seed 001 / issue 4: worker-1 runc only; worker-2 gVisor; worker-3 Kata, tainted dedicated=high-security."""
    c.ok("apply", "-f", "-", input="\n---\n".join([
        node("worker-1"),
        node("worker-2", {"runtime.kubernetes.io/gvisor": "true"}),
        node("worker-3", {"runtime.kubernetes.io/kata": "true"}, [{"key": "dedicated", "value": "high-security", "effect": "NoSchedule"}]),
    ]))
    c.ok("apply", "-f", "-", input=PRODUCTION_SET)


def test_seed001_layout_places_each_class(sched_cluster):
    c = sched_cluster
    seed_layout(c)
    for rc in ("standard", "gvisor", "kata", "kata-fc"):
        c.ok("apply", "-f", "-", input=pod(f"p-{rc}", rc))
    assert node_of(c, "p-gvisor") == "worker-2"
    assert node_of(c, "p-kata") == "worker-3"
    assert node_of(c, "p-standard") in ("worker-1", "worker-2")   # worker-3's taint keeps standard Pods off
    expected = ("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: high-security}, "
                "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: "
                "3 Preemption is not helpful for scheduling.")
    cond = scheduled_condition(c, "p-kata-fc")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", expected)
    assert c.ok("get", "pod", "p-kata-fc", "-o", "jsonpath={.status.phase}") == "Pending"
    events = c.ok("get", "events", "--field-selector", "involvedObject.name=p-kata-fc")
    assert "FailedScheduling" in events and expected in events
    described = c.ok("describe", "pod", "p-kata-fc")
    assert "Warning  FailedScheduling" in described and "default-scheduler" in described and expected in described
    assert "Successfully assigned default/p-gvisor to worker-2" in c.ok("get", "events")

    # a kata Pod that fits nowhere (more cpu than worker-3 has): Insufficient cpu, preemption finds no victims
    c.ok("apply", "-f", "-", input=pod("big-kata", "kata", cpu="3"))
    cond = scheduled_condition(c, "big-kata")
    assert cond["message"] == ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. "
                               "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
                               "2 Preemption is not helpful for scheduling.")

    # explain: every node's verdict and the scores
    out = subprocess.run([sys.executable, "-m", "kubeclass.cli", "explain", "pod", "p-gvisor", "--kubeconfig", c.kubeconfig],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    assert "runtimeClassName gvisor (handler runsc), requests cpu=50m memory=64Mi (overhead included), node worker-2" in out
    assert "worker-1: does not fit: NodeAffinity: node(s) didn't match Pod's node affinity/selector" in out
    assert "worker-3: does not fit: TaintToleration: node(s) had untolerated taint {dedicated: high-security}" in out
    assert "worker-2: fits;" in out and "<- chosen" in out and "Recorded by the scheduler at its last attempt:" in out

    # a node that can take the kata-fc Pod appears: the Pod is requeued and placed
    c.ok("apply", "-f", "-", input=node("worker-4", {"runtime.kubernetes.io/kata-fc": "true"}))
    assert node_of(c, "p-kata-fc") == "worker-4"


def test_overhead_changes_placement(sched_cluster):
    c = sched_cluster
    c.ok("apply", "-f", "-", input=node("tight", {"runtime.kubernetes.io/gvisor": "true"}, cpu="150m"))
    c.ok("apply", "-f", "-", input=seeds.gvisor_with_overhead())
    first = seeds.overhead_example_pod()
    c.ok("apply", "-f", "-", input=first)
    name = json.loads(c.ok("create", "-f", "-", "--dry-run=client", "-o", "json", input=first))["metadata"]["name"]
    assert node_of(c, name) == "tight"   # 100m requested + 50m overhead = the node's 150m
    c.ok("apply", "-f", "-", input=first.replace(f"name: {name}", "name: second"))
    cond = scheduled_condition(c, "second")
    assert cond["message"] == ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
                               "1 No preemption victims found for incoming pod.")


def test_upstream_e2e_scheduling_with_taints(sched_cluster):
    """test/e2e/node/runtimeclass.go: should run a Pod requesting a RuntimeClass with scheduling with taints."""
    c = sched_cluster
    c.ok("apply", "-f", "-", input="\n---\n".join([
        node("plain"),
        node("labelled", {"foo-1": "bar", "fizz-1": "buzz"}, [{"key": "foo-1", "value": "bar", "effect": "NoSchedule"}])]))
    c.ok("apply", "-f", "-", input=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "non-conflict-runtimeclass"},
        "handler": "test-handler", "scheduling": {"nodeSelector": {"foo-1": "bar", "fizz-1": "buzz"},
                                                  "tolerations": [{"key": "foo-1", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}]}}))
    created = json.loads(c.ok("create", "-o", "json", "-f", "-", input=pod("tainted", "non-conflict-runtimeclass",
                                                                             extra_spec={"nodeSelector": {"foo-1": "bar"}})))
    assert created["spec"]["nodeSelector"] == {"foo-1": "bar", "fizz-1": "buzz"}
    assert {"key": "foo-1", "operator": "Equal", "value": "bar", "effect": "NoSchedule"} in created["spec"]["tolerations"]
    assert node_of(c, "tainted") == "labelled"


def test_upstream_e2e_pod_overhead_is_accounted(sched_cluster):
    """test/e2e/scheduling/predicates.go: verify pod overhead is accounted for (example.com/beardsecond)."""
    c = sched_cluster
    c.ok("apply", "-f", "-", input=node("bearded", extra={"example.com/beardsecond": "1000"}))
    c.ok("apply", "-f", "-", input=json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                               "metadata": {"name": "test-handler"}, "handler": "test-handler",
                                               "overhead": {"podFixed": {"example.com/beardsecond": "250"}}}))
    filler = {"containers": [{"name": "app", "image": "busybox", "resources": {"requests": {"example.com/beardsecond": "700"},
                                                                               "limits": {"example.com/beardsecond": "700"}}}]}
    c.ok("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "filler"}, "spec": filler}))
    assert node_of(c, "filler") == "bearded"
    small = {"runtimeClassName": "test-handler",
             "containers": [{"name": "app", "image": "busybox", "resources": {"limits": {"example.com/beardsecond": "200"}}}]}
    c.ok("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "overhead"}, "spec": small}))
    cond = scheduled_condition(c, "overhead")
    assert cond["status"] == "False" and "Insufficient example.com/beardsecond" in cond["message"]
    assert "Insufficient example.com/beardsecond" in c.ok("get", "events", "--field-selector", "involvedObject.name=overhead")


def test_runtime_handler_filter(sched_cluster):
    c = sched_cluster
    c.ok("apply", "-f", "-", input="\n---\n".join([node("runc-only", handlers=["", "runc"]), node("both", handlers=["", "runc", "runsc"])]))
    c.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n")
    for i in range(4):
        c.ok("apply", "-f", "-", input=pod(f"g{i}", "gvisor"))
    assert {node_of(c, f"g{i}") for i in range(4)} == {"both"}
    c.ok("delete", "node", "both")
    c.ok("apply", "-f", "-", input=pod("stranded", "gvisor"))
    cond = scheduled_condition(c, "stranded")
    assert cond["message"] == ('0/1 nodes are available: 1 node(s) didn\'t have the runtime handler "runsc". '
                               "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    # a node that publishes no handler list is not filtered
    c.ok("apply", "-f", "-", input=node("unknown"))
    assert node_of(c, "stranded") == "unknown"


def test_preemption_of_lower_priority_pods(sched_cluster):
    c = sched_cluster
    c.ok("apply", "-f", "-", input=node("only", cpu="1"))
    c.ok("create", "priorityclass", "high", "--value=1000")
    c.ok("apply", "-f", "-", input=pod("low", cpu="800m"))
    assert node_of(c, "low") == "only"
    c.ok("apply", "-f", "-", input=pod("urgent", cpu="500m", extra_spec={"priorityClassName": "high"}))
    assert json.loads(c.ok("get", "pod", "urgent", "-o", "json"))["spec"]["priority"] == 1000
    assert node_of(c, "urgent", timeout=20) == "only"
    assert c.kubectl("get", "pod", "low").returncode == 1   # the victim is gone
    assert "Preempted" in c.ok("get", "events", "--field-selector", "involvedObject.name=low")
    cp = c.kubectl("apply", "-f", "-", input=pod("nope", extra_spec={"priorityClassName": "missing"}))
    assert 'pods "nope" is forbidden: no PriorityClass with name missing was found' in cp.stderr


def test_leader_election_one_scheduler_schedules(sched_cluster):
    c = sched_cluster
    c.ok("apply", "-f", "-", input=node("n1"))
    second = subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "scheduler", "--kubeconfig", c.kubeconfig],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for i in range(20):
            c.ok("apply", "-f", "-", input=pod(f"le{i}"))
        assert all(node_of(c, f"le{i}") == "n1" for i in range(20))
        lease = json.loads(c.ok("get", "lease", "kube-scheduler", "-n", "kube-system", "-o", "json"))
        assert lease["spec"]["holderIdentity"].startswith("kubeclass-scheduler-")
        # exactly one Scheduled event per Pod: nobody bound twice
        events = json.loads(c.ok("get", "events", "-o", "json"))["items"]
        assert sum(1 for e in events if e["reason"] == "Scheduled" and e["involvedObject"]["name"].startswith("le")) == 20
    finally:
        second.terminate()
        second.wait(10)
