"""The prober's state machine (kubeclass/node/probes.py): initial delay, thresholds, the startup probe
gating liveness and readiness, and named ports."""
from __future__ import annotations

from kubeclass.node import probes


def test_readiness_thresholds():
    cp = probes.ContainerProbes.for_container(
        {"readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 5, "successThreshold": 2, "failureThreshold": 2}}, 100.0)
    assert not cp.ready and cp.due(104.0) == []
    r = cp.due(105.0)[0]
    assert cp.record(r, True, 105.0) is None and not cp.ready
    assert cp.record(r, True, 115.0) == "passed" and cp.ready
    assert cp.record(r, False, 125.0) is None and cp.ready     # one failure is not enough
    assert cp.record(r, False, 135.0) == "unready" and not cp.ready
    assert r.next_at == 145.0


def test_startup_gates_liveness_and_readiness():
    cp = probes.ContainerProbes.for_container({"startupProbe": {"exec": {"command": ["x"]}, "failureThreshold": 2, "periodSeconds": 1},
                                               "livenessProbe": {"exec": {"command": ["y"]}},
                                               "readinessProbe": {"exec": {"command": ["z"]}}}, 0.0)
    assert [s.kind for s in cp.due(0.0)] == ["startup"] and not cp.started
    s = cp.states["startup"]
    assert cp.record(s, False, 0.0) is None
    assert cp.record(s, False, 1.0) == "failed"                 # the container is restarted
    assert cp.record(s, True, 2.0) == "passed" and cp.started
    assert sorted(x.kind for x in cp.due(2.0)) == ["liveness", "readiness"]
    live = cp.states["liveness"]
    for t in (2.0, 12.0):
        assert cp.record(live, False, t) is None
    assert cp.record(live, False, 22.0) == "failed"


def test_defaults_and_ports():
    p = probes.defaults({"httpGet": {"port": "web"}})
    assert (p["timeoutSeconds"], p["periodSeconds"], p["successThreshold"], p["failureThreshold"]) == (1, 10, 1, 3)
    c = {"name": "app", "ports": [{"name": "web", "containerPort": 8080}]}
    assert probes.resolve_port("web", c) == 8080 and probes.resolve_port(80, c) == 80 and probes.resolve_port("nope", c) is None
