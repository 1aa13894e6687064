"""The Deployment controller's pure decisions (kubeclass/api/rollout.py), against upstream's
deployment/util tests' cases: fencepost rounding, new ReplicaSet growth, old ReplicaSet budgets,
proportional scaling, conditions and the template hash's shape."""
from __future__ import annotations

import datetime

import pytest

from kubeclass.api import rollout, workloads


def dep(replicas=10, surge="25%", unavailable="25%", typ="RollingUpdate", generation=1, status=None):
    spec = {"replicas": replicas, "strategy": {"type": typ}, "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    if typ == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "d", "namespace": "ns", "uid": "u", "generation": generation}, "spec": spec,
            "status": status or {}}


def rs(name, replicas, available=None, created="2026-01-01T00:00:00Z", annotations=None, status_replicas=None):
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": annotations or {}},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "availableReplicas": replicas if available is None else available}}


@pytest.mark.parametrize("surge,unavailable,desired,expected", [
    ("25%", "25%", 10, (3, 2)),       # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    (0, 0, 5, (0, 1)),                # both zero: one may be unavailable so the rollout can move
    ("0%", "0%", 5, (0, 1)),
    (2, "50%", 3, (2, 1)),
    ("100%", 0, 4, (4, 0)),
])
def test_resolve_fenceposts(surge, unavailable, desired, expected):
    assert rollout.resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_capped_by_replicas_and_zero_for_recreate():
    assert rollout.max_unavailable(dep(2, unavailable=5)) == 2
    assert rollout.max_unavailable(dep(0)) == 0
    assert rollout.max_unavailable(dep(10, typ="Recreate")) == 0
    assert rollout.max_surge(dep(10, typ="Recreate")) == 0


def test_new_rs_grows_within_max_surge():
    d = dep(10, surge=3)
    old = rs("old", 10)
    new = rs("new", 0)
    assert rollout.new_rs_replicas(d, [old, new], new) == 3
    assert rollout.new_rs_replicas(d, [rs("old", 8), rs("new", 5)], rs("new", 5)) == 5   # 13 already: no growth
    assert rollout.new_rs_replicas(d, [rs("old", 0), rs("new", 9)], rs("new", 9)) == 10
    assert rollout.new_rs_replicas(dep(10, typ="Recreate"), [], rs("new", 0)) == 10


def test_old_replicasets_scale_down_within_max_unavailable():
    d = dep(10, surge=3, unavailable=2)
    old, new = rs("old", 10), rs("new", 3, available=0)
    # 13 Pods, 8 must stay available, 3 new ones not available yet: 13 - 8 - 3 = 2 may go
    assert rollout.old_scale_down_budget(d, [old, new], new) == 2
    assert rollout.scale_down_old_for_rolling(d, [old, new], [old]) == {"old": 8}
    # unhealthy old Pods go first
    sick = rs("old", 10, available=7)
    assert rollout.cleanup_unhealthy([sick], 2) == {"old": 8}


def test_proportional_scaling_mid_rollout():
    # 3 + 2 Pods annotated for 6 (5 + surge 1), the Deployment now 10 (+ surge 1 = 11): each grows by its share
    # (3 * 11 / 6 = 5.5 -> 6, 2 * 11 / 6 = 3.7 -> 4, rounded half away from zero) and the leftover goes to the biggest
    d = dep(10, surge=1, unavailable=0)
    a = rs("a", 3, created="2026-01-01T00:00:00Z", annotations={rollout.MAX_REPLICAS: "6"})
    b = rs("b", 2, created="2026-01-01T00:00:01Z", annotations={rollout.MAX_REPLICAS: "6"})
    sizes = rollout.proportional_sizes(d, b, [a])
    assert sizes == {"a": 7, "b": 4}
    # scaling down to 0 empties everything
    assert rollout.proportional_sizes(dep(0, surge=1), b, [a]) == {"a": 0, "b": 0}


