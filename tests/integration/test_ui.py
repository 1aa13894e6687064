"""The cluster view (issue 17) in a real headless browser: Debian's chromium driven through its chromedriver by
selenium. A cluster with seed 001's node layout (simulated nodes) and RuntimeClasses; the page's token login form;
nodes x handlers with the reason a handler is unavailable; declared and measured overhead; a Pending Pod with the
scheduler's verdict on each node; a Pod created meanwhile appears without a reload (watches). A screenshot is kept
(KUBECLASS_ARTIFACTS, default /tmp/kubeclass-artifacts/ui.png)."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

import seeds
from conftest import Cluster, wait_for
from test_check import NODES
from test_rbac import user_kubeconfig

ARTIFACTS = os.environ.get("KUBECLASS_ARTIFACTS", "/tmp/kubeclass-artifacts")


@pytest.fixture(scope="module")
def ui_cluster(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("ui") / "data"), extra=["--no-node"]).start()
    nodes = json.loads(json.dumps(NODES))
    nodes[0]["metadata"]["annotations"]["node.kubeclass.io/unavailable-runtime-handlers"] = json.dumps(
        {"kata-fc": "binary '/usr/bin/qemu-system-x86_64' not found on PATH"})
    c.ok("apply", "-f", "-", input=yaml.safe_dump_all(nodes))
    c.ok("apply", "-f", "-", input=seeds.block("001", "name: standard", "name: kata-fc"))
    c.ok("annotate", "runtimeclass", "gvisor",
         'runtimeclass.kubeclass.io/measured-overhead={"worker-2": {"cpu": "1m", "memory": "12Mi", "pods": 3}}')
    c.ok("apply", "-f", "-", input="apiVersion: v1\nkind: Pod\nmetadata:\n  name: fc-app\nspec:\n  runtimeClassName: kata-fc\n"
                                   "  containers: [{name: app, image: busybox}]\n---\n" + seeds.block("001", "name: overhead-example"))
    wait_for(lambda: "Unschedulable" in c.ok("get", "pod", "fc-app", "-o", "jsonpath={.status.conditions}"), timeout=30)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser():
    if not shutil.which("chromedriver"):
        pytest.fail("chromium-driver is not installed (scripts/test.sh installs it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--ignore-certificate-errors", "--window-size=1400,1100", "--disable-gpu",
              "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.implicitly_wait(0)
    yield d
    d.quit()


def _text(d, css: str) -> str:
    """The text of what css matches, read in one script run: the page redraws its tables on every watch event, so
    elements found first and read one by one may be gone by then (a stale element reference)."""
    return d.execute_script("return Array.from(document.querySelectorAll(arguments[0]))"
                            ".map(e => e.innerText.trim()).join(' | ')", css)


def login(d, c, token: str) -> None:
    from selenium.webdriver.common.by import By
    d.get(f"{c.url}/ui")
    d.execute_script("sessionStorage.clear()")
    d.get(f"{c.url}/ui")
    wait_for(lambda: d.find_element(By.ID, "token").is_displayed(), timeout=10)
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.ID, "login-button").click()


def test_the_cluster_view_in_a_browser(ui_cluster, browser):
    c, d = ui_cluster, browser
    login(d, c, "not-a-token")
    assert wait_for(lambda: _text(d, "#login-error"), timeout=10) == "This token is not valid for this cluster."
    login(d, c, c.token())
    assert wait_for(lambda: _text(d, "#who"), timeout=10) == "logged in as admin"
    # nodes x handlers, with why a handler is unavailable
    cell = lambda node, h: _text(d, f'tr[data-node="{node}"] td[data-handler="{h}"]')   # noqa: E731
    wait_for(lambda: cell("worker-4", "kata-qemu"), timeout=15)
    assert cell("worker-2", "runsc") == "available" and cell("worker-3", "kata-qemu") == "available"
    assert cell("worker-1", "runsc") == "unavailable: not configured on this node"
    assert cell("worker-1", "kata-fc") == "unavailable: binary '/usr/bin/qemu-system-x86_64' not found on PATH"
    assert "gvisor" in _text(d, 'th[data-handler="runsc"]')
    # RuntimeClasses: declared and measured overhead
    row = _text(d, 'tr[data-class="gvisor"]')
    assert "cpu 50m, memory 64Mi" in row and "worker-2: cpu 1m, memory 12Mi (3 Pods)" in row
    assert "not measured yet" in _text(d, 'tr[data-class="kata"]')
    # the Pending Pod and the scheduler's verdict on each node
    pend = wait_for(lambda: (lambda t: t if "RuntimeHandler" in t else None)(_text(d, '[data-pending="default/fc-app"]')), timeout=15)
    assert "0/4 nodes are available" in pend
    assert 'RuntimeHandler: node(s) didn\'t have the runtime handler "kata-fc"' in _text(d, '[data-pending="default/fc-app"] tr[data-verdict="worker-1"]')
    assert "TaintToleration" in _text(d, '[data-pending="default/fc-app"] tr[data-verdict="worker-3"]')
    # Pods by class and node, kept current by watches: a Pod made now appears without a reload
    wait_for(lambda: "Running" in _text(d, '[data-pod="default/overhead-example"]'), timeout=30)
    c.ok("run", "late-arrival", "--image=busybox", "--overrides",
         '{"spec":{"runtimeClassName":"standard","nodeSelector":{"kubernetes.io/hostname":"worker-1"}}}')
    wait_for(lambda: _text(d, '[data-pod="default/late-arrival"]'), timeout=20)
    wait_for(lambda: "RuntimeClass standard on worker-1" in _text(d, "#pods h3"), timeout=20)
    os.makedirs(ARTIFACTS, exist_ok=True)
    d.save_screenshot(os.path.join(ARTIFACTS, "ui.png"))
    assert os.path.getsize(os.path.join(ARTIFACTS, "ui.png")) > 10_000


def test_the_view_only_shows_what_rbac_allows(ui_cluster, tmp_path):
    c = ui_cluster
    status, headers, body = c.request("GET", "/ui", token=None)
    assert status == 200 and b"login" in body and b"worker-1" not in body   # the shell holds no cluster data
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    status, _, _ = c.request("GET", "/ui/explain?namespace=default&name=fc-app", token=None)
    assert status == 401
    kc = user_kubeconfig(c, tmp_path, "ui-nobody")
    token = yaml.safe_load(open(kc))["users"][0]["user"]["token"]
    status, _, body = c.request("GET", "/ui/explain?namespace=default&name=fc-app", token=token)
    assert status == 403 and 'cannot get resource "pods"' in body["message"]
    status, _, body = c.request("GET", "/ui/explain?namespace=default&name=fc-app")
    assert status == 200 and body["handler"] == "kata-fc" and body["message"].startswith("0/4 nodes are available")
    status, _, body = c.request("GET", "/ui/explain?namespace=default&name=nope")
    assert status == 404
    status, _, _ = c.request("GET", "/ui/nothing-here")
    assert status == 404
