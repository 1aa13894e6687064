"""The seeds' Pods and seed 001's Deployment (run by the controller manager) on a real node,
with busybox-based stand-ins for their images (no registry on the internet here): the YAML is the seeds'
own, only `image` is replaced by a stand-in imported under a tagged name."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

import seeds
from conftest import ROOT
from kubeclass.node import cgroups, images
from nodecluster import IMAGE, NODE, node_cluster, wait_for  # noqa: F401 - fixture

STAND_INS = {"nginx": "kubeclass.test/nginx:seed", "nginx:alpine": "kubeclass.test/nginx:alpine",
             "myregistry/secure-api:v1.2.0": "kubeclass.test/secure-api:v1.2.0", "busybox": IMAGE}


def seed_doc(seed: str, block: int, kind: str, name: str) -> dict:
    for s, i, _, d in seeds.documents(kind):
        if s.startswith(seed) and i == block and d["metadata"]["name"] == name:
            return copy.deepcopy(d)
    raise LookupError((seed, block, kind, name))


def stand_in(pod_spec: dict) -> dict:
    for c in pod_spec.get("containers", []):
        c["image"] = STAND_INS[c["image"]]
    return pod_spec


@pytest.fixture(scope="module")
def nc(node_cluster, tmp_path_factory):
    d = tmp_path_factory.mktemp("standins")
    for original, ref in STAND_INS.items():
        if ref == IMAGE:
            continue
        archive = str(d / (ref.replace("/", "_").replace(":", "_") + ".tar"))
        images.write_oci_archive(archive, ref, [images.busybox_layer()],
                                 {"config": {"Env": ["PATH=/bin"],
                                             "Cmd": ["sh", "-c", f"echo {original} stand-in ready; exec sleep 3600"]}})
        out = subprocess.run([sys.executable, "-m", "kubeclass.cli", "image", "import", archive, "--data-dir", node_cluster.data_dir],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
        assert out.returncode == 0, out.stderr
    return node_cluster


def apply(nc, doc: dict) -> None:
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))


def test_seed_001_sandboxed_app_runs_under_gvisor(nc):
    apply(nc, seed_doc("001", 1, "RuntimeClass", "gvisor"))
    pod = seed_doc("001", 3, "Pod", "sandboxed-app")
    pod["metadata"]["name"] = "seed-sandboxed-app"
    stand_in(pod["spec"])
    apply(nc, pod)
    p = nc.wait_phase("seed-sandboxed-app", ("Running",))
    assert p["spec"]["nodeName"] == NODE
    assert wait_for(lambda: nc.logs("seed-sandboxed-app") == "nginx:alpine stand-in ready\n", 10)
    assert any(e["reason"] == "Started" and 'runtime handler "runsc"' in e["message"] for e in nc.events("seed-sandboxed-app"))
    nc.ok("delete", "pod", "seed-sandboxed-app", "--grace-period=1")


def test_seed_003_hello_from_gvisor(nc):
    apply(nc, seed_doc("003", 0, "RuntimeClass", "gvisor"))
    pod = seed_doc("003", 1, "Pod", "sandboxed-pod")
    stand_in(pod["spec"])
    apply(nc, pod)
    p = nc.wait_phase("sandboxed-pod", ("Succeeded", "Running"))
    assert wait_for(lambda: nc.logs("sandboxed-pod") == "Hello from gVisor\n", 20)
    nc.ok("delete", "pod", "sandboxed-pod")
    assert "NotFound" in nc.kubectl("get", "pod", "sandboxed-pod").stderr
    assert p["spec"]["runtimeClassName"] == "gvisor"


def test_seed_001_overhead_example_and_deployment_template(nc):
    apply(nc, seed_doc("001", 7, "RuntimeClass", "gvisor"))          # overhead 50m/64Mi, nodeSelector gvisor=true
    pod = seed_doc("001", 9, "Pod", "overhead-example")
    stand_in(pod["spec"])
    apply(nc, pod)
    p = nc.wait_phase("overhead-example", ("Running",))
    assert p["spec"]["overhead"] == {"cpu": "50m", "memory": "64Mi"}
    assert p["spec"]["nodeSelector"] == {"runtime.kubernetes.io/gvisor": "true"}
    # seed 001's "Check the actual allocation": what the node allocated and applied, as kubelet reports it
    got = nc.ok("get", "pod", "overhead-example", "-o", "jsonpath={.status.containerStatuses[0].resources}")
    assert json.loads(got) == {"requests": {"cpu": "100m", "memory": "128Mi"}}
    assert json.loads(nc.ok("get", "pod", "overhead-example", "-o", "jsonpath={.status.containerStatuses[0].allocatedResources}")) == \
        {"cpu": "100m", "memory": "128Mi"}
    nc.ok("delete", "pod", "overhead-example", "--grace-period=1")


def test_seed_001_secure_api_deployment_runs_three_gvisor_pods(nc):
    """Seed 001's Deployment, its class swapped for gvisor (kata-qemu's VMs have their own e2e test) and its
    image for a stand-in: the controller manager runs 3 Pods on the real node under runsc, each with limits
    200m/256Mi + the gvisor overhead on its cgroup."""
    apply(nc, seed_doc("001", 7, "RuntimeClass", "gvisor"))          # overhead 50m/64Mi, nodeSelector gvisor=true
    dep = seed_doc("001", 4, "Deployment", "secure-api")
    stand_in(dep["spec"]["template"]["spec"])
    dep["spec"]["template"]["spec"]["runtimeClassName"] = "gvisor"
    apply(nc, dep)
    out = nc.kubectl("rollout", "status", "deploy/secure-api", "--timeout=120s", timeout=150)
    assert out.returncode == 0 and 'deployment "secure-api" successfully rolled out' in out.stdout, out.stderr
    pods = json.loads(nc.ok("get", "pods", "-l", "app=secure-api", "-o", "json"))["items"]
    assert len(pods) == 3
    for q in pods:
        name = q["metadata"]["name"]
        assert q["status"]["phase"] == "Running" and q["spec"]["nodeName"] == NODE
        assert cgroups.read_limits(q["metadata"]["uid"]) == {"memory": (256 + 64) * 2**20, "cpu_quota": 25000}
        assert any(e["reason"] == "Started" and 'runtime handler "runsc"' in e["message"] for e in nc.events(name))
        # Running is reported once the container started; its first line may still be on its way to the log
        assert wait_for(lambda: nc.logs(name), 10, what="the stand-in's first line") == \
            "myregistry/secure-api:v1.2.0 stand-in ready\n"
    nc.ok("delete", "deploy", "secure-api")
    wait_for(lambda: not json.loads(nc.ok("get", "pods", "-l", "app=secure-api", "-o", "json"))["items"], 60,
             what="the Pods gone with their Deployment")


def test_seed_000_handler_no_node_has(nc):
    """Seed 000's myclass names handler myhandler, which no node runs: the RuntimeHandler filter keeps the
    Pod Pending with the reason (it would otherwise fail on the node, as seed 000 describes)."""
    apply(nc, seed_doc("000", 0, "RuntimeClass", "myclass"))
    pod = seed_doc("000", 1, "Pod", "mypod")
    stand_in(pod["spec"])
    apply(nc, pod)
    ev = wait_for(lambda: [e for e in nc.events("mypod") if e["reason"] == "FailedScheduling"], 20)
    assert ev[0]["message"].startswith('0/1 nodes are available: 1 node(s) didn\'t have the runtime handler "myhandler".')
    assert nc.phase("mypod") == "Pending"
    nc.ok("delete", "pod", "mypod")
