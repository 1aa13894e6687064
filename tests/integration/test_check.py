"""`kubeclass check` (issue 17): seed 001's manifests against a cluster with seed 001's node layout (simulated nodes:
runc only, runc + gVisor, two runc + Kata nodes tainted for high-security work), answered before anything is
applied; then the same manifests are applied and every verdict is compared with what really happened: the API
server's refusals word for word, the scheduler's FailedScheduling message, the nodes Pods land on. Also the offline
form (--nodes and --runtime-config) and bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

import seeds
from conftest import ROOT, Cluster, wait_for


def node(name: str, labels: dict, taints: list, handlers: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"taints": taints},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "runtimeHandlers": [{"name": h, "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}}
                                           for h in handlers + [""]]}}


HIGH_SECURITY = [{"key": "dedicated", "value": "high-security", "effect": "NoSchedule"}]
# seed 001's layout: "Node 1 - runc only", "Node 2 - runc + gVisor", "Node 3 - runc + Kata" (two of those); worker-1
# also carries the kata-fc label without the handler (a mislabelled node: only the handler check catches it)
NODES = [node("worker-1", {"runtime.kubernetes.io/kata-fc": "true"}, [], ["runc"]),
         node("worker-2", {"runtime.kubernetes.io/gvisor": "true"}, [], ["runc", "runsc"]),
         node("worker-3", {"runtime.kubernetes.io/kata": "true"}, HIGH_SECURITY, ["runc", "kata-qemu"]),
         node("worker-4", {"runtime.kubernetes.io/kata": "true"}, HIGH_SECURITY, ["runc", "kata-qemu"])]
RESTRICTED = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}}
SAFE = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def manifests() -> str:
    docs = [seeds.block("001", "name: standard", "name: kata-fc"),          # the production RuntimeClass set
            seeds.block("001", "name: untrusted-workloads", "pod-security"),
            seeds.block("001", "name: require-runtimeclass"),               # the Kyverno policy
            seeds.block("001", "name: overhead-example"),                   # the gVisor overhead arithmetic
            seeds.block("001", "name: secure-api")]                         # the Deployment on Kata
    mine = [
        # restricted-clean but without gvisor: the Kyverno policy refuses it
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "untrusted-plain", "namespace": "untrusted-workloads"},
         "spec": {**RESTRICTED, "containers": [{"name": "app", "image": "busybox", "securityContext": SAFE}]}},
        # the same with gvisor: admitted, on the gVisor node
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "untrusted-gvisor", "namespace": "untrusted-workloads"},
         "spec": {**RESTRICTED, "runtimeClassName": "gvisor", "containers": [{"name": "app", "image": "busybox", "securityContext": SAFE}]}},
        # kata-fc: the one node that matches its selector has no kata-fc handler
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fc-app"},
         "spec": {"runtimeClassName": "kata-fc", "containers": [{"name": "app", "image": "busybox"}]}},
        # a class that does not exist
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-class"},
         "spec": {"runtimeClassName": "kata-missing", "containers": [{"name": "app", "image": "busybox"}]}},
    ]
    return "\n---\n".join(docs) + "\n---\n" + "\n---\n".join(yaml.safe_dump(d) for d in mine)


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeclass.cli", "check", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    d = tmp_path_factory.mktemp("check")
    c = Cluster(str(d / "data"), extra=["--no-node"]).start()
    c.ok("apply", "-f", "-", input=yaml.safe_dump_all(NODES))
    wait_for(lambda: c.ok("get", "nodes").count(" Ready ") == 4, timeout=30)
    (d / "manifests.yaml").write_text(manifests())
    c.manifests = str(d / "manifests.yaml")
    yield c
    c.stop()


def test_check_predicts_what_applying_does(seeded):
    c = seeded
    cp = run_check("-f", c.manifests, "--cluster", "-o", "json", "--kubeconfig", c.kubeconfig)
    assert cp.returncode == 1, cp.stderr          # some would fail: non-zero, so it gates CI
    got = {(r["kind"], r["name"]): r for r in json.loads(cp.stdout)}
    table = run_check("-f", c.manifests, "--kubeconfig", c.kubeconfig).stdout
    assert "requests: cpu 100m + 50m overhead = 150m; memory 128Mi + 64Mi overhead = 192Mi" in table
    assert "worker-2: fits, would run it with handler runsc  <- chosen" in table

    # what the check says, before anything is applied
    oe = got[("Pod", "overhead-example")]
    assert oe["admitted"] and oe["schedulable"] and oe["placement"] == ["worker-2"] and oe["handler"] == "runsc"
    assert oe["overhead"] == {"cpu": "50m", "memory": "64Mi"}
    api = got[("Deployment", "secure-api")]
    assert api["admitted"] and api["replicas"] == 3 and set(api["placement"]) <= {"worker-3", "worker-4"}
    assert api["handler"] == "kata-qemu" and "cpu 100m + 250m overhead = 350m" in api["requests"]
    assert api["nodes"]["worker-1"]["reason"].startswith("NodeAffinity")
    plain = got[("Pod", "untrusted-plain")]
    assert not plain["admitted"] and 'admission webhook "validate.kyverno.svc-fail" denied the request' in plain["message"]
    assert "must use gvisor RuntimeClass. rule require-gvisor-for-untrusted failed" in plain["message"]   # the policy's message
    assert got[("Pod", "untrusted-gvisor")]["placement"] == ["worker-2"]
    fc = got[("Pod", "fc-app")]
    assert fc["admitted"] and not fc["schedulable"]
    assert fc["nodes"]["worker-1"]["reason"] == 'RuntimeHandler: node(s) didn\'t have the runtime handler "kata-fc"'
    missing = got[("Pod", "no-class")]
    assert not missing["admitted"] and 'RuntimeClass "kata-missing" not found' in missing["message"]
    # nothing was written to the cluster
    assert c.ok("get", "runtimeclasses", "-o", "name") == "" and "secure-api" not in c.ok("get", "deploy")

    # now for real
    ap = c.kubectl("apply", "-f", c.manifests)
    for key, r in got.items():
        kind, name = key
        if not r.get("admitted"):
            assert r["message"] in ap.stderr, (key, r["message"], ap.stderr)   # word for word
    ns = lambda r: r["namespace"]   # noqa: E731
    for key in (("Pod", "overhead-example"), ("Pod", "untrusted-gvisor")):
        r = got[key]
        node_name = wait_for(lambda: c.ok("get", "pod", r["name"], "-n", ns(r), "-o", "jsonpath={.spec.nodeName}"), timeout=30)
        assert [node_name] == r["placement"]

    def deployed():
        pods = json.loads(c.ok("get", "pods", "-l", "app=secure-api", "-o", "json"))["items"]
        placed = [p["spec"].get("nodeName") for p in pods]
        return placed if len(placed) == 3 and all(placed) else None
    placed = wait_for(deployed, timeout=60)
    fitting = {n for n, v in api["nodes"].items() if v["fits"]}
    assert set(placed) <= fitting   # ties between worker-3 and worker-4 are broken at random, as upstream's

    def failed_scheduling():
        evs = json.loads(c.ok("get", "events", "--field-selector", "involvedObject.name=fc-app,reason=FailedScheduling", "-o", "json"))
        return evs["items"]
    ev = wait_for(failed_scheduling, timeout=30)
    assert ev[0]["message"] == fc["message"]            # the scheduler's own words


def test_check_offline_with_node_files_and_runtime_config(tmp_path):
    nodes = [dict(n, status={k: v for k, v in n["status"].items() if k != "runtimeHandlers"}) for n in NODES[1:3]]
    (tmp_path / "nodes.yaml").write_text(yaml.safe_dump_all(nodes))
    cfg = seeds.config_blocks("001")[0]     # the seed's containerd config.toml: runc, runsc, kata-qemu, kata-fc
    (tmp_path / "config.toml").write_text(cfg)
    pod = seeds.block("001", "name: overhead-example")
    rcs = seeds.block("001", "name: standard", "name: kata-fc")
    (tmp_path / "m.yaml").write_text(rcs + "\n---\n" + pod)
    cp = run_check("-f", str(tmp_path / "m.yaml"), "--nodes", str(tmp_path / "nodes.yaml"),
                   "--runtime-config", str(tmp_path / "config.toml"), "-o", "json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    [r] = json.loads(cp.stdout)
    assert r["placement"] == ["worker-2"] and r["nodes"]["worker-3"]["fits"] is False


def test_check_bad_input(tmp_path):
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    cp = run_check("-f", str(tmp_path / "bad.yaml"), "--nodes", str(tmp_path / "bad.yaml"))
    assert cp.returncode == 2 and cp.stderr.startswith("error: ") and "Traceback" not in cp.stderr
    (tmp_path / "rc.yaml").write_text("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: a}\nhandler: runc\n")
    (tmp_path / "nodes.yaml").write_text(yaml.safe_dump(NODES[0]))
    cp = run_check("-f", str(tmp_path / "rc.yaml"), "--nodes", str(tmp_path / "nodes.yaml"))
    assert cp.returncode == 2 and "no Pod or workload" in cp.stderr
    cp = run_check("-f", str(tmp_path / "rc.yaml"), "--nodes", str(tmp_path / "rc.yaml"))
    assert cp.returncode == 2 and "no Node in" in cp.stderr
    cp = run_check("-f", str(tmp_path / "missing.yaml"), "--nodes", str(tmp_path / "nodes.yaml"))
    assert cp.returncode == 2 and "missing.yaml" in cp.stderr
