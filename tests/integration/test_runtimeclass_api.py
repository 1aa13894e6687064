"""RuntimeClass through real kubectl and the official `kubernetes` client: upstream's conformance test
"should support RuntimeClasses API operations" (test/e2e/common/node/runtimeclass.go), kubectl verbs,
and the invalid cases with upstream's exact messages (upstream-runtimeclass.md section 2)."""
from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

import pytest

RC = "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: {name}\nhandler: {handler}\n"


def test_conformance_runtimeclass_api_operations(k8s_client):
    """Upstream conformance (v1.20): discovery, create, 409, watch by label, get/uid, list, patch, update,
    delete then 404, deletecollection."""
    from kubernetes import client, watch
    from kubernetes.client.rest import ApiException

    api = client.NodeV1Api(k8s_client)
    # discovery: node.k8s.io lists v1; v1 lists runtimeclasses
    groups = client.ApisApi(k8s_client).get_api_versions()
    node = [g for g in groups.groups if g.name == "node.k8s.io"][0]
    assert "v1" in [v.version for v in node.versions]
    assert "runtimeclasses" in [r.name for r in api.get_api_resources().resources]

    unique = "c" + uuid.uuid4().hex[:8]
    label = {"test": unique}

    def rc(suffix: str, handler: str):
        return client.V1RuntimeClass(metadata=client.V1ObjectMeta(name=f"{unique}-handler{suffix}", labels=label),
                                     handler=handler)

    created = api.create_runtime_class(rc("", f"{unique}-conformance-runtime-class"))
    with pytest.raises(ApiException) as e:
        api.create_runtime_class(rc("", f"{unique}-conformance-runtime-class"))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    api.create_runtime_class(rc("2", f"{unique}-conformance-runtime-class2"))

    listed = api.list_runtime_class(label_selector=f"test={unique}")
    events: list = []
    w = watch.Watch()

    def run_watch():
        for ev in w.stream(api.list_runtime_class, label_selector=f"test={unique}",
                           resource_version=listed.metadata.resource_version, timeout_seconds=20):
            events.append((ev["type"], ev["object"].metadata.name, (ev["object"].metadata.annotations or {})))
            if any(t == "MODIFIED" for t, _, _ in events):
                w.stop()
    t = threading.Thread(target=run_watch)
    t.start()
    time.sleep(0.5)
    api.create_runtime_class(rc("3", f"{unique}-conformance-runtime-class3"))

    got = api.read_runtime_class(created.metadata.name)
    assert got.metadata.uid == created.metadata.uid
    assert len(api.list_runtime_class(label_selector=f"test={unique}").items) == 3

    patched = api.patch_runtime_class(created.metadata.name, {"metadata": {"annotations": {"patched": "true"}}})
    assert patched.metadata.annotations["patched"] == "true"
    got = api.read_runtime_class(created.metadata.name)
    got.metadata.annotations["updated"] = "true"
    updated = api.replace_runtime_class(created.metadata.name, got)
    assert updated.metadata.annotations["updated"] == "true"
    t.join(25)
    assert ("ADDED", f"{unique}-handler3", {}) in events
    assert any(ty == "MODIFIED" and n == created.metadata.name for ty, n, _ in events)

    api.delete_runtime_class(created.metadata.name)
    with pytest.raises(ApiException) as e:
        api.read_runtime_class(created.metadata.name)
    assert e.value.status == 404
    assert len(api.list_runtime_class(label_selector=f"test={unique}").items) == 2
    api.delete_collection_runtime_class(label_selector=f"test={unique}")
    assert api.list_runtime_class(label_selector=f"test={unique}").items == []


