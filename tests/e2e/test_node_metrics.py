"""What each runtime costs (issue 17), on the real node: `kubectl top pod` / `kubectl top node` through
metrics.k8s.io; kubelet's Summary API and the agent's Prometheus metrics through nodes/proxy; the measured sandbox
overhead of runc and gVisor Pods (Pod condition, Warning event past the declared podFixed, the RuntimeClass
annotation); `kubeclass overhead measure` for runc and runsc, whose figures differ as physics says (gVisor's
Sentry and Gofer hold memory that runc has no counterpart for)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT
from nodecluster import IMAGE, NODE, node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = """apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
overhead: {podFixed: {cpu: 50m, memory: 64Mi}}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor-tight}
handler: runsc
overhead: {podFixed: {cpu: 1m, memory: 1Mi}}
"""


def pod(name: str, rc: str | None) -> str:
    spec = {"terminationGracePeriodSeconds": 0, "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                                               "command": ["sleep", "3600"]}]}
    if rc:
        spec["runtimeClassName"] = rc
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "top"}}, "spec": spec})


@pytest.fixture(scope="module")
def mc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    for name, rc in (("top-runc", None), ("top-gvisor", "gvisor"), ("top-tight", "gvisor-tight")):
        node_cluster.ok("apply", "-f", "-", input=pod(name, rc))
    for name in ("top-runc", "top-gvisor", "top-tight"):
        node_cluster.wait_phase(name, ("Running",))
    yield node_cluster
    node_cluster.kubectl("delete", "pod", "top-runc", "top-gvisor", "top-tight", "--grace-period=0")


def _mib(q: str) -> float:
    from kubeclass.api import quantity
    return float(quantity.value(q)) / (1 << 20)


def test_kubectl_top_pod_and_node(mc):
    def top():
        out = mc.ok("top", "pod", "-l", "app=top")
        rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
        return rows if {"top-runc", "top-gvisor", "top-tight"} <= set(rows) else None
    rows = wait_for(top, timeout=60, step=1)
    assert mc.ok("top", "pod", "-l", "app=top").splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert all(r[1].endswith("m") and r[2].endswith("Mi") for r in rows.values())
    out = mc.ok("top", "pod", "top-gvisor", "--containers")
    assert out.splitlines()[1].split()[:2] == ["top-gvisor", "app"]
    node = mc.ok("top", "node").splitlines()
    assert node[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert node[1].split()[0] == NODE and node[1].split()[3].endswith("Mi")


def test_metrics_api_answers_as_metrics_server(mc):
    lst = json.loads(mc.ok("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dtop"))
    assert lst["kind"] == "PodMetricsList" and lst["apiVersion"] == "metrics.k8s.io/v1beta1"
    by = {i["metadata"]["name"]: i for i in lst["items"]}
    assert set(by) == {"top-runc", "top-gvisor", "top-tight"}
    g = by["top-gvisor"]
    assert g["kind"] == "PodMetrics" and g["metadata"]["labels"] == {"app": "top"} and g["window"] and g["timestamp"]
    assert [c["name"] for c in g["containers"]] == ["app"] and set(g["containers"][0]["usage"]) == {"cpu", "memory"}
    # ours: the sandbox beyond its containers; gVisor's Sentry and Gofer hold megabytes, runc's nothing much
    assert g["sandbox"]["runtimeHandler"] == "runsc" and _mib(g["sandbox"]["usage"]["memory"]) > 3
    assert _mib(by["top-runc"]["sandbox"]["usage"]["memory"]) < 2
    one = json.loads(mc.ok("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/top-runc"))
    assert one["metadata"]["name"] == "top-runc"
    nodes = json.loads(mc.ok("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"))
    assert [n["metadata"]["name"] for n in nodes["items"]] == [NODE]
    summary = json.loads(mc.ok("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/stats/summary"))
    assert summary["node"]["nodeName"] == NODE and summary["node"]["memory"]["availableBytes"] > 0
    pods = {p["podRef"]["name"]: p for p in summary["pods"]}
    assert pods["top-gvisor"]["containers"][0]["memory"]["workingSetBytes"] > 0
    assert pods["top-gvisor"]["memory"]["workingSetBytes"] > pods["top-gvisor"]["containers"][0]["memory"]["workingSetBytes"]


def test_node_agent_prometheus_metrics(mc):
    text = mc.ok("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["kubelet_running_pods"].samples[0].value >= 3
    assert fams["kubelet_pod_start_duration_seconds"].type == "histogram"
    started = {s.labels["runtime_handler"]: s.value for s in fams["kubeclass_node_pods_started"].samples}
    assert started.get("runsc", 0) >= 2 and started.get("runc", 0) >= 1

    def overhead():
        fams = {f.name: f for f in text_string_to_metric_families(mc.ok("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics"))}
        rows = {s.labels["pod"]: s for s in fams["kubeclass_node_sandbox_overhead_memory_bytes"].samples}
        return rows if "top-gvisor" in rows else None
    rows = wait_for(overhead, timeout=40, step=1)
    assert rows["top-gvisor"].labels["runtime_handler"] == "runsc" and rows["top-gvisor"].value > 3 * (1 << 20)


def test_measured_overhead_condition_event_and_runtimeclass_annotation(mc):
    def cond(name):
        conds = {c["type"]: c for c in mc.pod(name)["status"].get("conditions") or []}
        return conds.get("kubeclass.io/OverheadWithinPodFixed")
    ok = wait_for(lambda: cond("top-gvisor"), timeout=40, step=1)
    assert ok["status"] == "True" and ok["reason"] == "WithinPodFixed" and "cpu 50m, memory 64Mi" in ok["message"]
    bad = wait_for(lambda: cond("top-tight"), timeout=40, step=1)
    assert bad["status"] == "False" and bad["reason"] == "ExceedsPodFixed" and "> 1Mi" in bad["message"]
    ev = wait_for(lambda: [e for e in mc.events("top-tight") if e["reason"] == "OverheadExceeded"], timeout=20)
    assert ev[0]["type"] == "Warning" and "gvisor-tight" in ev[0]["message"]
    assert cond("top-runc") is None   # no RuntimeClass, nothing declared to compare with
    assert not [e for e in mc.events("top-gvisor") if e["reason"] == "OverheadExceeded"]

    def annotated():
        a = (json.loads(mc.ok("get", "runtimeclass", "gvisor", "-o", "json"))["metadata"].get("annotations") or {})
        return a.get("runtimeclass.kubeclass.io/measured-overhead")
    figures = json.loads(wait_for(annotated, timeout=40, step=1))[NODE]
    assert figures["pods"] >= 1 and _mib(figures["memory"]) >= 3 and figures["cpu"].endswith("m")
    assert "runtimeclass.kubeclass.io/measured-overhead" in mc.ok("describe", "runtimeclass", "gvisor")


def _measure(mc, handler: str) -> dict:
    cp = subprocess.run([sys.executable, "-m", "kubeclass.cli", "overhead", "measure", "--handler", handler, "--pods", "3",
                         "--image", IMAGE, "--readings", "1", "--interval", "11", "-o", "json", "--kubeconfig", mc.kubeconfig],
                        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=240)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def test_overhead_measure_runc_and_gvisor(mc):
    runsc, runc = _measure(mc, "runsc"), _measure(mc, "runc")
    assert runsc["runtimeClass"] == "gvisor" and not runsc["temporary"]   # the existing class of that handler
    assert runsc["declared"] == {"cpu": "50m", "memory": "64Mi"} and runsc["pods"] == 3
    assert runc["temporary"] and runc["runtimeClass"].startswith("kubeclass-overhead-")
    gm, rm = runsc["distribution"]["memory"], runc["distribution"]["memory"]
    assert gm["p50"] > rm["p50"] + 3 * (1 << 20), (gm, rm)   # the Sentry and Gofer hold memory; runc adds none
    assert _mib(runsc["recommended"]["memory"]) >= gm["p95"] / (1 << 20)
    assert runc["recommended"]["memory"] in ("1Mi", "2Mi")
    # the probe Pods and the temporary class are gone
    assert "overhead-probe" not in mc.ok("get", "pods", "-o", "name")
    assert runc["runtimeClass"] not in mc.ok("get", "runtimeclass", "-o", "name")
