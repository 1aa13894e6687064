"""The node agent registers its Node as kubelet 1.32 does: capacity/allocatable from the host, well-known
labels, the given labels and taints, the four conditions, nodeInfo, status.runtimeHandlers from its handler
table, and a Lease in kube-node-lease renewed as a heartbeat. Real kubectl, real API server."""
from __future__ import annotations

import json
import shutil
import os
import re
import signal
import subprocess
import sys
import time

from conftest import ROOT, Cluster, wait_for
from kubeclass.node.vm import guestimage


def get_json(cluster, *args):
    return json.loads(cluster.ok(*args, "-o", "json"))


def start_agent(cluster, tmp_path, *extra):
    log = open(tmp_path / "node.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "node", "--kubeconfig", cluster.kubeconfig,
                             "--data-dir", str(tmp_path / "node"), *extra], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})


def test_node_agent_registers_with_handlers_labels_taints_and_lease(cluster, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("""version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
  runtime_type = "io.containerd.runsc.v1"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu]
  runtime_type = "io.containerd.kata-qemu.v2"
""")
    agent = start_agent(cluster, tmp_path, "--name", "reg-worker", "--labels", "runtime.kubernetes.io/gvisor=true,tier=a",
                        "--register-with-taints", "dedicated=high-security:NoSchedule", "--runtime-config", str(cfg))
    try:
        node = wait_for(lambda: get_json(cluster, "get", "node", "reg-worker"), timeout=20)
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == "reg-worker" and labels["kubernetes.io/os"] == "linux"
        assert labels["runtime.kubernetes.io/gvisor"] == "true" and labels["tier"] == "a"
        assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
        assert node["spec"]["taints"] == [{"key": "dedicated", "value": "high-security", "effect": "NoSchedule"}]
        st = node["status"]
        assert st["capacity"]["pods"] == "110" and st["capacity"]["cpu"] == str(os.cpu_count())
        assert st["allocatable"]["memory"].endswith("Ki")
        conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
        assert conds == {"MemoryPressure": ("False", "KubeletHasSufficientMemory"), "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
                         "PIDPressure": ("False", "KubeletHasSufficientPID"), "Ready": ("True", "KubeletReady")}
        # kata-qemu runs on the VM runtime where QEMU and a guest kernel are (scripts/install.sh puts them
        # there), and is not published where they are not; the default handler is published as ""
        vm = shutil.which("qemu-system-x86_64") is not None and not guestimage.missing()
        assert [h["name"] for h in st["runtimeHandlers"]] == (["kata-qemu"] if vm else []) + ["runc", "runsc", ""]
        assert st["runtimeHandlers"][0]["features"] == {"recursiveReadOnlyMounts": False, "userNamespaces": False}
        assert st["nodeInfo"]["containerRuntimeVersion"].startswith("kubeclass://")
        assert st["nodeInfo"]["kernelVersion"] == os.uname().release
        assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
        out = cluster.ok("get", "nodes", "reg-worker").splitlines()
        assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        assert out[1].split()[:2] == ["reg-worker", "Ready"] and out[1].split()[-1] == "v1.32.0-kubeclass"
        lease = wait_for(lambda: get_json(cluster, "get", "lease", "-n", "kube-node-lease", "reg-worker"), timeout=20)
        assert lease["spec"]["holderIdentity"] == "reg-worker" and lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
        # a restarted agent takes its Node over (same uid), without duplicating taints
        uid = node["metadata"]["uid"]
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        agent = start_agent(cluster, tmp_path, "--name", "reg-worker", "--register-with-taints",
                            "dedicated=high-security:NoSchedule", "--runtime-config", str(cfg))
        time.sleep(1.5)
        node = wait_for(lambda: get_json(cluster, "get", "node", "reg-worker"), timeout=20)
        assert node["metadata"]["uid"] == uid and len(node["spec"]["taints"]) == 1
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        cluster.kubectl("delete", "node", "reg-worker", "--ignore-not-found")


def test_node_handlers_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kubeclass.cli", "node", "handlers"], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["HANDLER", "RUNTIME", "TYPE"]
    # without /etc/containerd or /etc/crio: runc, crun, runsc detected on PATH, runc the default, and the
    # Kata handlers on the VM runtime (QEMU and the guest kernel are installed by scripts/install.sh)
    if not os.path.exists("/etc/containerd/config.toml") and not os.path.exists("/etc/crio/crio.conf"):
        assert [l.split()[0] for l in lines[1:]] == ["crun", "kata-fc", "kata-qemu", "runc", "runsc"]
        assert next(l for l in lines if l.startswith("runc ")).split()[-1] == "*"
        if shutil.which("qemu-system-x86_64") and not guestimage.missing():
            fc = next(l for l in lines if l.startswith("kata-fc "))
            assert "true" in fc.split() and re.search(r"vm \(qemu \d+\.\d+ microvm, (TCG|KVM)\)$", fc), fc
            assert re.search(r"vm \(qemu \d+\.\d+ q35, (TCG|KVM)\)$", next(l for l in lines if l.startswith("kata-qemu ")))
    bad = tmp_path / "config.toml"
    bad.write_text("version = 2\n[plugins\n")
    out = subprocess.run([sys.executable, "-m", "kubeclass.cli", "node", "handlers", "--runtime-config", str(bad)],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 1 and out.stderr.startswith(f"error: {bad}:") and "Traceback" not in out.stderr


def test_up_starts_a_local_node(tmp_path):
    c = Cluster(str(tmp_path / "data"), extra=["--no-scheduler", "--node-name", "local-node"]).start()
    try:
        node = wait_for(lambda: get_json(c, "get", "node", "local-node"), timeout=20)
        assert node["status"]["runtimeHandlers"][-1]["name"] == ""
        assert any(h["name"] == "runc" for h in node["status"]["runtimeHandlers"])
    finally:
        c.stop()