def test_kubectl_verbs(cluster):
    cluster.ok("apply", "-f", "-", input=RC.format(name="verbs", handler="runsc"))
    try:
        assert cluster.ok("label", "runtimeclass", "verbs", "env=prod").strip() == "runtimeclass.node.k8s.io/verbs labeled"
        assert "annotated" in cluster.ok("annotate", "runtimeclass", "verbs", "owner=platform")
        out = cluster.ok("get", "runtimeclass", "verbs", "--show-labels")
        assert "env=prod" in out.splitlines()[1]
        assert cluster.ok("get", "runtimeclass", "verbs", "-o", "jsonpath={.handler}/{.metadata.labels.env}") == "runsc/prod"
        # edit-style patch: strategic merge (what `kubectl edit` sends) adds overhead
        cluster.ok("patch", "runtimeclass", "verbs", "-p", '{"overhead":{"podFixed":{"cpu":"250m","memory":"160Mi"}}}')
        got = json.loads(cluster.ok("get", "runtimeclass", "verbs", "-o", "json"))
        assert got["overhead"]["podFixed"] == {"cpu": "250m", "memory": "160Mi"}
        cluster.ok("patch", "runtimeclass", "verbs", "--type=json", "-p", '[{"op":"remove","path":"/overhead"}]')
        assert "overhead" not in json.loads(cluster.ok("get", "runtimeclass", "verbs", "-o", "json"))
        yml = cluster.ok("get", "runtimeclass", "verbs", "-o", "yaml")
        assert "handler: runsc" in yml and "kind: RuntimeClass" in yml
        desc = cluster.ok("describe", "runtimeclass", "verbs")
        assert "Name:         verbs" in desc and "Handler:      runsc" in desc and "env=prod" in desc
        assert cluster.ok("get", "runtimeclass", "verbs", "-o", "name").strip() == "runtimeclass.node.k8s.io/verbs"
        cluster.ok("label", "runtimeclass", "verbs", "env-")
        assert "env" not in (json.loads(cluster.ok("get", "runtimeclass", "verbs", "-o", "json"))["metadata"].get("labels") or {})
    finally:
        out = cluster.ok("delete", "runtimeclass", "verbs")
    assert out.strip() == 'runtimeclass.node.k8s.io "verbs" deleted'
    cp = cluster.kubectl("get", "runtimeclass", "verbs")
    assert cp.returncode == 1
    assert cp.stderr.strip() == 'Error from server (NotFound): runtimeclasses.node.k8s.io "verbs" not found'


