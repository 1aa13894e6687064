"""The registry pull path for real: a local docker-registry (Debian's distribution server) on 127.0.0.1,
the busybox test image pushed to it with skopeo, a Pod pulling it (Pulling / Pulled events) and running;
a missing image gives ErrImagePull then ImagePullBackOff, as upstream."""
from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
import warnings

import pytest
import yaml

from conftest import free_port
from nodecluster import build_busybox_archive, need, node_cluster, wait_for  # noqa: F401 - fixture


USER, PASSWORD = "puller", "pa55word"


def start_registry(d, with_auth: bool):
    """A docker-registry on 127.0.0.1 holding the busybox test image as e2e/busybox:pulled; with_auth
    puts it behind htpasswd (bcrypt) basic auth."""
    need("docker-registry", "skopeo")
    port = free_port()
    conf = {"version": 0.1, "log": {"level": "error"}, "storage": {"filesystem": {"rootdirectory": str(d / "data")}},
            "http": {"addr": f"127.0.0.1:{port}"}}
    if with_auth:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # bcrypt through libxcrypt, what the registry's htpasswd reads
        (d / "htpasswd").write_text(f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
        conf["auth"] = {"htpasswd": {"realm": "kubeclass-e2e", "path": str(d / "htpasswd")}}
    cfg = d / "config.yml"
    cfg.write_text(yaml.safe_dump(conf))
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=open(d / "registry.log", "wb"), stderr=subprocess.STDOUT)

    def up():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).status == 200
        except urllib.error.HTTPError as e:
            return e.code == 401 and with_auth
    wait_for(up, 20, what="the registry")
    archive = str(d / "busybox.tar")
    build_busybox_archive(archive)
    creds = ["--dest-creds", f"{USER}:{PASSWORD}"] if with_auth else []
    out = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", *creds, f"oci-archive:{archive}",
                          f"docker://127.0.0.1:{port}/e2e/busybox:pulled"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return proc, f"127.0.0.1:{port}"


def serving(tmp_path_factory, name: str, with_auth: bool):
    proc, addr = start_registry(tmp_path_factory.mktemp(name), with_auth)
    yield addr
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    yield from serving(tmp_path_factory, "registry", False)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    yield from serving(tmp_path_factory, "auth-registry", True)


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


def test_pull_with_an_image_pull_secret(node_cluster, auth_registry):
    """The registry wants credentials: without a pull secret the pull is denied; with a
    kubernetes.io/dockerconfigjson Secret made by `kubectl create secret docker-registry` it succeeds."""
    image = f"{auth_registry}/e2e/busybox:pulled"
    node_cluster.ok("apply", "-f", "-", input=pod("no-creds", image, "Always"))

    def denied():
        st = (node_cluster.pod("no-creds")["status"].get("containerStatuses") or [{}])[0]
        w = st.get("state", {}).get("waiting") or {}
        return w if w.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None
    w = wait_for(denied, 30, step=0.05, what="a denied pull")
    assert "pull access denied" in w["message"] or "requires credentials" in w["message"], w
    node_cluster.ok("delete", "pod", "no-creds", "--grace-period=1")

    node_cluster.ok("create", "secret", "docker-registry", "regcred", f"--docker-server={auth_registry}",
                    f"--docker-username={USER}", f"--docker-password={PASSWORD}")
    doc = yaml.safe_load(pod("with-creds", image, "Always"))
    doc["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    node_cluster.ok("apply", "-f", "-", input=yaml.safe_dump(doc))
    p = node_cluster.wait_phase("with-creds", ("Succeeded", "Failed"), timeout=90)
    assert p["status"]["phase"] == "Succeeded", (p["status"], node_cluster.events("with-creds"))
    assert node_cluster.logs("with-creds") == "pulled and ran\n"
    assert any(e["reason"] == "Pulled" and e["message"].startswith(f'Successfully pulled image "{image}"')
               for e in node_cluster.events("with-creds"))
