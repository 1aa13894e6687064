"""Scheduler framework logic without a server: upstream 1.32's FitError text (histogram sorted as strings,
`..` after preemption), filter reasons, scoring, the vectorised path agreeing with the per-node path,
and the queue's back-off."""
from __future__ import annotations

import asyncio
import random

from kubeclass.scheduler.framework import Diagnosis, FitError, Status, UNRESOLVABLE, UNSCHEDULABLE, num_feasible_to_find
from kubeclass.scheduler.nodeinfo import Cache, PodInfo
from kubeclass.scheduler.queue import SchedulingQueue
from kubeclass.scheduler.scheduler import Options, build_framework


def node(name, cpu="2", labels=None, taints=None, handlers=None, extra=None):
    n = {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []},
         "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110", **(extra or {})}}}
    if handlers is not None:
        n["status"]["runtimeHandlers"] = [{"name": h} for h in handlers]
    return n


def pod(name, cpu=None, **spec):
    c = {"name": "c", "image": "x"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    return {"metadata": {"name": name, "namespace": "d", "uid": name}, "spec": {"containers": [c], **spec}}


def test_histogram_sorts_as_strings_and_one_period_ends_the_message():
    d = Diagnosis({f"n{i}": Status(UNRESOLVABLE, ["node(s) didn't match Pod's node affinity/selector"]) for i in range(10)})
    d.node_status["x"] = Status(UNSCHEDULABLE, ["Insufficient cpu"])
    d.node_status["y"] = Status(UNSCHEDULABLE, ["Insufficient cpu"])
    # 1.32's preemption message has no period of its own: FitError ends it with one (1.31 and before: two)
    d.post_filter_msg = "preemption: 0/12 nodes are available: 10 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod"
    msg = FitError(PodInfo.of(pod("p")), 12, d).message()
    assert msg == ("0/12 nodes are available: 10 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. "
                   "preemption: 0/12 nodes are available: 10 Preemption is not helpful for scheduling, "
                   "2 No preemption victims found for incoming pod.")
    assert FitError(PodInfo.of(pod("p")), 0, Diagnosis()).message() == "no nodes available to schedule pods"


def test_num_feasible_nodes_to_find_as_upstream():
    assert num_feasible_to_find(50) == 50
    assert num_feasible_to_find(5000) == 500      # 50 - 5000/125 = 10%
    assert num_feasible_to_find(1000) == 420      # 42%
    assert num_feasible_to_find(200) == 100       # at least 100


def _cluster():
    c = Cache()
    c.upsert_node(node("a", cpu="1"))
    c.upsert_node(node("b", cpu="4", labels={"zone": "z1"}))
    c.upsert_node(node("t", cpu="8", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                                             {"key": "soft", "value": "", "effect": "PreferNoSchedule"}]))
    c.upsert_node(node("h", cpu="8", handlers=["", "runc"]))
    return c


def test_filters_and_messages():
    c = _cluster()
    fw = build_framework({"gvisor": "runsc"}, Options())
    try:
        fw.schedule(c, PodInfo.of(pod("p", cpu="16")))
    except FitError as e:
        assert e.message() == ("0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 3 Insufficient cpu. "
                               "preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, "
                               "3 No preemption victims found for incoming pod.")
    else:
        raise AssertionError("expected FitError")
    try:
        fw.schedule(c, PodInfo.of(pod("p", runtimeClassName="gvisor", nodeSelector={"zone": "nowhere"})))
    except FitError as e:
        assert "3 node(s) didn't match Pod's node affinity/selector" in e.message()
    _, r = fw.schedule(c, PodInfo.of(pod("p", runtimeClassName="gvisor", tolerations=[{"key": "dedicated", "operator": "Exists"}])))
    assert r.node in ("a", "b", "t")   # h lacks runsc