def test_kubectl_get_watch(cluster):
    # an existing object makes kubectl print its initial list, which shows the watch is open
    cluster.ok("apply", "-f", "-", input=RC.format(name="already-there", handler="runc"))
    proc = subprocess.Popen(["kubectl", "--cache-dir", cluster.data_dir + "/kcache", "get", "runtimeclasses", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env())
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(l) for l in proc.stdout], daemon=True)
    reader.start()

    def wait_for(pred, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline and not pred():
            time.sleep(0.1)
        return pred()
    try:
        assert wait_for(lambda: any(l.startswith("already-there") for l in lines)), lines
        cluster.ok("apply", "-f", "-", input=RC.format(name="watched", handler="runc"))
        cluster.ok("label", "runtimeclass", "watched", "a=b")
        assert wait_for(lambda: len([l for l in lines if l.startswith("watched")]) >= 2), lines
    finally:
        proc.terminate()
        proc.wait(10)
        cluster.kubectl("delete", "runtimeclass", "watched", "already-there", "--ignore-not-found")
    assert lines[0].split() == ["NAME", "HANDLER", "AGE"]
    assert any(l.startswith("watched") and "runc" in l for l in lines), lines


def test_kubectl_explain(cluster):
    out = cluster.ok("explain", "runtimeclass")
    assert "KIND:       RuntimeClass" in out and "VERSION:    v1" in out and "handler" in out
    out = cluster.ok("explain", "runtimeclass.overhead")
    assert "podFixed" in out
    out = cluster.ok("explain", "runtimeclass.scheduling.nodeSelector")
    assert "nodeSelector" in out


def test_kubectl_explain_shows_quantities_and_enums_as_upstream(cluster):
    """Upstream's v3 schema (issue 16 item 9): Quantity is a oneOf, so explain names it; enumerated fields carry
    their enum and its "Possible enum values" description."""
    out = cluster.ok("explain", "runtimeclass", "--recursive")
    lines = [ln.rstrip() for ln in out.splitlines()]
    assert "    podFixed\t<map[string]Quantity>" in lines
    at = lines.index("      effect\t<string>")
    assert lines[at + 1] == "      enum: NoExecute, NoSchedule, PreferNoSchedule"
    assert lines[lines.index("      operator\t<string>") + 1] == "      enum: Equal, Exists"
    out = cluster.ok("explain", "runtimeclass.scheduling.tolerations.effect")
    assert "FIELD: effect <string>\nENUM:\n    NoExecute\n    NoSchedule\n    PreferNoSchedule\n" in out
    assert "Possible enum values:\n     - `\"NoExecute\"` Evict any already-running pods that do not tolerate the\n" in out
    out = cluster.ok("explain", "pods.spec.containers.ports.containerPort")
    assert "FIELD: containerPort <integer>" in out
    out = cluster.ok("explain", "deployments.spec.strategy.rollingUpdate.maxSurge")
    assert "FIELD: maxSurge <IntOrString>" in out


LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


@pytest.mark.parametrize("handler,message", [
    ("my.handler", 'handler: Invalid value: "my.handler": must not contain dots'),
    ("UPPER", 'handler: Invalid value: "UPPER": ' + LABEL_MSG),
    ('""', 'handler: Invalid value: "": ' + LABEL_MSG),
    ("a" * 64, 'handler: Invalid value: "' + "a" * 64 + '": must be no more than 63 characters'),
])
def test_invalid_handler(cluster, handler, message):
    cp = cluster.kubectl("apply", "-f", "-", input=RC.format(name="bad", handler=handler))
    assert cp.returncode == 1
    assert cp.stderr.strip() == f'The RuntimeClass "bad" is invalid: {message}'


def test_invalid_cases_exact_messages(cluster):
    cp = cluster.kubectl("apply", "-f", "-", input=RC.format(name="Bad_Name", handler="runc"))
    assert cp.stderr.strip() == ('The RuntimeClass "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
                                 "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end "
                                 "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
                                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    neg = RC.format(name="neg", handler="runc") + "overhead:\n  podFixed:\n    cpu: \"-1\"\n"
    cp = cluster.kubectl("apply", "-f", "-", input=neg)
    assert cp.stderr.strip() == 'The RuntimeClass "neg" is invalid: overhead.limits[cpu]: Invalid value: "-1": must be greater than or equal to 0'
    unknown = RC.format(name="unk", handler="runc") + "overhead:\n  podFixed:\n    my.org: 10m\n"
    cp = cluster.kubectl("apply", "-f", "-", input=unknown)
    assert "overhead.limits[my.org]: Invalid value: my.org: must be a standard resource type or fully qualified" in cp.stderr
    assert "overhead.limits[my.org]: Invalid value: my.org: must be a standard resource for containers" in cp.stderr
    spaced = RC.format(name="spaced", handler="runc") + "overhead:\n  podFixed:\n    foo bar: 10m\n"
    cp = cluster.kubectl("apply", "-f", "-", input=spaced)
    assert cp.stderr.strip().splitlines() == [   # exactly upstream's two errors, kubectl lists them
        'The RuntimeClass "spaced" is invalid: ',
        "* overhead.limits[foo bar]: Invalid value: foo bar: name part must consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
        "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        "* overhead.limits[foo bar]: Invalid value: foo bar: must be a standard resource for containers"]
    tol = RC.format(name="tol", handler="runc") + "scheduling:\n  tolerations:\n  - operator: Equal\n    value: x\n"
    cp = cluster.kubectl("apply", "-f", "-", input=tol)
    assert cp.stderr.strip() == ('The RuntimeClass "tol" is invalid: scheduling.tolerations.tolerations[0].operator: Invalid value: '
                                 '"Equal": operator must be Exists when `key` is empty, which means "match all values and all keys"')
    exists = RC.format(name="tolx", handler="runc") + ("scheduling:\n  tolerations:\n  - {key: tier, operator: Exists, value: high-security, "
                                                      "effect: NoSchedule}\n")
    cp = cluster.kubectl("apply", "-f", "-", input=exists)
    assert cp.stderr.strip() == ('The RuntimeClass "tolx" is invalid: scheduling.tolerations.tolerations[0].operator: Invalid value: '
                                 '"high-security": value must be empty when `operator` is \'Exists\'')
    bad_effect = RC.format(name="tole", handler="runc") + "scheduling:\n  tolerations:\n  - {key: a, operator: Exists, effect: Sometimes}\n"
    cp = cluster.kubectl("apply", "-f", "-", input=bad_effect)
    assert 'scheduling.tolerations.tolerations[0].effect: Unsupported value: "Sometimes"' in cp.stderr
    dup = RC.format(name="dup", handler="runc") + ("scheduling:\n  tolerations:\n  - {key: a, operator: Equal, value: b, effect: NoExecute, tolerationSeconds: 5}\n"
                                                   "  - {key: a, operator: Equal, value: b, effect: NoExecute, tolerationSeconds: 10}\n")
    cp = cluster.kubectl("apply", "-f", "-", input=dup)
    assert 'scheduling.tolerations[1]: Duplicate value: core.Toleration{Key:"a", Operator:"Equal", Value:"b", Effect:"NoExecute"' in cp.stderr
    sel = RC.format(name="sel", handler="runc") + "scheduling:\n  nodeSelector:\n    \"not a valid key!!!\": x\n"
    cp = cluster.kubectl("apply", "-f", "-", input=sel)
    assert ('scheduling.nodeSelector: Invalid value: "not a valid key!!!": name part must consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')") in cp.stderr
    # changing the handler: 422 immutable; changing overhead: accepted
    cluster.ok("apply", "-f", "-", input=RC.format(name="immut", handler="bar"))
    try:
        cp = cluster.kubectl("apply", "-f", "-", input=RC.format(name="immut", handler="somethingelse"))
        assert cp.stderr.strip() == 'The RuntimeClass "immut" is invalid: handler: Invalid value: "somethingelse": field is immutable'
        cluster.ok("apply", "-f", "-", input=RC.format(name="immut", handler="bar") + "overhead:\n  podFixed:\n    cpu: 10m\n")
    finally:
        cluster.kubectl("delete", "runtimeclass", "immut")
    for n in ("Bad_Name", "neg", "unk", "tol", "dup", "sel"):
        assert cluster.kubectl("get", "runtimeclass", n).returncode == 1


def test_invalid_via_python_client_status(k8s_client):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    api = client.NodeV1Api(k8s_client)
    with pytest.raises(ApiException) as e:
        api.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name="x"), handler="my.handler"))
    st = json.loads(e.value.body)
    assert e.value.status == 422 and st["reason"] == "Invalid"
    assert st["message"] == 'RuntimeClass.node.k8s.io "x" is invalid: handler: Invalid value: "my.handler": must not contain dots'
    assert st["details"]["causes"] == [{"reason": "FieldValueInvalid", "message": 'Invalid value: "my.handler": must not contain dots', "field": "handler"}]
    assert st["details"]["group"] == "node.k8s.io" and st["details"]["kind"] == "RuntimeClass"


def test_deprecated_node_label_warnings(cluster):
    text = RC.format(name="warned", handler="runc") + "scheduling:\n  nodeSelector:\n    beta.kubernetes.io/arch: amd64\n"
    cp = cluster.kubectl("apply", "-f", "-", input=text)
    try:
        assert cp.returncode == 0
        assert 'Warning: scheduling.nodeSelector: deprecated since v1.14; use "kubernetes.io/arch" instead' in cp.stderr
    finally:
        cluster.kubectl("delete", "runtimeclass", "warned")
