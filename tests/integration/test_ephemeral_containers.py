"""The pods/ephemeralcontainers subresource (kubectl debug): what it stores, what it refuses and who may use it,
with upstream 1.32's texts. The node side (the debug container running in the Pod's sandbox) is in
tests/e2e/test_node_exec.py."""
from __future__ import annotations

import json

import pytest

NS = "debugging"
POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: debugging
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: ["sleep", "3600"]
"""


@pytest.fixture(scope="module")
def ns(cluster):
    cluster.ok("create", "namespace", NS)
    cluster.ok("apply", "-f", "-", input=POD.format(name="web"))
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--timeout=30s")


def ephemeral(cluster, name="web") -> list[dict]:
    return json.loads(cluster.ok("get", "pod", name, "-n", NS, "-o", "json"))["spec"].get("ephemeralContainers") or []


def test_kubectl_debug_adds_a_defaulted_ephemeral_container(cluster, ns):
    cp = cluster.kubectl("debug", "web", "-n", ns, "--image=busybox:1.36", "--target=app", "-c", "dbg", "--", "sh")
    assert cp.returncode == 0, cp.stderr
    assert ephemeral(cluster) == [{"name": "dbg", "image": "busybox:1.36", "command": ["sh"], "targetContainerName": "app",
                                   "resources": {}, "terminationMessagePath": "/dev/termination-log",
                                   "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}]
    # a generated name, as kubectl prints it
    cp = cluster.kubectl("debug", "web", "-n", ns, "--image=busybox", "--", "true")
    assert cp.returncode == 0 and cp.stdout.startswith("Defaulting debug container name to debugger-"), cp.stdout
    names = [c["name"] for c in ephemeral(cluster)]
    assert names[0] == "dbg" and names[1].startswith("debugger-") and len(names) == 2
    assert ephemeral(cluster)[1]["imagePullPolicy"] == "Always"          # no tag: :latest


def test_what_the_subresource_refuses(cluster, ns):
    def debug(*args):
        return cluster.kubectl("debug", "web", "-n", ns, "--image=busybox:1.36", *args, "--", "sh")
    cp = debug("--target=nope", "-c", "x1")
    assert cp.returncode == 1
    assert cp.stderr.splitlines()[-1] == 'The Pod "web" is invalid: spec.ephemeralContainers[2].targetContainerName: Not found: "nope"'
    cp = debug("-c", "app")
    assert cp.stderr.splitlines()[-1] == 'The Pod "web" is invalid: spec.ephemeralContainers[2].name: Duplicate value: "app"'

    def patch(ops):
        return cluster.kubectl("patch", "pod", "web", "-n", ns, "--subresource=ephemeralcontainers", "--type=json", "-p", json.dumps(ops))
    cp = patch([{"op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": "busybox:1.37"}])
    assert cp.returncode == 1
    assert cp.stderr.startswith('The Pod "web" is invalid: spec.ephemeralContainers[dbg]: Forbidden: existing ephemeral '
                                'containers "dbg" may not be changed\n'), cp.stderr
    cp = patch([{"op": "remove", "path": "/spec/ephemeralContainers/0"}])
    assert cp.stderr.startswith('The Pod "web" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral '
                                'containers "dbg" may not be removed\n'), cp.stderr
    cp = patch([{"op": "add", "path": "/spec/ephemeralContainers/-",
                 "value": {"name": "x2", "image": "busybox", "ports": [{"containerPort": 80}],
                           "readinessProbe": {"exec": {"command": ["true"]}}, "resources": {"limits": {"cpu": "1"}},
                           "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "s"}]}}])
    assert cp.stderr.strip().splitlines() == [
        'The Pod "web" is invalid: ',
        "* spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container",
        "* spec.ephemeralContainers[2].resources: Forbidden: cannot be set for an Ephemeral Container",
        "* spec.ephemeralContainers[2].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
        "* spec.ephemeralContainers[2].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container"]
    # nothing but ephemeral containers changes through the subresource; and they only change through it
    cp = patch([{"op": "add", "path": "/metadata/labels", "value": {"sneaky": "yes"}},
                {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 5}])
    assert cp.returncode == 0, cp.stderr
    pod = json.loads(cluster.ok("get", "pod", "web", "-n", ns, "-o", "json"))
    assert "sneaky" not in (pod["metadata"].get("labels") or {}) and "activeDeadlineSeconds" not in pod["spec"]
    cp = cluster.kubectl("patch", "pod", "web", "-n", ns, "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": {"name": "x3", "image": "busybox"}}]))
    assert cp.returncode == 1 and "spec: Forbidden: pod updates may not change fields other than" in cp.stderr
    # and never on create
    cp = cluster.kubectl("run", "born-debugged", "-n", ns, "--image=busybox",
                         '--overrides={"spec":{"ephemeralContainers":[{"name":"x","image":"busybox"}]}}')
    assert cp.stderr.strip() == 'The Pod "born-debugged" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create'
    assert [c["name"] for c in ephemeral(cluster)][0] == "dbg" and len(ephemeral(cluster)) == 2


def test_official_client_and_discovery(cluster, ns, k8s_client):
    from kubernetes import client
    v1 = client.CoreV1Api(k8s_client)
    cluster.ok("apply", "-f", "-", input=POD.format(name="api"))
    pod = v1.read_namespaced_pod_ephemeralcontainers("api", ns)
    assert pod.kind == "Pod" and not pod.spec.ephemeral_containers
    body = {"spec": {"ephemeralContainers": [{"name": "py", "image": "busybox:1.36", "targetContainerName": "app",
                                              "stdin": True, "tty": True}]}}
    out = v1.patch_namespaced_pod_ephemeralcontainers("api", ns, body)
    assert [(c.name, c.target_container_name, c.tty) for c in out.spec.ephemeral_containers] == [("py", "app", True)]
    resources = {r["name"]: r for r in json.loads(cluster.ok("get", "--raw", "/api/v1"))["resources"]}
    assert resources["pods/ephemeralcontainers"]["verbs"] == ["get", "patch", "update"]
    assert resources["pods/ephemeralcontainers"]["kind"] == "Pod"


def test_rbac_and_pod_security(cluster, ns):
    """Adding a debug container is its own permission (not in the edit role, as upstream), and the Pod it makes
    must still meet the namespace's Pod Security level."""
    cluster.ok("create", "rolebinding", "dev-edit", "--clusterrole=edit", "--user=dev", "-n", ns)
    cp = cluster.kubectl("--as=dev", "debug", "web", "-n", ns, "--image=busybox:1.36", "-c", "as-dev", "--", "sh")
    assert cp.returncode == 1
    assert cp.stderr.strip().splitlines()[-1] == (
        'Error from server (Forbidden): pods "web" is forbidden: User "dev" cannot patch resource '
        '"pods/ephemeralcontainers" in API group "" in the namespace "debugging"')
    cluster.ok("create", "role", "debugger", "--verb=patch,get", "--resource=pods/ephemeralcontainers", "-n", ns)
    cluster.ok("create", "rolebinding", "dev-debug", "--role=debugger", "--user=dev", "-n", ns)
    cp = cluster.kubectl("--as=dev", "debug", "web", "-n", ns, "--image=busybox:1.36", "-c", "as-dev", "--", "sh")
    assert cp.returncode == 0, cp.stderr

    cluster.ok("label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline")
    cp = cluster.kubectl("debug", "web", "-n", ns, "--image=busybox:1.36", "--profile=sysadmin", "-c", "root", "--", "sh")
    assert cp.returncode == 1
    assert cp.stderr.strip().splitlines()[-1] == (
        'Error from server (Forbidden): pods "web" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "root" must not set securityContext.privileged=true)')
    assert "root" not in [c["name"] for c in ephemeral(cluster)]
    cp = cluster.kubectl("debug", "web", "-n", ns, "--image=busybox:1.36", "--profile=baseline", "-c", "plain", "--", "sh")
    assert cp.returncode == 0, cp.stderr
