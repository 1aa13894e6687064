"""Seed 001's Kyverno ClusterPolicy and Gatekeeper ConstraintTemplate + constraint, applied verbatim with
real kubectl, deny and admit the Pods they should, with Kyverno's and Gatekeeper's webhook messages."""
from __future__ import annotations

import json
import time

import pytest
import yaml

import seeds

POLICY = seeds.block("001", "kind: ClusterPolicy")
GATEKEEPER = seeds.block("001", "kind: ConstraintTemplate")
UNTRUSTED_NS = seeds.block("001", "name: untrusted-workloads")
# a Pod that satisfies the namespace's restricted Pod Security level, so only the policy decides
RESTRICTED_POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
spec:
{rc}  securityContext:
    runAsNonRoot: true
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: app
    image: busybox
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
"""
RUNTIMECLASSES = ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n---\n"
                  "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: standard\nhandler: runc\n")
KYVERNO_DENIAL = (
    'Error from server: error when creating "STDIN": admission webhook "validate.kyverno.svc-fail" denied the request: \n\n'
    "resource Pod/untrusted-workloads/{name} was blocked due to the following policies \n\n"
    "require-runtimeclass:\n"
    "  require-gvisor-for-untrusted: 'validation error: Pods in untrusted-workloads namespace\n"
    "    must use gvisor RuntimeClass. rule require-gvisor-for-untrusted failed at path\n"
    "    /spec/runtimeClassName/'")


def _pod(name: str, ns: str, rc: str | None = None) -> str:
    return RESTRICTED_POD.format(name=name, ns=ns, rc=f"  runtimeClassName: {rc}\n" if rc else "")


@pytest.fixture
def classes(cluster):
    cluster.ok("apply", "-f", "-", input=RUNTIMECLASSES)
    yield
    cluster.kubectl("delete", "runtimeclass", "gvisor", "standard", "--ignore-not-found")


@pytest.fixture
def kyverno_policy(cluster, classes):
    cluster.ok("apply", "-f", "-", input=UNTRUSTED_NS)
    out = cluster.ok("apply", "-f", "-", input=POLICY)
    assert out.strip() == "clusterpolicy.kyverno.io/require-runtimeclass created"
    yield
    cluster.kubectl("delete", "clusterpolicy", "require-runtimeclass", "--ignore-not-found")
    cluster.kubectl("delete", "namespace", "untrusted-workloads", "--timeout=30s")


def test_kyverno_seed_policy_enforces(cluster, kyverno_policy, k8s_client):
    table = cluster.ok("get", "clusterpolicies")
    assert table.split("\n")[0].split() == ["NAME", "ADMISSION", "BACKGROUND", "READY", "AGE", "MESSAGE"]
    assert table.split("\n")[1].split()[:4] == ["require-runtimeclass", "true", "true", "True"]
    assert "require-runtimeclass" in cluster.ok("get", "cpol")   # short name, as Kyverno's CRD declares
    cp = cluster.kubectl("apply", "-f", "-", input=_pod("plain", "untrusted-workloads"))
    assert cp.returncode == 1
    assert cp.stderr.strip() == KYVERNO_DENIAL.format(name="plain")
    cp = cluster.kubectl("apply", "-f", "-", input=_pod("other", "untrusted-workloads", "standard"))
    assert "rule require-gvisor-for-untrusted failed at path" in " ".join(cp.stderr.split()) and cp.returncode == 1
    assert cluster.ok("apply", "-f", "-", input=_pod("sandboxed", "untrusted-workloads", "gvisor")).strip() == "pod/sandboxed created"
    # other namespaces are not matched
    assert cluster.ok("apply", "-f", "-", input=_pod("elsewhere", "default")).strip() == "pod/elsewhere created"
    cluster.kubectl("delete", "pod", "elsewhere", "--wait=false")
    # Kyverno's autogen: the Pod rule also guards Deployment templates
    cp = cluster.kubectl("create", "deployment", "web", "--image=busybox", "-n", "untrusted-workloads")
    unfolded = " ".join(cp.stderr.split())   # the policy listing is YAML, folded at 80 columns
    assert "rule autogen-require-gvisor-for-untrusted failed at path /spec/template/spec/runtimeClassName/" in unfolded
    assert cp.returncode == 1
    # the official client sees a 400 Status whose message is the same text
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    api = client.CoreV1Api(k8s_client)
    with pytest.raises(ApiException) as e:
        api.create_namespaced_pod("untrusted-workloads", yaml.safe_load(_pod("viaclient", "untrusted-workloads")))
    assert e.value.status == 400
    assert json.loads(e.value.body)["message"].startswith('admission webhook "validate.kyverno.svc-fail" denied the request:')


def test_kyverno_audit_admits_with_warning_and_event(cluster, kyverno_policy):
    cluster.ok("patch", "clusterpolicy", "require-runtimeclass", "--type=merge", "-p", '{"spec":{"validationFailureAction":"Audit"}}')
    cp = cluster.kubectl("apply", "-f", "-", input=_pod("audited", "untrusted-workloads"))
    assert cp.returncode == 0 and cp.stdout.strip() == "pod/audited created"
    msg = ("validation error: Pods in untrusted-workloads namespace must use gvisor RuntimeClass. "
           "rule require-gvisor-for-untrusted failed at path /spec/runtimeClassName/")
    assert f"Warning: policy require-runtimeclass.require-gvisor-for-untrusted: {msg}" in cp.stderr
    events = json.loads(cluster.ok("get", "events", "-n", "untrusted-workloads", "--field-selector", "involvedObject.name=audited", "-o", "json"))
    [ev] = events["items"]
    assert (ev["type"], ev["reason"], ev["source"]["component"]) == ("Warning", "PolicyViolation", "kyverno-admission")
    assert ev["message"] == f"policy require-runtimeclass/require-gvisor-for-untrusted fail: {msg}"
    assert ev["involvedObject"]["kind"] == "Pod"
    # dry-run admits without recording anything
    cp = cluster.kubectl("apply", "-f", "-", "--dry-run=server", input=_pod("dry", "untrusted-workloads"))
    assert cp.returncode == 0 and "Warning: policy require-runtimeclass" in cp.stderr
    assert "dry" not in cluster.ok("get", "events", "-n", "untrusted-workloads")


def test_invalid_policies_are_refused(cluster):
    bad = POLICY.replace("validationFailureAction: Enforce", "validationFailureAction: Block")
    cp = cluster.kubectl("apply", "-f", "-", input=bad)
    assert cp.returncode == 1
    assert ('The ClusterPolicy "require-runtimeclass" is invalid: spec.validationFailureAction: Unsupported value: "Block": '
            'supported values: "audit", "enforce", "Audit", "Enforce"') in cp.stderr
    mutate = POLICY.replace("      validate:\n", "      mutate:\n")
    cp = cluster.kubectl("apply", "-f", "-", input=mutate)
    assert "kubeclass enforces validate rules only; mutate rules are not supported" in cp.stderr and cp.returncode == 1
    assert "require-runtimeclass" not in cluster.ok("get", "clusterpolicies")


# ------------------------------------------------------------------------------------------ Gatekeeper

def _apply_gatekeeper_block(cluster) -> None:
    """As with Gatekeeper itself, kubectl maps every document before creating any, so the constraint in
    the same file as its template needs a second apply once the template has created the kind."""
    first = cluster.kubectl("apply", "-f", "-", input=GATEKEEPER)
    assert "constrainttemplate.templates.gatekeeper.sh/k8srequiredruntimeclass created" in first.stdout
    again = cluster.ok("apply", "-f", "-", input=GATEKEEPER)
    assert "k8srequiredruntimeclass.constraints.gatekeeper.sh/require-approved-runtimeclass created" in again


@pytest.fixture
def gatekeeper(cluster, classes):
    cluster.kubectl("create", "namespace", "production")
    _apply_gatekeeper_block(cluster)
    yield
    cluster.kubectl("delete", "constrainttemplate", "k8srequiredruntimeclass", "--ignore-not-found")
    cluster.kubectl("delete", "namespace", "production", "--timeout=30s")


def test_gatekeeper_seed_template_and_constraint(cluster, gatekeeper):
    resources = cluster.ok("api-resources", "--api-group=constraints.gatekeeper.sh")
    assert resources.split("\n")[1].split() == ["k8srequiredruntimeclass", "constraints.gatekeeper.sh/v1beta1", "false", "K8sRequiredRuntimeClass"]
    table = cluster.ok("get", "constraints")
    assert table.split("\n")[0].split() == ["NAME", "ENFORCEMENT-ACTION", "TOTAL-VIOLATIONS"]
    assert table.split("\n")[1].split() == ["require-approved-runtimeclass", "deny"]
    assert cluster.ok("get", "constrainttemplate", "k8srequiredruntimeclass", "-o", "jsonpath={.status.created}") == "true"

    cp = cluster.kubectl("run", "nameless", "-n", "production", "--image=busybox", "--restart=Never")
    assert cp.returncode == 1
    assert cp.stderr.strip() == ('Error from server (Forbidden): admission webhook "validation.gatekeeper.sh" denied the request: '
                                 "[require-approved-runtimeclass] Pod must specify a runtimeClassName")
    cluster.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: experimental\nhandler: crun\n")
    try:
        cp = cluster.kubectl("apply", "-f", "-", input=_pod("experimental", "production", "experimental"))
        assert cp.stderr.strip() == ('Error from server (Forbidden): error when creating "STDIN": admission webhook "validation.gatekeeper.sh" '
                                     "denied the request: [require-approved-runtimeclass] RuntimeClass experimental is not in the allowed list")
    finally:
        cluster.kubectl("delete", "runtimeclass", "experimental")
    assert cluster.ok("apply", "-f", "-", input=_pod("approved", "production", "gvisor")).strip() == "pod/approved created"
    assert cluster.ok("apply", "-f", "-", input=_pod("unmatched", "default")).strip() == "pod/unmatched created"
    cluster.kubectl("delete", "pod", "unmatched", "--wait=false")

    # warn: admitted with the message as a warning
    cluster.ok("patch", "k8srequiredruntimeclass", "require-approved-runtimeclass", "--type=merge", "-p", '{"spec":{"enforcementAction":"warn"}}')
    cp = cluster.kubectl("run", "warned", "-n", "production", "--image=busybox", "--restart=Never")
    assert cp.returncode == 0
    assert "Warning: [require-approved-runtimeclass] Pod must specify a runtimeClassName" in cp.stderr

    # parameters are input.parameters: widen the list and the class is admitted
    cluster.ok("patch", "k8srequiredruntimeclass", "require-approved-runtimeclass", "--type=merge",
               "-p", '{"spec":{"enforcementAction":"deny","parameters":{"runtimeClasses":["standard"]}}}')
    cp = cluster.kubectl("apply", "-f", "-", input=_pod("gv2", "production", "gvisor"))
    assert "RuntimeClass gvisor is not in the allowed list" in cp.stderr

    # deleting the template removes the kind and its constraints, as deleting Gatekeeper's CRD does
    cluster.ok("delete", "constrainttemplate", "k8srequiredruntimeclass")
    assert "k8srequiredruntimeclass" not in cluster.ok("api-resources")
    cp = cluster.kubectl("get", "k8srequiredruntimeclass")   # (kubectl's discovery cache may still name it: then 404)
    assert cp.returncode == 1 and ('the server doesn\'t have a resource type "k8srequiredruntimeclass"' in cp.stderr
                                   or "the server could not find the requested resource" in cp.stderr)
    assert cluster.ok("run", "free", "-n", "production", "--image=busybox", "--restart=Never").strip() == "pod/free created"


def test_gatekeeper_rejects_bad_templates(cluster):
    broken = GATEKEEPER.split("---")[0].replace("not runtimeclass_allowed(runtimeClass)", "not runtimeclass_allowed(runtimeClass")
    cp = cluster.kubectl("apply", "-f", "-", input=broken)
    assert cp.returncode == 1
    assert ('admission webhook "validation.gatekeeper.sh" denied the request: invalid Rego in ConstraintTemplate '
            "'k8srequiredruntimeclass'") in cp.stderr
    renamed = GATEKEEPER.split("---")[0].replace("name: k8srequiredruntimeclass", "name: wrong-name")
    cp = cluster.kubectl("apply", "-f", "-", input=renamed)
    assert ("metadata.name: Invalid value: \"wrong-name\": the ConstraintTemplate's name 'wrong-name' is not equal to the "
            "lowercase of CRD's Kind: 'k8srequiredruntimeclass'") in cp.stderr
    assert cluster.ok("get", "constrainttemplates").strip() in ("", "No resources found")


def test_constraint_kinds_survive_restart(fresh_cluster):
    c = fresh_cluster
    c.ok("create", "namespace", "production")
    _apply_gatekeeper_block(c)
    c.stop()
    c.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        cp = c.kubectl("get", "k8srequiredruntimeclass", "require-approved-runtimeclass", "-o", "name")
        if cp.returncode == 0:
            break
        time.sleep(0.2)
    assert cp.stdout.strip() == "k8srequiredruntimeclass.constraints.gatekeeper.sh/require-approved-runtimeclass"
    cp = c.kubectl("run", "nameless", "-n", "production", "--image=busybox", "--restart=Never")
    assert "[require-approved-runtimeclass] Pod must specify a runtimeClassName" in cp.stderr
