"""The RuntimeClass admission plugin end to end, with upstream's messages
(upstream-runtimeclass.md sections 3 and 9) and the namespace default class."""
from __future__ import annotations

import json

import pytest
import yaml

import seeds


def _apply(cluster, text):
    return cluster.kubectl("apply", "-f", "-", input=text)


@pytest.fixture
def classes(cluster):
    made = []

    def make(text):
        cluster.ok("apply", "-f", "-", input=text)
        made.append(yaml.safe_load(text)["metadata"]["name"])
    yield make
    for n in made:
        cluster.kubectl("delete", "runtimeclass", n, "--ignore-not-found")


def test_seed001_overhead_example(cluster, classes):
    """Seed 001: the Pod asking 100m/128Mi under gvisor is stored with overhead 50m/64Mi and the class's nodeSelector."""
    gvisor = seeds.gvisor_with_overhead()
    classes(gvisor)
    pod = seeds.overhead_example_pod()
    cluster.ok("apply", "-f", "-", input=pod)
    try:
        got = json.loads(cluster.ok("get", "pod", "overhead-example", "-o", "json"))
        assert got["spec"]["overhead"] == {"cpu": "50m", "memory": "64Mi"}
        assert got["spec"]["nodeSelector"] == {"runtime.kubernetes.io/gvisor": "true"}
        assert cluster.ok("get", "pod", "overhead-example", "-o", "jsonpath={.spec.overhead.cpu}") == "50m"
    finally:
        cluster.kubectl("delete", "pod", "overhead-example")


POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra}  containers:\n  - name: app\n    image: busybox\n"


def test_missing_class_is_forbidden_with_hint(cluster, classes):
    cp = _apply(cluster, POD.format(name="nope-pod", extra="  runtimeClassName: nope\n"))
    assert cp.returncode == 1
    assert cp.stderr.strip() == ('Error from server (Forbidden): error when creating "STDIN": pods "nope-pod" is forbidden: '
                                 'pod rejected: RuntimeClass "nope" not found')
    classes("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: native\nhandler: runc\n")
    cp = _apply(cluster, POD.format(name="hint-pod", extra="  runtimeClassName: runc\n"))
    assert cp.stderr.strip().endswith('pod rejected: RuntimeClass "runc" not found '
                                      '(RuntimeClass "native" has handler "runc"; runtimeClassName takes the class name)')


def test_generate_name_in_message(k8s_client):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    core = client.CoreV1Api(k8s_client)
    pod = client.V1Pod(metadata=client.V1ObjectMeta(generate_name="test-runtimeclass-foo-"),
                       spec=client.V1PodSpec(runtime_class_name="foo", containers=[client.V1Container(name="test", image="busybox")]))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", pod)
    body = json.loads(e.value.body)
    assert e.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == 'pods "test-runtimeclass-foo-" is forbidden: pod rejected: RuntimeClass "foo" not found'


def test_overhead_rules(cluster, classes):
    classes("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: oh\nhandler: runc\noverhead:\n  podFixed:\n    cpu: \"1\"\n    memory: 10Mi\n")
    classes("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: plain\nhandler: runc\n")
    cp = _apply(cluster, POD.format(name="mismatch", extra="  runtimeClassName: oh\n  overhead:\n    cpu: 2\n    memory: 10Mi\n"))
    assert cp.stderr.strip().endswith('pods "mismatch" is forbidden: pod rejected: Pod\'s Overhead doesn\'t match RuntimeClass\'s defined Overhead')
    cp = _apply(cluster, POD.format(name="noclass", extra="  overhead:\n    cpu: 1\n"))
    assert cp.stderr.strip().endswith('pods "noclass" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead')
    cp = _apply(cluster, POD.format(name="plainover", extra="  runtimeClassName: plain\n  overhead:\n    cpu: 1\n"))
    assert "Pod Overhead set without corresponding RuntimeClass defined Overhead" in cp.stderr
    # the same overhead written differently is accepted
    cluster.ok("apply", "-f", "-", input=POD.format(name="sameoh", extra="  runtimeClassName: oh\n  overhead:\n    cpu: 1000m\n    memory: 10Mi\n"))
    cluster.ok("delete", "pod", "sameoh")


def test_conflicting_node_selector(cluster, classes):
    """test/e2e/node/runtimeclass.go: should reject a Pod requesting a RuntimeClass with conflicting node selector."""
    classes("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: conflict-runtimeclass\nhandler: test-handler\n"
            "scheduling:\n  nodeSelector:\n    foo-x: conflict\n")
    cp = _apply(cluster, POD.format(name="conflicted", extra="  runtimeClassName: conflict-runtimeclass\n  nodeSelector:\n    foo-x: bar\n"))
    assert cp.stderr.strip().endswith('pods "conflicted" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[foo-x] = conflict; '
                                      'pod.spec.nodeSelector[foo-x] = bar')


