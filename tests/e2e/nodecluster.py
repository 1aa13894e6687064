"""A cluster with a real node: `kubeclass up` with its local node agent running Pods through the real runc
and runsc (installed by scripts/install.sh), and a busybox image built from the host's static busybox and
imported with `kubeclass image import`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, Cluster, free_port, wait_for  # noqa: F401 - wait_for re-exported for the e2e tests
from kubeclass.node import images

IMAGE = "kubeclass.test/busybox:1.35"
NODE = "e2e-node"


def need(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.fail(f"missing {missing}: run scripts/install.sh (as root) first")
    if os.geteuid() != 0:
        pytest.fail("the node agent needs root to run containers")


def build_busybox_archive(path: str, ref: str = IMAGE) -> str:
    return images.write_oci_archive(path, ref, [images.busybox_layer()],
                                    {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"}})


class NodeCluster(Cluster):
    def pod(self, name: str, ns: str = "default") -> dict:
        return json.loads(self.ok("get", "pod", name, "-n", ns, "-o", "json"))

    def phase(self, name: str, ns: str = "default") -> str:
        return (self.pod(name, ns).get("status") or {}).get("phase", "")

    def events(self, name: str, ns: str = "default") -> list[dict]:
        out = json.loads(self.ok("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"))
        return out["items"]

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 60, ns: str = "default") -> dict:
        def check():
            p = self.pod(name, ns)
            return p if (p.get("status") or {}).get("phase") in phases else None
        return wait_for(check, timeout, what=f"pod {name} in {phases}")

    def logs(self, *args: str) -> str:
        return self.ok("logs", *args)

    def terminal(self, cols: int, rows: int, kubectl_args: str, steps: list[tuple[float, bytes | None]],
                 timeout: float = 60) -> tuple[int, str]:
        """kubectl under a real pseudo-terminal (script(1)) of cols x rows: each step waits its seconds, then types its
        bytes (None: closes the terminal's input). Returns kubectl's exit code and what the terminal showed."""
        script = f"stty cols {cols} rows {rows}; kubectl --cache-dir {self.data_dir}/kcache {kubectl_args}"
        p = subprocess.Popen(["script", "-qfec", script, "/dev/null"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=self.env())
        for wait, data in steps:
            time.sleep(wait)
            if data is None:
                p.stdin.close()
            else:
                p.stdin.write(data)
                p.stdin.flush()
        if p.stdin.closed:
            p.wait(timeout)
            out = p.stdout.read()
        else:
            out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace").replace("\r", "")

    def attach_input(self, name: str, text: str, before: float, after: float, timeout: float = 60) -> tuple[int, str, str]:
        """`kubectl attach -i NAME`: types text after `before` seconds, ends its input `after` seconds later, waits
        for kubectl to end. Returns its exit code, stdout and stderr."""
        p = subprocess.Popen(["kubectl", "--cache-dir", os.path.join(self.data_dir, "kcache"), "attach", "-i", name],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(), text=True)
        time.sleep(before)
        p.stdin.write(text)
        p.stdin.flush()
        time.sleep(after)
        p.stdin.close()
        p.wait(timeout)
        return p.returncode, p.stdout.read(), p.stderr.read()

    def teardown(self, timeout: float = 120) -> None:
        """Delete every Pod (so no container outlives the tests), stop the cluster, then sweep what a Pod the
        agent had no time to remove left behind: its containers, mounts and network namespace."""
        try:
            self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=true", timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.stop()
        sweep(self.data_dir)
        if "--cni-bridge" in self.extra:     # the test's own bridge (another run's could differ in address)
            subprocess.run(["ip", "link", "delete", self.extra[self.extra.index("--cni-bridge") + 1]], capture_output=True)
        if "--service-cluster-ip-range" in self.extra:   # the kubernetes and kube-dns addresses a killed agent left on lo
            import ipaddress
            net = ipaddress.ip_network(self.extra[self.extra.index("--service-cluster-ip-range") + 1], strict=False)
            for off in (1, 10):
                subprocess.run(["ip", "addr", "del", f"{net.network_address + off}/32", "dev", "lo"], capture_output=True)


def sweep(data_dir: str) -> None:
    node = os.path.join(os.path.realpath(data_dir), "node")
    subprocess.run(["pkill", "-9", "-f", f"conmon.*{node}/"], capture_output=True)
    for rt in ("runc", "crun", "runsc"):
        root = os.path.join(node, "runtime", rt)
        if not os.path.isdir(root) or shutil.which(rt) is None:
            continue
        out = subprocess.run([rt, "--root", root, "list", "-quiet" if rt == "runsc" else "-q"], capture_output=True, text=True).stdout.split()
        for cid in out:
            subprocess.run([rt, "--root", root, "delete", "--force", cid], capture_output=True)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for m in sorted((m for m in points if m.startswith(node + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    from kubeclass.node.serviceproxy import table_name
    subprocess.run(["nft", "delete", "table", "ip", table_name(NODE, node)], capture_output=True)   # an agent killed mid-run
    pods = os.path.join(node, "pods")
    from kubeclass.node import podnet
    nets = podnet.PodNetworks(podnet.Options(), node)
    for uid in os.listdir(pods) if os.path.isdir(pods) else []:
        try:   # CNI DEL first, as the agent would (the bridge plugin's masquerade chains and the address go with it)
            nets.teardown_sync(os.path.join(pods, uid))
        except Exception:  # noqa: BLE001 - best effort: the namespace goes below anyway
            pass
        if os.path.exists(f"/run/netns/kc-{uid}"):
            subprocess.run(["ip", "netns", "delete", f"kc-{uid}"], capture_output=True)


_networks = iter(range(1, 250))


def pod_network_flags() -> list[str]:
    """A Pod CIDR, bridge and kubernetes Service address of its own for each test cluster (several may run at once
    on this machine)."""
    n = (next(_networks) + os.getpid()) % 250 + 1
    return ["--pod-cidr", f"10.245.{n}.0/24", "--cni-bridge", f"kctest{n}", "--service-cluster-ip-range", f"10.100.{n}.0/24"]


def start_node_cluster(data_dir: str, *extra: str) -> NodeCluster:
    c = NodeCluster(data_dir, extra=["--node-name", NODE, "--node-port", str(free_port()),
                                     "--labels", "runtime.kubernetes.io/gvisor=true", *pod_network_flags(), *extra])
    c.start()
    wait_for(lambda: "Ready" in c.ok("get", "node", NODE), 30, what="the node to register")
    return c


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory):
    need("runc", "runsc")
    d = str(tmp_path_factory.mktemp("e2e") / "data")
    archive = os.path.join(os.path.dirname(d), "busybox.tar")
    build_busybox_archive(archive)
    out = subprocess.run([sys.executable, "-m", "kubeclass.cli", "image", "import", archive, "--data-dir", d],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0 and out.stdout.strip() == f"imported {IMAGE}", out.stderr
    c = start_node_cluster(d)
    yield c
    c.teardown()


class PortForward:
    """`kubectl port-forward POD LOCAL:REMOTE` running until stop(); get() fetches a path through it."""
    def __init__(self, nc, *args: str) -> None:
        self.local = free_port()
        self.proc = subprocess.Popen(["kubectl", "--cache-dir", os.path.join(nc.data_dir, "kcache"), "port-forward",
                                      *args[:1], f"{self.local}:{args[1]}", *args[2:]],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=nc.env())
        line = self.proc.stdout.readline()
        assert line.startswith(f"Forwarding from 127.0.0.1:{self.local} -> {args[1]}"), (line, self.stop())

    def get(self, path: str = "/") -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.local}{path}", timeout=20) as r:
            return r.read()

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err
