"""Smoke tests with other clients users run: lightkube, kr8s and a small kopf operator."""
from __future__ import annotations

import subprocess
import sys
import time


def test_lightkube(cluster):
    from lightkube import Client, KubeConfig
    from lightkube.resources.node_v1 import RuntimeClass
    from lightkube.models.meta_v1 import ObjectMeta

    client = Client(KubeConfig.from_file(cluster.kubeconfig))
    client.create(RuntimeClass(metadata=ObjectMeta(name="lk", labels={"via": "lightkube"}), handler="runsc"))
    try:
        got = client.get(RuntimeClass, "lk")
        assert got.handler == "runsc"
        assert [r.metadata.name for r in client.list(RuntimeClass, labels={"via": "lightkube"})] == ["lk"]
        client.patch(RuntimeClass, "lk", {"metadata": {"labels": {"patched": "yes"}}})
        assert client.get(RuntimeClass, "lk").metadata.labels["patched"] == "yes"
    finally:
        client.delete(RuntimeClass, "lk")


def test_kr8s(cluster):
    import kr8s
    api = kr8s.api(kubeconfig=cluster.kubeconfig)
    from kr8s.objects import new_class
    RC = new_class(kind="RuntimeClass", version="node.k8s.io/v1", namespaced=False, plural="runtimeclasses")
    rc = RC({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "k8s-kr8s"}, "handler": "runc"}, api=api)
    rc.create()
    try:
        names = [o.name for o in api.get("runtimeclasses")]
        assert "k8s-kr8s" in names
        rc.label({"via": "kr8s"})
        rc.refresh()
        assert rc.labels["via"] == "kr8s"
    finally:
        rc.delete()


OPERATOR = """
import kopf

@kopf.on.create("node.k8s.io", "v1", "runtimeclasses")
def mark(body, patch, **_):
    patch.setdefault("metadata", {}).setdefault("labels", {})["seen-by"] = "kopf"
"""


def test_kopf_operator(cluster, tmp_path):
    op = tmp_path / "op.py"
    op.write_text(OPERATOR)
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-A", str(op)],
                            env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        cluster.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: kopfed\nhandler: runc\n")
        deadline = time.time() + 20
        labels = {}
        while time.time() < deadline:
            import json
            labels = json.loads(cluster.ok("get", "runtimeclass", "kopfed", "-o", "json"))["metadata"].get("labels") or {}
            if labels.get("seen-by") == "kopf":
                break
            time.sleep(0.5)
        assert labels.get("seen-by") == "kopf"
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
        cluster.kubectl("delete", "runtimeclass", "kopfed", "--ignore-not-found")
    assert "Traceback" not in out or "seen-by" in str(labels), out[-3000:]


def test_official_client_core_v1(k8s_client):
    """CoreV1Api: pods with generateName, field selectors, a label watch, graceful delete of a bound pod."""
    from kubernetes import client, watch
    core = client.CoreV1Api(k8s_client)
    pod = client.V1Pod(metadata=client.V1ObjectMeta(generate_name="cv1-", labels={"suite": "core"}),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))
    created = core.create_namespaced_pod("default", pod)
    name = created.metadata.name
    assert name.startswith("cv1-") and len(name) == len("cv1-") + 5
    assert created.status.phase == "Pending"
    got = core.list_namespaced_pod("default", field_selector=f"metadata.name={name}")
    assert [p.metadata.name for p in got.items] == [name]
    assert core.list_pod_for_all_namespaces(label_selector="suite=core").items[0].metadata.name == name
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_pod, "default", label_selector="suite=core", timeout_seconds=5):
        seen.append(ev["type"])
        if ev["type"] == "ADDED":
            core.patch_namespaced_pod(name, "default", {"metadata": {"annotations": {"x": "y"}}})
        if ev["type"] == "MODIFIED":
            w.stop()
    assert seen == ["ADDED", "MODIFIED"]
    core.delete_namespaced_pod(name, "default")
    assert core.list_namespaced_pod("default", label_selector="suite=core").items == []


def test_finalizers_hold_deletion(k8s_client):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    import pytest
    api = client.NodeV1Api(k8s_client)
    api.create_runtime_class(client.V1RuntimeClass(
        metadata=client.V1ObjectMeta(name="held", finalizers=["example.com/keep"]), handler="runc"))
    api.delete_runtime_class("held")
    rc = api.read_runtime_class("held")
    assert rc.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as e:
        api.patch_runtime_class("held", {"metadata": {"finalizers": ["example.com/keep", "example.com/new"]}})
    assert e.value.status == 422 and "no new finalizers can be added if the object is being deleted" in e.value.body
    api.patch_runtime_class("held", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        api.read_runtime_class("held")
    assert e.value.status == 404
