"""Kyverno pattern semantics and Gatekeeper matching / Rego result handling (pure logic and the real
Rego engine, no server). Facts from Kyverno's pkg/engine/validate and Gatekeeper's pkg/target."""
from __future__ import annotations

import pytest
import yaml

import seeds
from kubeclass.admission.gatekeeper import RegoError, compile_template
from kubeclass.api import gatekeeper, kyverno
from kubeclass.api.kyverno import check, value_matches


@pytest.mark.parametrize("value,pattern,ok", [
    ("gvisor", "gvisor", True), ("runc", "gvisor", False), (None, "gvisor", False),
    ("nginx:1.2", "nginx:*", True), ("nginx", "ngin?", True), ("nginx", "?*", True), ("", "?*", False),
    ("anything", "*", True), ("gvisor", "runc | gvisor", True), ("kata", "runc | gvisor", False),
    (5, ">3", True), (2, ">3", False), ("512Mi", "<1Gi", True), ("2Gi", "<=1Gi", False), (3, "1-5", True),
    (7, "1!-5", True), (3, "1!-5", False), ("v1", "!latest", True),
    ("latest", "!latest", False), (True, True, True), ("true", True, True), (1, 1, True), ("1", 1, True),
    (10, ">5 & <20", True), (30, ">5 & <20", False), ("30s", "<1m", True), (None, None, True), ("x", None, False),
])
def test_value_patterns(value, pattern, ok):
    assert value_matches(value, pattern) is ok


def test_missing_field_fails_at_kyverno_path():
    assert check({"spec": {}}, {"spec": {"runtimeClassName": "gvisor"}}) == "/spec/runtimeClassName/"
    assert check({"spec": {"runtimeClassName": "gvisor"}}, {"spec": {"runtimeClassName": "gvisor"}}) is None
    assert check({"spec": "x"}, {"spec": {"a": 1}}) == "/spec/"


def test_anchors():
    pod = {"spec": {"containers": [{"name": "a", "image": "nginx:latest"}, {"name": "b", "image": "busybox:1.36"}]}}
    # every container must match; failing path names the element
    assert check(pod, {"spec": {"containers": [{"image": "!*:latest"}]}}) == "/spec/containers/0/image/"
    # conditional anchor: only containers named b are checked
    assert check(pod, {"spec": {"containers": [{"(name)": "b", "image": "!*:latest"}]}}) is None
    # equality anchor: checked only when present
    assert check(pod, {"spec": {"=(hostNetwork)": False}}) is None
    assert check({"spec": {"hostNetwork": True}}, {"spec": {"=(hostNetwork)": False}}) == "/spec/hostNetwork/"
    # negation anchor: the key must be absent
    assert check({"spec": {"hostPID": True}}, {"spec": {"X(hostPID)": "null"}}) == "/spec/hostPID/"
    # existence anchor: at least one element matches
    assert check(pod, {"spec": {"<(containers)": [{"image": "busybox:*"}]}}) is None
    assert check(pod, {"spec": {"<(containers)": [{"image": "redis:*"}]}}) == "/spec/containers/"


def test_conditional_anchor_mismatch_skips_the_rule():
    pol = kyverno.compile_policy(yaml.safe_load("""
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: p}
spec:
  validationFailureAction: Enforce
  rules:
  - name: r
    match: {any: [{resources: {kinds: [Pod]}}]}
    validate:
      message: "sandboxed pods need gvisor"
      pattern:
        metadata:
          (labels):
            (sandbox): "true"
        spec:
          runtimeClassName: gvisor
"""))
    def run(labels, rc=None):
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "d", "labels": labels}, "spec": {}}
        if rc:
            obj["spec"]["runtimeClassName"] = rc
        req = kyverno.Request("CREATE", "", "v1", "Pod", None, "d", "x", obj, None)
        return [o.status for o in kyverno.run(pol, req)]
    assert run({"sandbox": "false"}) == ["skip"]
    assert run({"sandbox": "true"}) == ["fail"]
    assert run({"sandbox": "true"}, "gvisor") == ["pass"]