def test_find_new_rs_ignores_the_hash_label_and_prefers_the_oldest():
    d = dep()
    t = {"metadata": {"labels": {"app": "x", rollout.HASH_LABEL: "abc"}}, "spec": d["spec"]["template"]["spec"]}
    a = {**rs("a", 1, created="2026-01-02T00:00:00Z"), "spec": {"replicas": 1, "template": t}}
    b = {**rs("b", 1, created="2026-01-01T00:00:00Z"), "spec": {"replicas": 1, "template": t}}
    assert rollout.find_new_rs(d, [a, b])["metadata"]["name"] == "b"
    other = {**rs("c", 1), "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "y"}}}}}
    assert rollout.find_new_rs(d, [other]) is None


def test_template_hash_shape_and_collisions():
    t = dep()["spec"]["template"]
    h = rollout.template_hash(t)
    assert h == rollout.template_hash(dict(t)) and 6 <= len(h) <= 10
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rollout.template_hash(t, 1) != h
    assert rollout.fnv32a(b"") == 0x811C9DC5 and rollout.fnv32a(b"a") == 0xE40C292C   # FNV-1a test vectors


def test_revision_annotations_and_history():
    d = dep()
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v2", rollout.LAST_APPLIED: "{}"}
    new = rs("n", 0, annotations={rollout.REVISION: "1"})
    assert rollout.new_rs_annotations(d, new, 3, True)
    a = new["metadata"]["annotations"]
    assert a[rollout.REVISION] == "3" and a[rollout.REVISION_HISTORY] == "1" and a["kubernetes.io/change-cause"] == "v2"
    assert rollout.LAST_APPLIED not in a
    built = rollout.build_new_rs(dep(4, surge=1), 1, 1)
    assert built["metadata"]["annotations"] == {rollout.REVISION: "1", rollout.DESIRED_REPLICAS: "4", rollout.MAX_REPLICAS: "5"}
    assert built["spec"]["selector"]["matchLabels"][rollout.HASH_LABEL] == built["metadata"]["name"].rsplit("-", 1)[1]


def test_cleanup_keeps_revision_history_limit():
    d = dep()
    d["spec"]["revisionHistoryLimit"] = 1
    olds = [rs(f"r{i}", 0, annotations={rollout.REVISION: str(i)}) for i in (3, 1, 2)]
    olds[1]["status"]["observedGeneration"] = 0
    assert [r["metadata"]["name"] for r in rollout.cleanup_candidates(d, olds)] == ["r1", "r2"]
    olds.append(rs("busy", 2, annotations={rollout.REVISION: "0"}))
    assert "busy" not in [r["metadata"]["name"] for r in rollout.cleanup_candidates(d, olds)]


def test_status_conditions_as_upstream():
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    d = dep(2, generation=1)
    new = rs("new", 2, available=2)
    st = rollout.rollout_status(d, [new], new, now, "2026-01-01T00:00:00Z")
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"]["message"] == 'ReplicaSet "new" has successfully progressed.'
    assert st == {**st, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "observedGeneration": 1}
    assert "unavailableReplicas" not in st   # omitempty
    # stuck past the deadline
    d = dep(2, status={"replicas": 2, "updatedReplicas": 2, "conditions": [{"type": "Progressing", "status": "True", "reason": rollout.RS_UPDATED,
                                       "lastUpdateTime": "2025-12-31T23:00:00Z", "lastTransitionTime": "2025-12-31T23:00:00Z"}]})
    stuck = rs("new", 2, available=0)
    st = rollout.rollout_status(d, [stuck], stuck, now, "2026-01-01T00:00:00Z")
    p = {c["type"]: c for c in st["conditions"]}["Progressing"]
    assert (p["status"], p["reason"], p["message"]) == ("False", "ProgressDeadlineExceeded", 'ReplicaSet "new" has timed out progressing.')
    # a ReplicaSet's failure surfaces on the Deployment
    failing = rs("new", 2, available=0)
    failing["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "nope"}]
    st = rollout.rollout_status(dep(2), [failing], failing, now, "t")
    assert {c["type"]: c for c in st["conditions"]}["ReplicaFailure"]["message"] == "nope"


def test_set_condition_keeps_transition_time_for_the_same_status():
    st = {"conditions": [{"type": "Progressing", "status": "True", "reason": "A", "lastTransitionTime": "t0", "lastUpdateTime": "t0"}]}
    rollout.set_condition(st, "Progressing", "True", "B", "m", "t1")
    assert st["conditions"][0]["lastTransitionTime"] == "t0" and st["conditions"][0]["lastUpdateTime"] == "t1"


@pytest.mark.parametrize("value,total,up,expected", [("25%", 10, True, 3), ("25%", 10, False, 2), (3, 10, True, 3), ("0%", 7, True, 0)])
def test_scaled_value(value, total, up, expected):
    assert workloads.scaled_value(value, total, up) == expected
