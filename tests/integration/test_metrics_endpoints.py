"""Prometheus /metrics (issue 17): the API server's, the scheduler's and the controller manager's, read with the
official Prometheus client's text-format parser; upstream's metric names and labels; protected as upstream
(RBAC on the non-resource URL /metrics: a plain user is refused, the system:monitoring group is let in, and the
scheduler's and controllers' own HTTPS endpoints delegate that decision to the API server). metrics.k8s.io is
discovered as metrics-server's is."""
from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Cluster, free_port, wait_for
from test_rbac import as_user, user_kubeconfig


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fam, **labels) -> list:
    return [s for s in fam.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_apiserver_metrics_as_upstream_names_them(cluster):
    cluster.ok("get", "namespaces")
    cluster.ok("get", "namespace", "default")
    cluster.ok("get", "apiservice", "v1.apps")
    cluster.ok("create", "configmap", "metrics-cm", "--from-literal=a=b")
    cluster.kubectl("apply", "--server-side", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: metrics-cm2\n")
    text = cluster.ok("get", "--raw", "/metrics")
    fams = families(text)
    req = fams["apiserver_request"]   # the parser names a counter family without its _total
    assert req.type == "counter"
    assert samples(req, verb="LIST", resource="namespaces", scope="cluster", code="200", component="apiserver", group="", version="v1")
    assert samples(req, verb="GET", resource="namespaces", scope="namespace", code="200")   # CleanScope: namespace first
    assert samples(req, verb="GET", resource="apiservices", scope="resource", code="200")
    assert samples(req, verb="POST", resource="configmaps", scope="namespace", code="201")
    assert samples(req, verb="APPLY", resource="configmaps", scope="namespace")
    dur = fams["apiserver_request_duration_seconds"]
    assert dur.type == "histogram"
    buckets = {s.labels["le"] for s in samples(dur, verb="LIST", resource="namespaces") if s.name.endswith("_bucket")}
    assert {"0.005", "1.0", "60.0", "+Inf"} <= buckets
    assert "apiserver_current_inflight_requests" in fams and "process_cpu_seconds" in fams
    assert not any(s.name.endswith("_created") for f in fams.values() for s in f.samples)


def test_apiserver_metrics_are_protected_by_rbac(cluster, tmp_path):
    plain = user_kubeconfig(cluster, tmp_path, "metrics-nobody")
    cp = as_user(cluster, plain, "get", "--raw", "/metrics")
    assert cp.returncode != 0 and 'cannot get path "/metrics"' in cp.stderr
    monitor = user_kubeconfig(cluster, tmp_path, "prometheus", "system:monitoring")
    cp = as_user(cluster, monitor, "get", "--raw", "/metrics")
    assert cp.returncode == 0 and "apiserver_request_total" in cp.stdout
    status, _, _ = cluster.request("GET", "/metrics", token=None)
    assert status == 401


def test_metrics_api_is_discovered_as_metrics_servers(cluster):
    out = cluster.ok("api-resources", "--api-group=metrics.k8s.io", "-o", "wide")
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert "NodeMetrics" in lines["nodes"] and "false" in lines["nodes"] and "get,list" in lines["nodes"]
    assert "PodMetrics" in lines["pods"] and "true" in lines["pods"]
    svc = cluster.ok("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "jsonpath={.spec.groupPriorityMinimum} {.spec.versionPriority}")
    assert svc == "100 100"
    # no node agent answers in this cluster: empty lists, as metrics-server before its first scrape
    assert '"items":[]' in cluster.ok("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").replace(" ", "")
    cp = cluster.kubectl("top", "node")
    assert cp.returncode != 0 and "metrics not available yet" in cp.stderr
    cp = cluster.kubectl("top", "pod", "nope")   # metrics-server's words for a Pod it has no figures for
    assert cp.returncode != 0 and 'podmetrics.metrics.k8s.io "default/nope" not found' in cp.stderr
    cp = cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope")
    assert cp.returncode != 0 and 'nodemetrics.metrics.k8s.io "nope" not found' in cp.stderr
    cp = cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=a%20in%20(")
    assert cp.returncode != 0 and "BadRequest" in cp.stderr
    status, _, body = cluster.request("POST", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", {"kind": "PodMetrics"})
    assert status == 405 and body["reason"] == "MethodNotAllowed"


def _get(url: str, token: str | None) -> tuple[int, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def full_cluster(tmp_path_factory):
    sched, ctrl = free_port(), free_port()
    c = Cluster(str(tmp_path_factory.mktemp("metrics") / "data"),
                extra=["--no-node", "--simulated-nodes", "1", "--scheduler-secure-port", str(sched),
                       "--controllers-secure-port", str(ctrl)]).start()
    c.sched_port, c.ctrl_port = sched, ctrl
    yield c
    c.stop()


def test_scheduler_and_controller_manager_metrics(full_cluster, tmp_path):
    c = full_cluster
    c.ok("apply", "-f", "-", input="apiVersion: v1\nkind: Pod\nmetadata:\n  name: m1\nspec:\n  tolerations:\n"
         "  - {key: kwok.x-k8s.io/node, operator: Exists}\n  containers: [{name: c, image: busybox}]\n---\n"
         "apiVersion: v1\nkind: Pod\nmetadata:\n  name: m2\nspec:\n  nodeSelector: {nowhere: 'true'}\n"
         "  containers: [{name: c, image: busybox}]\n")
    c.ok("create", "deployment", "mdep", "--image=busybox", "--replicas=1")
    wait_for(lambda: c.ok("get", "pod", "m1", "-o", "jsonpath={.spec.nodeName}"), timeout=30)
    sched = f"https://127.0.0.1:{c.sched_port}/metrics"
    assert _get(sched, None)[0] == 401
    assert _get(sched, "not-a-token")[0] == 401
    plain = user_kubeconfig(c, tmp_path, "sched-nobody")
    import yaml
    plain_token = yaml.safe_load(open(plain))["users"][0]["user"]["token"]
    assert _get(sched, plain_token)[0] == 403

    def scheduled():
        code, text = _get(sched, c.token())
        assert code == 200
        fams = families(text)
        att = fams["scheduler_schedule_attempts"]
        ok = sum(s.value for s in samples(att, result="scheduled", profile="default-scheduler"))
        bad = sum(s.value for s in samples(att, result="unschedulable"))
        return fams if ok >= 1 and bad >= 1 else None
    fams = wait_for(scheduled, timeout=30)
    assert fams["scheduler_pending_pods"].type == "gauge"
    assert {s.labels["queue"] for s in fams["scheduler_pending_pods"].samples} == {"active", "backoff", "unschedulable"}
    e2e = fams["scheduler_pod_scheduling_duration_seconds"]
    assert samples(e2e, attempts="1") and "scheduler_pod_scheduling_sli_duration_seconds" in fams
    assert samples(fams["kubeclass_scheduler_pods_scheduled"], runtime_handler="")

    ctrl = f"https://127.0.0.1:{c.ctrl_port}/metrics"
    assert _get(ctrl, plain_token)[0] == 403

    def deployed():
        code, text = _get(ctrl, c.token())
        fams = families(text)
        adds = samples(fams["workqueue_adds"], name="deployment")
        return fams if adds and adds[0].value >= 1 else None
    fams = wait_for(deployed, timeout=30)
    assert samples(fams["leader_election_master_status"], name="kube-controller-manager")[0].value == 1
    assert samples(fams["workqueue_depth"], name="replicaset")
    monitor = user_kubeconfig(c, tmp_path, "prom", "system:monitoring")
    assert _get(ctrl, yaml.safe_load(open(monitor))["users"][0]["user"]["token"])[0] == 200
    assert os.path.exists(os.path.join(c.data_dir, "pki", "kube-scheduler", "serving.crt"))
