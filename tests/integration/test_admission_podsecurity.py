"""PodSecurity with seed 001's untrusted-workloads namespace (enforce restricted), messages as upstream."""
from __future__ import annotations

import pytest

import seeds

POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
BARE = "  containers:\n  - name: app\n    image: busybox\n"
COMPLIANT = ("  securityContext:\n    runAsNonRoot: true\n    seccompProfile:\n      type: RuntimeDefault\n"
             "  containers:\n  - name: app\n    image: busybox\n    securityContext:\n      allowPrivilegeEscalation: false\n"
             "      capabilities:\n        drop: [\"ALL\"]\n")


@pytest.fixture
def untrusted(cluster):
    ns = seeds.block("001", "name: untrusted-workloads")
    cluster.ok("apply", "-f", "-", input=ns)
    yield "untrusted-workloads"
    cluster.kubectl("delete", "namespace", "untrusted-workloads", "--timeout=30s")


def test_restricted_enforced(cluster, untrusted):
    cp = cluster.kubectl("apply", "-f", "-", input=POD.format(name="bare", ns=untrusted, spec=BARE))
    assert cp.returncode == 1
    assert cp.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "bare" is forbidden: violates PodSecurity '
        '"restricted:latest": allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    cluster.ok("apply", "-f", "-", input=POD.format(name="good", ns=untrusted, spec=COMPLIANT))
    priv = COMPLIANT.replace("      allowPrivilegeEscalation: false\n", "      allowPrivilegeEscalation: false\n      privileged: true\n") + \
        "  hostNetwork: true\n"
    cp = cluster.kubectl("apply", "-f", "-", input=POD.format(name="priv", ns=untrusted, spec=priv))
    assert 'violates PodSecurity "restricted:latest": host namespaces (hostNetwork=true), privileged (container "app" must not set securityContext.privileged=true)' in cp.stderr


def test_warn_mode_and_workload_templates(cluster):
    cluster.ok("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: psa-warn\n  labels:\n"
                                          "    pod-security.kubernetes.io/warn: baseline\n    pod-security.kubernetes.io/warn-version: v1.32\n")
    try:
        cp = cluster.kubectl("apply", "-f", "-", input=POD.format(name="hostport", ns="psa-warn",
                             spec="  containers:\n  - name: app\n    image: busybox\n    ports:\n    - containerPort: 80\n      hostPort: 8080\n"))
        assert cp.returncode == 0
        assert 'Warning: would violate PodSecurity "baseline:v1.32": hostPort (container "app" uses hostPort 8080)' in cp.stderr
        cp = cluster.kubectl("create", "deployment", "dep", "--image=busybox", "-n", "psa-warn")
        assert cp.returncode == 0 and "would violate" not in cp.stderr  # baseline is satisfied by a plain template
    finally:
        cluster.kubectl("delete", "namespace", "psa-warn", "--timeout=30s")
