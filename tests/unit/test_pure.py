"""Pure API logic, table-driven; each case names the upstream fact it checks."""
from __future__ import annotations

import pytest

from kubeclass.api import errors, names, patch, quantity, runtimeclass
from kubeclass.api.meta import human_duration
from kubeclass.api.selectors import FieldSelector, LabelSelector


@pytest.mark.parametrize("inp,out", [
    ("1000m", "1"), ("0.5Gi", "512Mi"), ("1536", "1536"), ("128Mi", "128Mi"), ("10G", "10G"), ("0.1m", "100u"),
    ("1e3", "1e3"), ("1024Mi", "1Gi"), ("1.5", "1500m"), ("1000", "1k"), (1, "1"), (0.5, "500m"), ("0", "0"),
])
def test_quantity_canonical(inp, out):
    """apimachinery resource.Quantity canonical form."""
    assert quantity.canonical(inp) == out


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "5Qi", " 1"])
def test_quantity_rejects(bad):
    with pytest.raises(quantity.QuantityError):
        quantity.parse(bad)


def test_quantity_arithmetic_is_exact():
    assert (quantity.parse("100m") + quantity.parse("50m")).canonical() == "150m"
    assert (quantity.parse("128Mi") + quantity.parse("64Mi")).canonical() == "192Mi"
    assert quantity.parse("1000m") == quantity.parse("1")


def test_dns_label_messages():
    """apimachinery IsDNS1123Label: dotted values that are valid subdomains say `must not contain dots`."""
    assert list(names.dns1123_label("a.b")) == ["must not contain dots"]
    assert list(names.dns1123_label("x" * 64)) == ["must be no more than 63 characters"]
    assert list(names.dns1123_label("UP")) == [names.LABEL_MSG]
    assert "(e.g. 'my-name',  or '123-abc'," in names.LABEL_MSG
    assert list(names.dns1123_label("bar-baz")) == []


def test_qualified_name_messages():
    assert list(names.qualified_name("example.com/ok")) == []
    assert list(names.qualified_name("/x")) == ["prefix part must be non-empty"]
    assert names.qualified_name("a/b/c")[0].startswith("a qualified name must consist")


def test_runtimeclass_validation_unit_scenarios():
    """pkg/apis/node/validation/validation_test.go scenarios."""
    ok = {"metadata": {"name": "foo"}, "handler": "bar-baz"}
    assert runtimeclass.validate(ok) == []
    assert runtimeclass.validate({"metadata": {"name": "&!@#"}, "handler": "foo"})
    assert runtimeclass.validate({"metadata": {"name": "foo"}, "handler": "&@#$"})
    assert runtimeclass.validate({"metadata": {"name": "empty"}})
    assert runtimeclass.validate({**ok, "overhead": {"podFixed": {"cpu": "10", "memory": "10G"}}}) == []
    assert runtimeclass.validate({**ok, "overhead": {"podFixed": {"my.org": "10m"}}})
    assert len(runtimeclass.validate({**ok, "scheduling": {"nodeSelector": {"not a valid key!!!": "x"}}})) == 1
    dup = [{"key": "a", "operator": "Equal", "value": "b", "effect": "NoExecute", "tolerationSeconds": s} for s in (5, 10)]
    assert len(runtimeclass.validate({**ok, "scheduling": {"tolerations": dup}})) == 1
    assert runtimeclass.validate({**ok, "scheduling": {}}) == []
    upd = runtimeclass.validate_update({"metadata": {"name": "foo"}, "handler": "somethingelse"}, {"metadata": {"name": "foo"}, "handler": "bar"})
    assert [str(e) for e in upd] == ['handler: Invalid value: "somethingelse": field is immutable']


def test_runtimeclass_conversion_roundtrip():
    v1 = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "k"}, "handler": "kata",
          "overhead": {"podFixed": {"cpu": "250m"}}, "scheduling": {"nodeSelector": {"a": "b"}}}
    alpha = runtimeclass.from_storage(dict(v1), "v1alpha1")
    assert alpha["spec"] == {"runtimeHandler": "kata", "overhead": v1["overhead"], "scheduling": v1["scheduling"]}
    assert runtimeclass.to_storage(alpha, "v1alpha1") == v1
    beta = runtimeclass.from_storage(dict(v1), "v1beta1")
    assert beta["apiVersion"] == "node.k8s.io/v1beta1" and runtimeclass.to_storage(dict(beta), "v1beta1") == v1


