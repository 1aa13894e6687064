"""Pure parts of the controllers: Pod deletion order and slow start (podstate), ownerReference claims,
the work queue's semantics, cascading-deletion finalizers (gc) and the --controllers syntax."""
from __future__ import annotations

import asyncio
import datetime

import pytest

from kubeclass.api import gc, podstate
from kubeclass.controllers.manager import enabled
from kubeclass.controllers.workqueue import WorkQueue

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)


def pod(name, node="", phase="Running", ready=True, created="2026-01-01T11:00:00Z", restarts=0, cost=None, ready_at="2026-01-01T11:00:00Z"):
    md = {"name": name, "uid": name, "creationTimestamp": created}
    if cost is not None:
        md["annotations"] = {podstate.POD_DELETION_COST: str(cost)}
    return {"metadata": md, "spec": {"nodeName": node},
            "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_at}]}}


def test_deletion_order_as_upstream():
    pods = [pod("running", "n1"), pod("unscheduled", "", "Pending", False), pod("pending", "n1", "Pending", False),
            pod("notready", "n2", ready=False), pod("costly", "n3", cost=100), pod("cheap", "n3", cost=-5)]
    order = [p["metadata"]["name"] for p in podstate.deletion_order(pods, pods, NOW)]
    assert order[:4] == ["unscheduled", "pending", "notready", "cheap"]
    assert order[-1] == "costly"
    # doubled-up nodes first, then newer, then more restarts
    a, b, c = pod("a", "n1"), pod("b", "n1"), pod("c", "n2")
    assert [p["metadata"]["name"] for p in podstate.deletion_order([c, a], [a, b, c], NOW)][0] == "a"
    r = pod("restarts", "n5", restarts=4)
    q = pod("quiet", "n6")
    assert podstate.deletion_order([q, r], [q, r], NOW)[0]["metadata"]["name"] == "restarts"


def test_available_after_min_ready_seconds():
    p = pod("p", "n", ready_at="2026-01-01T11:59:55Z")
    assert podstate.is_available(p, 0, NOW)
    assert not podstate.is_available(p, 10, NOW)
    assert podstate.is_available(p, 4, NOW)
    assert not podstate.is_available(pod("q", ready=False), 0, NOW)


def test_slow_start_batches():
    assert podstate.slow_start_batches(10) == [1, 2, 4, 3]
    assert podstate.slow_start_batches(1) == [1]
    assert podstate.slow_start_batches(0) == []
    assert sum(podstate.slow_start_batches(500)) == 500


def test_claims():
    owner = {"metadata": {"uid": "o"}}
    orphan = {"metadata": {"uid": "p"}}
    mine = {"metadata": {"uid": "p", "ownerReferences": [{"uid": "o", "controller": True}]}}
    theirs = {"metadata": {"uid": "p", "ownerReferences": [{"uid": "x", "controller": True}]}}
    assert podstate.claim(owner, orphan, True) == "adopt"
    assert podstate.claim(owner, orphan, False) == ""
    assert podstate.claim(owner, mine, True) == "own"
    assert podstate.claim(owner, mine, False) == "release"
    assert podstate.claim(owner, theirs, True) == ""
    assert podstate.claim({"metadata": {"uid": "o", "deletionTimestamp": "t"}}, orphan, True) == ""


def test_work_queue_dedups_and_never_runs_a_key_twice_at_once():
    async def main():
        q = WorkQueue("t")
        q.add("a")
        q.add("a")
        q.add("b")
        assert len(q) == 2
        k = await q.get()
        assert k == "a"
        q.add("a")              # while processing: comes back after done
        assert len(q) == 1
        q.done("a")
        assert len(q) == 2
        q.add_rate_limited("c")
        q.add_rate_limited("c")
        assert q.requeues("c") == 2
        await asyncio.sleep(0.05)
        assert [await q.get() for _ in range(3)] == ["b", "a", "c"]
        q.forget("c")
        assert q.requeues("c") == 0
    asyncio.run(main())


def test_propagation_finalizers():
    md = {}
    assert gc.apply_propagation(md, "Foreground") and md["finalizers"] == ["foregroundDeletion"]
    assert gc.apply_propagation(md, "Orphan") and md["finalizers"] == ["orphan"]
    assert gc.apply_propagation(md, "Background") and "finalizers" not in md
    assert not gc.apply_propagation(md, None)
    md = {"finalizers": ["example.com/x"]}
    gc.apply_propagation(md, "Foreground")
    assert md["finalizers"] == ["example.com/x", "foregroundDeletion"]
    assert gc.propagation_policy({"orphanDependents": True}) == "Orphan"
    errs = gc.validate_delete_options({"orphanDependents": True, "propagationPolicy": "Orphan"})
    assert errs and "cannot be both set" in str(errs[0].detail)


def test_controllers_flag_syntax():
    assert enabled(["*"]) == ["deployment", "replicaset", "daemonset", "job", "cronjob", "ttl-after-finished", "serviceaccount",
                              "root-ca-cert-publisher", "namespace", "resourcequota", "garbagecollector", "nodelifecycle",
                              "endpoint", "endpointslice", "replicationcontroller", "apiservice-availability", "service-lb"]
    assert enabled(["*", "-garbagecollector", "-job", "-serviceaccount", "-endpoint"]) == \
        ["deployment", "replicaset", "daemonset", "cronjob", "ttl-after-finished", "root-ca-cert-publisher", "namespace", "resourcequota",
         "nodelifecycle", "endpointslice", "replicationcontroller", "apiservice-availability", "service-lb"]
    assert enabled(["replicaset"]) == ["replicaset"]
    with pytest.raises(ValueError):
        enabled(["nope"])


def test_pod_failure_policy_actions():
    from kubeclass.api import jobs
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
                        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}

    def failed(code, name="main", conds=()):
        return {"metadata": {"name": "p", "namespace": "ns"},
                "status": {"phase": "Failed", "conditions": [{"type": t, "status": "True"} for t in conds],
                           "containerStatuses": [{"name": name, "state": {"terminated": {"exitCode": code}}}]}}
    assert jobs.pod_failure_action(policy, failed(42)) == \
        ("FailJob", "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0")
    assert jobs.pod_failure_action(policy, failed(42, "side"))[0] == "Count"
    assert jobs.pod_failure_action(policy, failed(1, conds=("DisruptionTarget",))) == \
        ("Ignore", "Pod ns/p has condition DisruptionTarget matching Ignore rule at index 1")
    assert jobs.pod_failure_action(None, failed(42)) == ("Count", "")
