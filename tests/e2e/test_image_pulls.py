"""The registry pull path for real: a local docker-registry (Debian's distribution server) on 127.0.0.1,
the busybox test image pushed to it with skopeo, a Pod pulling it (Pulling / Pulled events) and running;
a missing image gives ErrImagePull then ImagePullBackOff, as upstream."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest
import yaml

from conftest import free_port
from nodecluster import build_busybox_archive, need, node_cluster, wait_for  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    need("docker-registry", "skopeo")
    d = tmp_path_factory.mktemp("registry")
    port = free_port()
    cfg = d / "config.yml"
    cfg.write_text(yaml.safe_dump({"version": 0.1, "log": {"level": "error"},
                                   "storage": {"filesystem": {"rootdirectory": str(d / "data")}},
                                   "http": {"addr": f"127.0.0.1:{port}"}}))
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=open(d / "registry.log", "wb"), stderr=subprocess.STDOUT)
    wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).status == 200, 20, what="the registry")
    archive = str(d / "busybox.tar")
    build_busybox_archive(archive)
    out = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{archive}",
                          f"docker://127.0.0.1:{port}/e2e/busybox:pulled"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def pod(name: str, image: str, policy: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"restartPolicy": "Never", "containers": [
                               {"name": "app", "image": image, "imagePullPolicy": policy,
                                "command": ["sh", "-c", "echo pulled and ran"]}]}})


def test_pull_from_a_local_registry(node_cluster, registry):
    image = f"{registry}/e2e/busybox:pulled"
    node_cluster.ok("apply", "-f", "-", input=pod("from-registry", image, "Always"))
    p = node_cluster.wait_phase("from-registry", ("Succeeded", "Failed"), timeout=90)
    assert p["status"]["phase"] == "Succeeded", p["status"]
    assert node_cluster.logs("from-registry") == "pulled and ran\n"
    ev = {e["reason"]: e["message"] for e in node_cluster.events("from-registry")}
    assert ev["Pulling"] == f'Pulling image "{image}"'
    assert ev["Pulled"].startswith(f'Successfully pulled image "{image}" in ') and "Image size: " in ev["Pulled"]
    assert p["status"]["containerStatuses"][0]["imageID"].startswith("sha256:")


def test_missing_image_err_image_pull_then_backoff(node_cluster, registry):
    image = f"{registry}/e2e/nothing:here"
    node_cluster.ok("apply", "-f", "-", input=pod("no-image", image, "IfNotPresent"))

    def waiting(reason):
        def check():
            st = (node_cluster.pod("no-image")["status"].get("containerStatuses") or [{}])[0]
            return st if (st.get("state", {}).get("waiting") or {}).get("reason") == reason else None
        return check
    st = wait_for(waiting("ErrImagePull"), 30, step=0.05, what="ErrImagePull")
    assert image in st["state"]["waiting"]["message"]
    wait_for(waiting("ImagePullBackOff"), 30, what="ImagePullBackOff")
    reasons = [(e["reason"], e["message"]) for e in node_cluster.events("no-image")]
    assert ("Failed", "Error: ErrImagePull") in reasons
    assert ("BackOff", f'Back-off pulling image "{image}"') in reasons
    out = node_cluster.ok("get", "pod", "no-image").splitlines()[1].split()
    assert out[2] in ("ErrImagePull", "ImagePullBackOff")
    assert node_cluster.phase("no-image") == "Pending"
    node_cluster.ok("delete", "pod", "no-image", "--grace-period=1")


def test_never_pull_policy_without_the_image(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=pod("never-pull", "kubeclass.test/absent:1", "Never"))

    def check():
        st = (node_cluster.pod("never-pull")["status"].get("containerStatuses") or [{}])[0]
        return st if (st.get("state", {}).get("waiting") or {}).get("reason") == "ErrImageNeverPull" else None
    st = wait_for(check, 30)
    assert st["state"]["waiting"]["message"] == 'Container image "kubeclass.test/absent:1" is not present with pull policy of Never'
    node_cluster.ok("delete", "pod", "never-pull", "--grace-period=1")
