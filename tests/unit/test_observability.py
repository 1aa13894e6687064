"""Pure parts of issue 17: usage arithmetic, the overhead verdict and recommendation, the request metrics' labels
(kube-apiserver's verbs and scopes), metrics-server's quantities, and readings of this very process."""
from __future__ import annotations

import os

from kubeclass.node import cgroupstats, overhead
from kubeclass.node.cgroupstats import Usage
from kubeclass.node.podstats import PodReading
from kubeclass.overhead_measure import percentile, recommend
from kubeclass.server import metrics, metrics_api


def test_usage_arithmetic_never_goes_negative():
    a, b = Usage(10, 100, 80, 50, 1, 0), Usage(4, 120, 30, 10, 0, 0)
    assert (a + b).astuple() == (14, 220, 110, 60, 1, 0)
    assert (a - b).astuple() == (6, 0, 50, 40, 1, 0)


def test_sandbox_is_the_pod_less_its_containers():
    r = PodReading(object(), Usage(100, 50 << 20, 40 << 20), {"a": Usage(30, 10 << 20, 8 << 20), "b": Usage(20, 5 << 20, 2 << 20)})
    assert r.sandbox.cpu_ns == 50 and r.sandbox.working_set == 30 << 20
    assert PodReading(object(), Usage(1, 1, 1), {}).sandbox is None      # nothing runs yet: nothing to compare
    assert PodReading(object(), None, {"a": Usage()}).sandbox is None


def test_overhead_verdict():
    assert overhead.verdict(12 << 20, 1_000_000, {"cpu": "50m", "memory": "64Mi"}) == (
        "True", "WithinPodFixed", "the sandbox uses cpu 1m, memory 12Mi; the Pod's overhead declares cpu 50m, memory 64Mi")
    st, reason, msg = overhead.verdict(80 << 20, 60_000_000, {"cpu": "50m", "memory": "64Mi"})
    assert (st, reason) == ("False", "ExceedsPodFixed") and "memory 80Mi > 64Mi" in msg and "cpu 60m > 50m" in msg
    assert overhead.verdict(1, 0, None)[:2] == ("Unknown", "NoPodFixed")
    assert overhead.mem_str(300 * 1024) == "300Ki" and overhead.mem_str((10 << 20) + 1) == "11Mi"
    assert overhead.p95([5, 1, 3, 2, 4]) == 5 and overhead.p95(list(range(100))) == 94


def test_recommendation_rounds_p95_up():
    mem = [10.5 * (1 << 20), 10.9 * (1 << 20), 11.2 * (1 << 20)]
    assert recommend(mem, [0.0003, 0.0004, 0.0021]) == {"cpu": "3m", "memory": "12Mi"}
    assert recommend([100.0], [0.0]) == {"cpu": "1m", "memory": "1Mi"}
    assert percentile([3, 1, 2], 50) == 2 and percentile([], 95) == 0.0


def test_request_labels_as_kube_apiserver_reports_them():
    r = ("res", "", "v1", "default", "pods", None, None)
    assert metrics.labels("GET", "/api/v1/namespaces/default/pods", r, {}, "")[:1] == ("LIST",)
    assert metrics.labels("GET", "/api/v1/namespaces/default/pods", r, {"watch": "true"}, "")[0] == "WATCH"
    assert metrics.labels("DELETE", "/api/v1/namespaces/default/pods", r, {}, "")[0] == "DELETECOLLECTION"
    named = ("res", "", "v1", "default", "pods", "p", None)
    assert metrics.labels("PATCH", "", named, {}, "application/apply-patch+yaml")[0] == "APPLY"
    assert metrics.labels("PATCH", "", named, {"dryRun": "All"}, "application/merge-patch+json")[:2] == ("PATCH", "All")
    assert metrics.labels("GET", "", ("res", "", "v1", "default", "pods", "p", "exec"), {}, "")[0] == "CONNECT"
    # CleanScope: namespace, then resource, then cluster; a Namespace object is in its own namespace
    assert metrics.labels("GET", "", named, {}, "")[6] == "namespace"
    assert metrics.labels("GET", "", ("res", "", "v1", None, "nodes", "n1", None), {}, "")[6] == "resource"
    assert metrics.labels("GET", "", ("res", "", "v1", None, "namespaces", "default", None), {}, "")[6] == "namespace"
    assert metrics.labels("GET", "", ("res", "", "v1", None, "nodes", None, None), {}, "")[6] == "cluster"
    # non-resource paths: known ones by name, anything else folded (no unbounded label values)
    assert metrics.labels("GET", "/version", None, {}, "")[5] == "/version"
    assert metrics.labels("GET", "/random/thing", None, {}, "")[5] == "other"
    for bogus in (("res", "", "v1", None, "made-up-1", None, None), ("res", "x.io", "v9", None, "pods", None, None),
                  ("res", "", "v1", "default", "pods", "p", "made-up-sub")):
        assert metrics.labels("GET", "", bogus, {}, "") == ("GET", "", "", "", "", "other", "", "apiserver")


def test_metrics_server_quantities():
    assert metrics_api.cpu_quantity(477024) == "477024n" and metrics_api.cpu_quantity(5_000_000) == "5m"
    assert metrics_api.cpu_quantity(0) == "0"
    assert metrics_api.memory_quantity(14749696) == "14404Ki" and metrics_api.memory_quantity(64 << 20) == "64Mi"


def test_readings_of_this_process_and_node():
    me = cgroupstats.process(os.getpid())
    assert me is not None and me.cpu_ns > 0 and me.memory > 1 << 20
    assert cgroupstats.process(2 ** 22 + 7) is None
    node, avail = cgroupstats.node()
    assert node.cpu_ns > 0 and 0 < avail <= node.memory + avail and node.working_set > 0
    assert cgroupstats.cgroup("/kubeclass/no-such-pod") is None