def test_scheduling_merge_in_create_response(k8s_client, cluster, classes):
    """test/e2e/node/runtimeclass.go item 9: the created Pod carries both labels and the class's toleration."""
    from kubernetes import client
    classes("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: non-conflict-runtimeclass\nhandler: test-handler\n"
            "scheduling:\n  nodeSelector:\n    foo-u: bar\n    fizz-u: buzz\n  tolerations:\n  - key: foo-u\n    operator: Equal\n    value: bar\n    effect: NoSchedule\n")
    core = client.CoreV1Api(k8s_client)
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="merged"),
                       spec=client.V1PodSpec(runtime_class_name="non-conflict-runtimeclass", node_selector={"foo-u": "bar"},
                                             containers=[client.V1Container(name="test", image="busybox")]))
    got = core.create_namespaced_pod("default", pod)
    try:
        assert got.spec.node_selector == {"foo-u": "bar", "fizz-u": "buzz"}
        # DefaultTolerationSeconds (before RuntimeClass, as upstream orders them), then the class's toleration
        assert [(t.key, t.operator, t.value, t.effect, t.toleration_seconds) for t in got.spec.tolerations] == [
            ("node.kubernetes.io/not-ready", "Exists", None, "NoExecute", 300),
            ("node.kubernetes.io/unreachable", "Exists", None, "NoExecute", 300), ("foo-u", "Equal", "bar", "NoSchedule", None)]
        described = cluster.ok("describe", "pod", "merged")
        assert "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s" in described
        assert "foo-u=bar:NoSchedule" in described
        # dryRun=All returns the mutated object too, and stores nothing
        dry = core.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(name="merged-dry"), spec=pod.spec), dry_run="All")
        assert dry.spec.node_selector == {"foo-u": "bar", "fizz-u": "buzz"}
        assert not core.list_namespaced_pod("default", field_selector="metadata.name=merged-dry").items
    finally:
        core.delete_namespaced_pod("merged", "default")


def test_conformance_overhead_and_deleted_class(k8s_client):
    """Conformance: initialize Overhead (v1.24); reject a Pod requesting a deleted RuntimeClass (v1.20);
    schedule-able Pod without overhead keeps spec.overhead empty."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    node, core = client.NodeV1Api(k8s_client), client.CoreV1Api(k8s_client)
    node.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name="preconfigured-handler"), handler="test-handler",
                                                    overhead=client.V1Overhead(pod_fixed={"cpu": "10m", "memory": "1Mi"})))
    node.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name="no-overhead"), handler="test-handler"))
    spec = lambda rc: client.V1PodSpec(runtime_class_name=rc, restart_policy="Never", automount_service_account_token=False,
                                       containers=[client.V1Container(name="test", image="busybox", command=["true"])])
    p = core.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(generate_name="test-runtimeclass-"), spec=spec("preconfigured-handler")))
    assert p.spec.overhead == {"cpu": "10m", "memory": "1Mi"}
    q = core.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(generate_name="test-runtimeclass-"), spec=spec("no-overhead")))
    assert not q.spec.overhead
    node.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name="delete-me"), handler="runc"))
    node.delete_runtime_class("delete-me")
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(name="late"), spec=spec("delete-me")))
    assert e.value.status == 403
    # the plugin runs on CREATE only: an existing pod stays patchable after its class is gone
    node.delete_runtime_class("preconfigured-handler")
    core.patch_namespaced_pod(p.metadata.name, "default", {"metadata": {"labels": {"still": "ok"}}})
    for x in (p, q):
        core.delete_namespaced_pod(x.metadata.name, "default")
    node.delete_runtime_class("no-overhead")


def test_namespace_default_runtimeclass(cluster, classes):
    classes("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor-default\nhandler: runsc\n"
            "overhead:\n  podFixed:\n    cpu: 50m\n")
    cluster.ok("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sandboxed\n  annotations:\n"
                                          "    runtimeclass.kubeclass.io/default: gvisor-default\n")
    try:
        cluster.ok("apply", "-n", "sandboxed", "-f", "-", input=POD.format(name="defaulted", extra=""))
        got = json.loads(cluster.ok("get", "pod", "defaulted", "-n", "sandboxed", "-o", "json"))
        assert got["spec"]["runtimeClassName"] == "gvisor-default" and got["spec"]["overhead"] == {"cpu": "50m"}
        cluster.ok("apply", "-n", "sandboxed", "-f", "-", input=POD.format(name="explicit", extra="  runtimeClassName: gvisor-default\n"))
        cp = _apply(cluster, POD.format(name="other", extra="  runtimeClassName: missing\n").replace("metadata:\n", "metadata:\n  namespace: sandboxed\n"))
        assert 'RuntimeClass "missing" not found' in cp.stderr
    finally:
        cluster.kubectl("delete", "namespace", "sandboxed", "--timeout=20s")
