"""Node lifecycle decisions (kubeclass/api/nodelifecycle.py), as upstream's node lifecycle and taint eviction."""
import datetime

from kubeclass.api import nodelifecycle as nl

T0 = datetime.datetime(2026, 12, 5, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(s):
    return T0 + datetime.timedelta(seconds=s)


def test_heartbeat_is_the_latest_sign_of_life():
    node = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": nl.fmt(at(10))}]}}
    lease = {"spec": {"renewTime": "2026-12-05T12:00:30.123456Z"}}
    assert nl.last_heartbeat(node, lease, at(0)) == at(30) + datetime.timedelta(microseconds=123456)
    assert nl.last_heartbeat({}, None, at(5)) == at(5)


def test_unknown_conditions_and_taints():
    node = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": nl.fmt(T0)}]}}
    conds = nl.unknown_conditions(node, at(50))
    assert [(c["type"], c["status"], c["reason"]) for c in conds] == [
        ("Ready", "Unknown", "NodeStatusUnknown"), ("MemoryPressure", "Unknown", "NodeStatusNeverUpdated"),
        ("DiskPressure", "Unknown", "NodeStatusNeverUpdated"), ("PIDPressure", "Unknown", "NodeStatusNeverUpdated")]
    assert conds[0]["lastHeartbeatTime"] == nl.fmt(T0)          # kept: when the kubelet last spoke
    node["status"]["conditions"] = conds
    assert nl.unknown_conditions(node, at(60)) is None
    taints = nl.desired_taints({**node, "spec": {"taints": [{"key": "mine", "effect": "NoSchedule"}]}}, at(50))
    assert taints == [{"key": "mine", "effect": "NoSchedule"}, {"key": nl.UNREACHABLE, "effect": "NoSchedule"},
                      {"key": nl.UNREACHABLE, "effect": "NoExecute", "timeAdded": nl.fmt(at(50))}]
    node["spec"] = {"taints": taints}
    assert nl.desired_taints(node, at(60)) is None
    node["status"]["conditions"][0]["status"] = "False"
    assert [t["key"] for t in nl.desired_taints(node, at(70))] == ["mine", nl.NOT_READY, nl.NOT_READY]
    node["status"]["conditions"][0]["status"] = "True"
    assert nl.desired_taints(node, at(80)) == [{"key": "mine", "effect": "NoSchedule"}]


def test_eviction_times_as_the_taint_manager():
    taints = [{"key": nl.UNREACHABLE, "effect": "NoExecute", "timeAdded": nl.fmt(T0)}]

    def pod(*tols):
        return {"spec": {"tolerations": list(tols)}}
    unreach = {"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert nl.eviction_time(pod(), taints) is True                                          # not tolerated
    assert nl.eviction_time(pod({**unreach, "tolerationSeconds": 300}), taints) == at(300)
    assert nl.eviction_time(pod(unreach), taints) is None                                   # for ever
    assert nl.eviction_time(pod({**unreach, "tolerationSeconds": 0}), taints) is True
    assert nl.eviction_time(pod({**unreach, "tolerationSeconds": 300}, {"operator": "Exists", "tolerationSeconds": 20}), taints) == at(20)
    assert nl.eviction_time(pod(), [{"key": "x", "effect": "NoSchedule"}]) is None
