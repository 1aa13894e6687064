"""Several API servers, one cluster (issue 15): two `kubeclass server --storage etcd` on one real etcd, the second
sharing the first's CA, service-account key and tokens (`--pki-from`), behind a TCP load balancer (Debian's haproxy
on 127.0.0.1, as upstream puts kube-apiservers behind one URL): kubectl through the balancer works with either
server answering, a watch on one server sees a write through the other (latency printed), each server holds its
`apiserver-<id>` identity Lease, and a service-account token issued by one server authenticates at the other."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from conftest import Cluster, wait_for
from etcdcluster import EtcdCluster, start_haproxy


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("several")
    etcd = EtcdCluster(str(base / "etcd")).start()
    url = f"http://{etcd.endpoints[0]}"
    flags = ["--storage", "etcd", "--etcd-servers", url]
    a = Cluster(str(base / "a"), extra=flags + ["--no-node"]).start(timeout=60)
    b = Cluster(str(base / "b"), extra=flags + ["--no-node", "--no-scheduler", "--no-controllers", "--pki-from", a.data_dir])
    b.start(timeout=60)
    lb, lb_port = start_haproxy(str(base), [a.port, b.port])
    kc = yaml.safe_load(open(a.kubeconfig))
    kc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{lb_port}"
    lb_kubeconfig = str(base / "lb.kubeconfig")
    with open(lb_kubeconfig, "w") as f:
        yaml.safe_dump(kc, f)
    yield a, b, lb_kubeconfig
    lb.terminate()
    b.stop()
    a.stop()
    etcd.stop()


def kubectl(kubeconfig: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=input, capture_output=True, text=True, timeout=60)


def test_kubectl_through_the_load_balancer_reaches_one_cluster(servers):
    a, b, lb = servers
    for i in range(6):   # round robin: both servers answer, and each sees what the other wrote
        cp = kubectl(lb, "create", "configmap", f"lb-{i}", "--from-literal=i=" + str(i))
        assert cp.returncode == 0, cp.stderr
    seen = [sorted(i["metadata"]["name"] for i in json.loads(c.ok("get", "configmaps", "-o", "json"))["items"]) for c in (a, b)]
    assert seen[0] == seen[1] and {f"lb-{i}" for i in range(6)} <= set(seen[0])   # one cluster, whichever server
    out = kubectl(lb, "get", "configmaps", "-o", "name")
    assert all(f"configmap/lb-{i}" in out.stdout for i in range(6)), out.stdout
    # the certificate of either server verifies with the shared CA (kubectl checks it on every connection)
    assert b.ca() and open(b.ca()).read() == open(a.ca()).read()


def test_a_watch_on_one_server_sees_writes_through_the_other(servers):
    a, b, _ = servers
    watch = subprocess.Popen(["kubectl", "--kubeconfig", b.kubeconfig, "get", "configmaps", "-w", "-o", "name",
                              "--watch-only"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    lat = []
    try:
        for i in range(20):
            t0 = time.monotonic()
            a.ok("create", "configmap", f"w-{i}")
            line = watch.stdout.readline().strip()
            lat.append(time.monotonic() - t0)
            assert line == f"configmap/w-{i}", line
    finally:
        watch.terminate()
    lat.sort()
    # includes a kubectl process per create; the etcd watch path itself is a few ms
    print(f"write through server A -> seen by a watch on server B: p50 {lat[10] * 1e3:.0f} ms, max {lat[-1] * 1e3:.0f} ms "
          "(kubectl create process included)")


def test_each_server_holds_its_identity_lease_and_tokens_work_on_both(servers):
    a, b, _ = servers
    def leases():
        out = json.loads(a.ok("get", "leases", "-n", "kube-system", "-l", "apiserver.kubernetes.io/identity=kube-apiserver",
                              "-o", "json"))["items"]
        return out if len(out) == 2 else None
    ls = wait_for(leases, 30, what="two API server identity leases")
    for lease in ls:
        assert lease["metadata"]["name"].startswith("apiserver-")
        assert lease["spec"]["leaseDurationSeconds"] == 3600
        assert lease["spec"]["holderIdentity"].startswith(lease["metadata"]["name"] + "_")
    a.ok("create", "serviceaccount", "robot")
    token = a.ok("create", "token", "robot").strip()
    cp = subprocess.run(["kubectl", "--kubeconfig", b.kubeconfig, "--token", token, "auth", "whoami", "-o", "json"],
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"


def test_a_read_on_one_server_sees_a_write_just_made_through_the_other(servers):
    """Consistent reads (upstream 1.31+'s consistent reads from cache): a GET and a LIST without resourceVersion on
    server B wait until B's watch cache has caught up with etcd, so a write acknowledged by A is always there."""
    a, b, _ = servers
    for i in range(40):
        st, _, _ = a.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"rw-{i}"}, "data": {"i": str(i)}})
        assert st == 201
        st, _, got = b.request("GET", f"/api/v1/namespaces/default/configmaps/rw-{i}")
        assert st == 200 and got["data"] == {"i": str(i)}, (i, st, got)
        st, _, lst = b.request("GET", "/api/v1/namespaces/default/configmaps?labelSelector=&limit=500")
        assert f"rw-{i}" in {o["metadata"]["name"] for o in lst["items"]}
