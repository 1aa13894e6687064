"""ConfigMaps, Secrets and the downward API in real containers (runc and gVisor): env valueFrom / envFrom,
configMap / secret / downwardAPI / projected volumes (AtomicWriter layout, secrets on tmpfs, read-only),
updates reaching a running container, and kubelet's failures: FailedMount while a volume's source is
missing (the Pod starts once it appears) and CreateContainerConfigError for a missing key."""
from __future__ import annotations

import pytest
import yaml

from nodecluster import IMAGE, node_cluster, wait_for  # noqa: F401 - fixture

SCRIPT = r"""
echo "env: $USER_NAME $MODE $CFG_level $POD_NS"
echo "cm: $(cat /etc/app/mode) $(cat /etc/app/sub/level.txt)"
echo "secret: $(cat /etc/secret/password)"
echo "labels: $(cat /etc/podinfo/labels)"
echo "projected: $(cat /etc/all/mode) $(cat /etc/all/password) $(cat /etc/all/name)"
grep -E ' /etc/secret ' /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1
touch /etc/app/x 2>/dev/null && echo writable || echo read-only
ls -a /etc/app | tr '\n' ' '; echo
"""


def pod_doc(name: str, rc: str | None = None, restart: str = "Never", script: str = SCRIPT) -> dict:
    spec = {"restartPolicy": restart, "containers": [{
        "name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", script],
        "env": [{"name": "USER_NAME", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "username"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}}},
                {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": True}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "secret", "mountPath": "/etc/secret"},
                         {"name": "podinfo", "mountPath": "/etc/podinfo"}, {"name": "all", "mountPath": "/etc/all"}]}],
        "volumes": [
            {"name": "config", "configMap": {"name": "app-config", "items": [
                {"key": "mode", "path": "mode"}, {"key": "level", "path": "sub/level.txt"}]}},
            {"name": "secret", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
            {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "all", "projected": {"sources": [
                {"configMap": {"name": "app-config", "items": [{"key": "mode", "path": "mode"}]}},
                {"secret": {"name": "app-secret", "items": [{"key": "password", "path": "password"}]}},
                {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}]}
    if rc:
        spec["runtimeClassName"] = rc
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "cfg", "tier": "x"}}, "spec": spec}


@pytest.fixture(scope="module")
def data(node_cluster):
    node_cluster.ok("create", "secret", "generic", "app-secret", "--from-literal=username=alice", "--from-literal=password=s3cret")
    node_cluster.ok("create", "configmap", "app-config", "--from-literal=mode=fast", "--from-literal=level=3")
    return node_cluster


@pytest.mark.parametrize("rc", [None, "gvisor"])
def test_env_and_volumes_from_api_data(data, rc):
    nc = data
    if rc:
        nc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: gvisor}\nhandler: runsc\n")
    name = f"cfg-{rc or 'runc'}"
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(pod_doc(name, rc)))
    p = nc.wait_phase(name, ("Succeeded", "Failed"), timeout=90)
    assert p["status"]["phase"] == "Succeeded", (p["status"], nc.events(name))
    out = nc.logs(name).splitlines()
    assert out[0] == "env: alice fast 3 default"
    assert out[1] == "cm: fast 3"
    assert out[2] == "secret: s3cret"
    assert out[3] == 'labels: app="cfg"' and out[4] == 'tier="x"'
    assert out[5] == f"projected: fast s3cret {name}"
    assert out[6] == "tmpfs ro" if rc is None else out[6].endswith("ro")
    assert out[7] == "read-only"
    assert "..data" in out[8].split() and "mode" in out[8].split()


def test_update_reaches_a_running_container(data):
    nc = data
    nc.ok("create", "configmap", "live", "--from-literal=color=blue")
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "live"}, "spec": {
        "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "while true; do cat /cfg/color; echo; sleep 1; done"],
                        "volumeMounts": [{"name": "c", "mountPath": "/cfg"}]}],
        "volumes": [{"name": "c", "configMap": {"name": "live"}}], "terminationGracePeriodSeconds": 1}}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))
    nc.wait_phase("live", ("Running",), timeout=60)
    wait_for(lambda: "blue" in nc.logs("live"), 20, what="first value")
    nc.ok("patch", "configmap", "live", "--type=merge", "-p", '{"data":{"color":"green"}}')
    wait_for(lambda: "green" in nc.logs("live"), 90, step=1, what="the updated value in the running container")
    nc.ok("delete", "pod", "live", "--wait=true")


def test_missing_volume_source_is_failed_mount_until_it_appears(data):
    nc = data
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["cat", "/cfg/k"],
                        "volumeMounts": [{"name": "c", "mountPath": "/cfg"}]}],
        "volumes": [{"name": "c", "secret": {"secretName": "late"}}]}}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))

    def failed_mount():
        return [e for e in nc.events("waits") if e["reason"] == "FailedMount"]
    ev = wait_for(failed_mount, 30, what="FailedMount")
    assert ev[0]["type"] == "Warning"
    assert ev[0]["message"] == 'MountVolume.SetUp failed for volume "c" : secret "late" not found'
    p = nc.pod("waits")
    assert p["status"]["phase"] == "Pending"
    assert p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    assert nc.ok("get", "pod", "waits").splitlines()[1].split()[2] == "ContainerCreating"
    nc.ok("create", "secret", "generic", "late", "--from-literal=k=arrived")
    p = nc.wait_phase("waits", ("Succeeded", "Failed"), timeout=60)
    assert p["status"]["phase"] == "Succeeded" and nc.logs("waits") == "arrived"


def test_missing_key_is_create_container_config_error(data):
    nc = data
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nokey"}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never", "command": ["true"],
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "nope"}}}]}]}}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))

    def waiting():
        st = (nc.pod("nokey")["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting") or {}
        return st if st.get("reason") == "CreateContainerConfigError" else None
    st = wait_for(waiting, 30, what="CreateContainerConfigError")
    assert st["message"] == "couldn't find key nope in Secret default/app-secret"
    assert ("Failed", "Error: couldn't find key nope in Secret default/app-secret") in \
        [(e["reason"], e["message"]) for e in nc.events("nokey")]
    assert nc.ok("get", "pod", "nokey").splitlines()[1].split()[2] == "CreateContainerConfigError"
    nc.ok("delete", "pod", "nokey")