def test_seed_policy_messages_and_autogen():
    doc = yaml.safe_load(seeds.block("001", "kind: ClusterPolicy"))
    assert kyverno.validate_policy(doc, False) == []
    pol = kyverno.compile_policy(doc)
    assert [r.name for r in pol.rules] == ["require-gvisor-for-untrusted", "autogen-require-gvisor-for-untrusted",
                                           "autogen-cronjob-require-gvisor-for-untrusted"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "untrusted-workloads"}, "spec": {}}
    out = kyverno.run(pol, kyverno.Request("CREATE", "", "v1", "Pod", None, "untrusted-workloads", "x", pod, None))
    assert [(o.status, o.enforce, o.message) for o in out] == [("fail", True, (
        "validation error: Pods in untrusted-workloads namespace must use gvisor RuntimeClass. "
        "rule require-gvisor-for-untrusted failed at path /spec/runtimeClassName/"))]
    # other namespaces are not matched; pod status updates (a subresource) are not matched
    assert kyverno.run(pol, kyverno.Request("CREATE", "", "v1", "Pod", None, "default", "x", pod, None)) == []
    assert kyverno.run(pol, kyverno.Request("UPDATE", "", "v1", "Pod", "status", "untrusted-workloads", "x", pod, pod)) == []
    # an update of an object that already violated is allowed (allowExistingViolations)
    assert [o.status for o in kyverno.run(pol, kyverno.Request("UPDATE", "", "v1", "Pod", None, "untrusted-workloads", "x", pod, pod))] == ["skip"]


def test_policy_validation_errors():
    bad = {"metadata": {"name": "p"}, "spec": {"validationFailureAction": "Block", "rules": [
        {"name": "m", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]}, "mutate": {"patchStrategicMerge": {}}},
        {"name": "d", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]}, "validate": {"deny": {}}}]}}
    msgs = [str(e) for e in kyverno.validate_policy(bad, False)]
    assert 'spec.validationFailureAction: Unsupported value: "Block": supported values: "audit", "enforce", "Audit", "Enforce"' in msgs
    assert "spec.rules[0].mutate: Forbidden: kubeclass enforces validate rules only; mutate rules are not supported" in msgs
    assert "spec.rules[1].validate.deny: Forbidden: kubeclass supports validate.pattern and validate.anyPattern" in msgs


def test_variables_are_jmespath():
    ctx = {"request": {"object": {"metadata": {"name": "web"}}}}
    assert kyverno.substitute("pod {{ request.object.metadata.name }} needs gvisor", ctx) == "pod web needs gvisor"


# ------------------------------------------------------------------------------------------ Gatekeeper

def _seed_template() -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(seeds.block("001", "kind: ConstraintTemplate")))
    return docs[0], docs[1]


def _review(ns: str, spec: dict, kind: str = "Pod", group: str = "") -> gatekeeper.Review:
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "p", "namespace": ns}, "spec": spec}
    return gatekeeper.Review("CREATE", group, "v1", kind, "pods", None, ns, "p", obj, None)


def test_seed_template_evaluates_v0_rego_as_written():
    template, constraint = _seed_template()
    assert gatekeeper.validate_template(template) == []
    program = compile_template(template)
    params = constraint["spec"]["parameters"]

    def msgs(spec):
        return sorted(v["msg"] for v in program.violations(_review("production", spec).input(), params))
    assert msgs({}) == ["Pod must specify a runtimeClassName"]
    assert msgs({"runtimeClassName": "other"}) == ["RuntimeClass other is not in the allowed list"]
    assert msgs({"runtimeClassName": "gvisor"}) == []
    assert msgs({"runtimeClassName": "kata"}) == []


def test_constraint_match():
    _, c = _seed_template()
    assert gatekeeper.constraint_matches(c, _review("production", {}))
    assert not gatekeeper.constraint_matches(c, _review("default", {}))
    assert not gatekeeper.constraint_matches(c, _review("production", {}, kind="Deployment", group="apps"))
    c2 = {"spec": {"match": {"kinds": [{"apiGroups": ["*"], "kinds": ["*"]}], "excludedNamespaces": ["kube-*"]}}}
    assert gatekeeper.constraint_matches(c2, _review("default", {}))
    assert not gatekeeper.constraint_matches(c2, _review("kube-system", {}))


def test_v0_partial_sets_and_v1_sets_normalise_alike():
    assert gatekeeper.violations({'{"msg":"a"}': True, '{"msg":"b","details":{}}': True}) == [{"msg": "a"}, {"msg": "b", "details": {}}]
    assert gatekeeper.violations([{"msg": "a"}]) == [{"msg": "a"}]
    assert gatekeeper.violations({}) == [] and gatekeeper.violations(None) == []


def test_template_checks():
    template, _ = _seed_template()
    bad = yaml.safe_load(yaml.safe_dump(template))
    bad["metadata"]["name"] = "other"
    assert [str(e) for e in gatekeeper.validate_template(bad)] == [
        "metadata.name: Invalid value: \"other\": the ConstraintTemplate's name 'other' is not equal to the lowercase of CRD's Kind: 'k8srequiredruntimeclass'"]
    broken = yaml.safe_load(yaml.safe_dump(template))
    broken["spec"]["targets"][0]["rego"] = "package x\nviolation[{\"msg\": m}] {\n  m := \n"
    with pytest.raises(RegoError):
        compile_template(broken)