def test_warnings_for_deprecated_labels():
    rc = {"scheduling": {"nodeSelector": {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux"}}}
    assert sorted(runtimeclass.warnings(rc)) == [
        'scheduling.nodeSelector: deprecated since v1.14; use "kubernetes.io/arch" instead',
        'scheduling.nodeSelector: deprecated since v1.14; use "kubernetes.io/os" instead']
    assert runtimeclass.warnings({}) == []


def test_aggregate_rendering():
    e1, e2 = errors.invalid("a", "x", "bad"), errors.required("b")
    assert errors.aggregate([e1]) == 'a: Invalid value: "x": bad'
    assert errors.aggregate([e1, e2, e1]) == '[a: Invalid value: "x": bad, b: Required value]'


def test_label_selectors():
    s = LabelSelector.parse("env in (prod,dev),tier!=db,!legacy,app")
    assert s.matches({"env": "prod", "tier": "web", "app": "x"})
    assert not s.matches({"env": "prod", "tier": "db", "app": "x"})
    assert not s.matches({"env": "prod", "app": "x", "legacy": "1"})
    assert LabelSelector.from_object({"matchLabels": {"a": "b"}}).to_string() == "a=b"
    assert not LabelSelector.from_object(None).matches({})
    assert LabelSelector.from_object({}).matches({"x": "y"})


def test_field_selectors_allow_empty_values():
    fs = FieldSelector.parse("involvedObject.namespace=,status.phase!=Failed")
    assert fs.matches({"involvedObject": {}, "status": {"phase": "Running"}})
    assert not fs.matches({"involvedObject": {"namespace": "x"}, "status": {"phase": "Running"}})


def test_strategic_merge_patch_uses_upstream_strategies():
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                    "tolerations": [{"key": "x"}]}}
    out = patch.strategic_merge_patch(pod, {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                                                     "containers": [{"name": "a", "image": "2"}]}}, "io.k8s.api.core.v1.Pod")
    assert out["spec"]["containers"] == [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
    out = patch.strategic_merge_patch(pod, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}, "io.k8s.api.core.v1.Pod")
    assert [c["name"] for c in out["spec"]["containers"]] == ["a"]
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]}}
    out = patch.strategic_merge_patch(node, {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}, "io.k8s.api.core.v1.Node")
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoSchedule"}]  # taints are atomic
    out = patch.strategic_merge_patch(node, {"spec": {"taints": None}}, "io.k8s.api.core.v1.Node")
    assert "taints" not in out["spec"]
    meta = {"metadata": {"finalizers": ["a"]}}
    out = patch.strategic_merge_patch(meta, {"metadata": {"finalizers": ["b"]}}, "io.k8s.api.core.v1.Pod")
    assert out["metadata"]["finalizers"] == ["a", "b"]


def test_merge_patch_rfc7386():
    assert patch.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}


@pytest.mark.parametrize("secs,out", [(5, "5s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
                                      (10 * 3600, "10h"), (50 * 3600, "2d2h"), (9 * 86400, "9d"), (3 * 365 * 86400, "3y")])
def test_human_duration(secs, out):
    """apimachinery duration.HumanDuration, used by every AGE column."""
    assert human_duration(secs) == out


def test_applied_resources_are_read_back_as_kubelet_reports_them():
    from kubeclass.node import bundle
    cfg = {"linux": {"resources": {"cpu": {"shares": 102, "quota": 50000, "period": 100000}, "memory": {"limit": 134217728}}}}
    spec = {"resources": {"requests": {"cpu": "0.1", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}
    assert bundle.applied_resources(cfg, spec) == ({"limits": {"cpu": "500m", "memory": "128Mi"},
                                                    "requests": {"cpu": "100m", "memory": "128Mi"}}, {"cpu": "100m", "memory": "128Mi"})
    # a 5m limit is applied as the kernel's smallest quota (1 ms per 100 ms): reported as what runs, 10m
    small = {"linux": {"resources": {"cpu": {"shares": 5, "quota": 1000, "period": 100000}}}}
    assert bundle.applied_resources(small, {"resources": {"limits": {"cpu": "5m"}}})[0] == {"limits": {"cpu": "10m"}}
    assert bundle.applied_resources({"linux": {"resources": {"cpu": {"shares": 2}}}}, {}) == (None, None)