def test_vector_and_per_node_paths_agree():
    rng = random.Random(7)
    c = Cache()
    for i in range(300):
        c.upsert_node(node(f"n{i}", cpu=str(rng.choice([1, 2, 4, 8])), labels={"zone": f"z{i % 3}"},
                           taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}] if i % 7 == 0 else None))
    fw = build_framework({}, Options(percentage_of_nodes_to_score=100))
    for i in range(200):
        p = PodInfo.of(pod(f"p{i}", cpu=f"{rng.choice([100, 250, 500])}m",
                           affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                               {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}}))
        _, per_node = fw._schedule_nodes(c, p, explain=True)
        totals = {k: sum(v.values()) for k, v in per_node.scores.items()}
        best = max(totals.values())
        _, fast = fw._schedule_vector(c, p, random.Random(i))
        assert totals[fast.node] == best, (i, fast.node, totals[fast.node], best)
        c.add_pod(p.pod, fast.node, assumed=True)




def test_vector_scores_match_per_node_scores_on_uneven_nodes():
    """Integer LeastAllocated / MostAllocated and BalancedAllocation on both paths, including nodes that
    have no memory or no cpu at all (upstream averages over the resources a node has)."""
    rng = random.Random(11)
    for strategy in ("LeastAllocated", "MostAllocated"):
        c = Cache()
        for i in range(120):
            alloc = {"pods": "110", "cpu": f"{rng.choice([500, 1000, 3000])}m", "memory": f"{rng.choice([1, 3, 7])}Gi"}
            if i % 10 == 0:
                del alloc["memory"]
            if i % 10 == 5:
                del alloc["cpu"]
            c.upsert_node({"metadata": {"name": f"n{i}"}, "status": {"allocatable": alloc}})
        fw = build_framework({}, Options(scoring_strategy=strategy, percentage_of_nodes_to_score=100))
        for i in range(60):
            c0 = {"name": "c", "image": "x", "resources": {"requests": {"memory": f"{rng.choice([64, 300])}Mi"}}}
            if i % 3:
                c0["resources"]["requests"]["cpu"] = f"{rng.choice([10, 200])}m"
            p = PodInfo.of({"metadata": {"name": f"p{i}", "namespace": "d", "uid": f"p{i}"}, "spec": {"containers": [c0]}})
            _, per_node = fw._schedule_nodes(c, p, explain=True)
            totals = {k: sum(v.values()) for k, v in per_node.scores.items()}
            _, fast = fw._schedule_vector(c, p, random.Random(i))
            assert totals[fast.node] == max(totals.values()), (strategy, i)
            c.add_pod(p.pod, fast.node, assumed=True)


def test_vector_path_samples_like_upstream():
    """Adaptive percentageOfNodesToScore on both paths: the same rotating window of feasible nodes."""
    rng = random.Random(3)
    c = Cache()
    for i in range(1000):
        c.upsert_node(node(f"n{i}", cpu=str(rng.choice([1, 2, 4])), labels={"zone": f"z{i % 4}"}))
    vec = build_framework({}, Options())
    per = build_framework({}, Options())
    assert num_feasible_to_find(1000) == 420
    for i in range(50):
        p = PodInfo.of(pod(f"p{i}", cpu="100m", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z0"]}]}]}}}))
        _, a = vec._schedule_vector(c, p, random.Random(i))
        _, b = per._schedule_nodes(c, p, rng=random.Random(i))
        assert (a.evaluated, a.feasible) == (b.evaluated, b.feasible)
        assert a.feasible == 420 and 559 <= a.evaluated <= 561   # 420 of the 3-in-4 nodes that are not z0
        assert vec._next_start == per._next_start
        totals = {k: sum(v.values()) for k, v in b.scores.items()}
        assert a.node in totals and totals[a.node] == max(totals.values()), i
        c.add_pod(p.pod, a.node, assumed=True)

def test_queue_backoff_and_move_on_events():
    async def run():
        q = SchedulingQueue()
        p = pod("x")
        q.add(p)
        got = await q.pop()
        assert got is p
        q.requeue_unschedulable("d/x")
        assert q.pending_counts() == {"active": 0, "backoff": 0, "unschedulable": 1}
        q.move_all()                       # a node was added: to backoff first (1 s after the attempt)
        assert q.pending_counts()["backoff"] == 1
        got = await asyncio.wait_for(q.pop(), 3)
        assert got["metadata"]["name"] == "x"
        assert q.backoff_for("d/x") == 1.0
        q.requeue_error("d/x")
        assert q.backoff_for("d/x") == 2.0  # doubles per attempt, up to 10 s
    asyncio.run(run())
