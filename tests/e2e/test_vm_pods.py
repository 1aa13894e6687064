"""VM-isolated Pods (issue 11) on real QEMU: seed 001's Kata classes applied verbatim run their Pods in a VM
with Debian's guest kernel (under TCG on these machines, whose /dev/kvm is a PVM host), beside gVisor's and
the host's kernels; two containers of one kata Pod share the VM's loopback (one qemu process for the Pod);
the guest's memory cgroup OOM-kills a container over its limit; a failed container restarts inside the
running VM; a VM that dies is replaced (SandboxChanged); `kubectl logs -f` streams from the guest; `kubectl exec`,
`kubectl cp` and exec probes run inside the VM through the guest agent; a VM Pod is on the Pod network (its
own IP through the CNI plugins, reached by runc and gVisor Pods, Services and cluster DNS from inside the guest,
httpGet probes, `kubectl port-forward`); deletion
is graceful (the container's SIGTERM trap runs); a VM that cannot boot is FailedCreatePodSandBox with its
console's last lines; a Pod takes a VM from the warm pool; a killed and restarted node agent re-adopts the
running VM and never boots a second one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

import seeds
from conftest import pids_running
from nodecluster import IMAGE, NODE, PortForward, build_busybox_archive, node_cluster, start_node_cluster, wait_for  # noqa: F401
from kubeclass.node.vm import guestimage

PRODUCTION_SET = seeds.block("001", "name: standard", "name: kata-fc")
KATA_LABELS = ["runtime.kubernetes.io/kata=true", "runtime.kubernetes.io/kata-fc=true"]
VM_TIMEOUT = 120     # a TCG boot is 2-3 s alone; the suite's machines are 2 cores shared with the control plane


def guest_release() -> str:
    return os.path.basename(os.path.realpath(os.path.join(guestimage.GUEST_DIR, "current")))


def pod(name: str, command: str, rc: str | None, restart: str = "Never", containers: list[dict] | None = None, **spec) -> str:
    ctrs = containers or [{"name": "app", "command": ["sh", "-c", command]}]
    for c in ctrs:
        c.setdefault("image", IMAGE)
        c.setdefault("imagePullPolicy", "IfNotPresent")
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": spec.pop("grace", 30), "containers": ctrs, **spec}}
    if rc:
        doc["spec"]["runtimeClassName"] = rc
    return yaml.safe_dump(doc)


def qemu_pids(vmid: str) -> list[int]:
    return pids_running("qemu-system-x86_64", f"kubeclass-{vmid}")


def sandbox_meta(data_dir: str, uid: str) -> dict:
    with open(os.path.join(data_dir, "node", "pods", uid, "sandbox.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def vc(node_cluster):
    if guestimage.missing() or not os.path.exists("/usr/bin/qemu-system-x86_64"):
        pytest.fail(f"the VM runtime is not installed: {guestimage.missing() or 'no qemu'} (run scripts/install.sh)")
    node_cluster.ok("label", "node", NODE, *KATA_LABELS, "--overwrite")
    node_cluster.ok("apply", "-f", "-", input=PRODUCTION_SET)
    return node_cluster


def test_three_isolation_levels_side_by_side(vc):
    cmd = "uname -r; cat /proc/version; dmesg | head -3"
    docs = [pod("iso-kata", cmd, "kata"), pod("iso-kata-fc", cmd, "kata-fc"), pod("iso-gvisor", cmd, "gvisor"),
            pod("iso-standard", cmd, "standard")]
    vc.ok("apply", "-f", "-", input="---\n".join(docs))
    got = {n: vc.wait_phase(n, ("Succeeded", "Failed"), VM_TIMEOUT) for n in ("iso-kata", "iso-kata-fc", "iso-gvisor", "iso-standard")}
    assert {n: p["status"]["phase"] for n, p in got.items()} == dict.fromkeys(got, "Succeeded")
    for name in ("iso-kata", "iso-kata-fc"):
        lines = vc.logs(name).splitlines()
        assert lines[0] == guest_release(), lines            # the guest's own kernel, Debian's 6.1
        assert lines[0].startswith("6.1.") and lines[0] != os.uname().release
        assert "Debian" in lines[1] and lines[0] in lines[1]
        assert len(lines) >= 3 and lines[2].startswith("[")  # the guest kernel's own log
        assert got[name]["spec"]["nodeName"] == NODE
        assert got[name]["spec"]["overhead"]                  # the class's podFixed overhead was admitted
        started = [e["message"] for e in vc.events(name) if e["reason"] == "Started"]
        machine = "microvm" if name.endswith("fc") else "q35"
        handler = "kata-fc" if name.endswith("fc") else "kata-qemu"
        assert started and f'runtime handler "{handler}"' in started[0] and f"{machine} VM" in started[0], started
    assert "Starting gVisor..." in vc.logs("iso-gvisor")
    assert vc.logs("iso-standard").splitlines()[0] == os.uname().release
    vc.ok("delete", "pod", "iso-kata", "iso-kata-fc", "iso-gvisor", "iso-standard", "--grace-period=1")


def test_later_vms_of_a_shape_start_from_its_template_with_fresh_entropy(vc):
    cmd = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; exec sleep 3600"
    mem = {"resources": {"limits": {"memory": "200Mi"}}}     # a shape no other test uses: 200 + 160 -> 384 MiB
    ctr = lambda: [{"name": "app", "command": ["sh", "-c", cmd], **mem}]   # noqa: E731
    vc.ok("apply", "-f", "-", input=pod("tpl-0", "", "kata", restart="Always", containers=ctr()))
    p0 = vc.wait_phase("tpl-0", ("Running",), VM_TIMEOUT)
    assert sandbox_meta(vc.data_dir, p0["metadata"]["uid"])["vm"]["origin"] == "boot"
    tdir = os.path.join(vc.data_dir, "node", "vm-templates")
    wait_for(lambda: [f for f in os.listdir(tdir) if f.startswith("q35-384m-1c-") and f.endswith(".vmstate")]
             if os.path.isdir(tdir) else None, VM_TIMEOUT, what="the q35 384 MiB template")
    seen = []
    for name in ("tpl-1", "tpl-2"):
        vc.ok("apply", "-f", "-", input=pod(name, "", "kata", restart="Always", containers=ctr()))
        p = vc.wait_phase(name, ("Running",), VM_TIMEOUT)
        vm = sandbox_meta(vc.data_dir, p["metadata"]["uid"])["vm"]
        assert vm["origin"] == "template" and vm["memoryMiB"] == 384
        seen.append(wait_for(lambda: vc.logs(name).strip() or None, 30))
        assert vc.logs(name).count("\n") == 1
    assert seen[0] != seen[1] and len(seen[0]) == 32     # one saved state, yet no shared random state
    vc.ok("delete", "pod", "tpl-0", "tpl-1", "tpl-2", "--grace-period=1")


def test_two_containers_share_one_vm_and_its_loopback(vc):
    server = {"name": "server", "command": ["sh", "-c", "while true; do echo hello-from-server | nc -l -p 9000; done"]}
    client = {"name": "client", "command": ["sh", "-c", "for i in $(seq 1 60); do nc 127.0.0.1 9000 && break; sleep 0.5; done; "
                                                         "hostname; exec sleep 3600"]}
    vc.ok("apply", "-f", "-", input=pod("two-in-vm", "", "kata", restart="Always", containers=[server, client]))
    p = vc.wait_phase("two-in-vm", ("Running",), VM_TIMEOUT)
    out = wait_for(lambda: (lambda s: s if len(s.splitlines()) >= 2 else None)(vc.logs("two-in-vm", "-c", "client")), 60)
    assert out.splitlines() == ["hello-from-server", "two-in-vm"]     # the VM's hostname is the Pod's
    vmid = sandbox_meta(vc.data_dir, p["metadata"]["uid"])["vm"]["vmid"]
    assert len(qemu_pids(vmid)) == 1
    # issue 17: each container's usage from its guest cgroup (through the agent), the sandbox's from QEMU's
    from kubeclass.api import quantity
    pm = wait_for(lambda: json.loads(vc.ok("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/two-in-vm")), 40)
    assert sorted(c["name"] for c in pm["containers"]) == ["client", "server"]
    assert all(0 < quantity.value(c["usage"]["memory"]) < 64 << 20 for c in pm["containers"])
    assert pm["sandbox"]["runtimeHandler"] == "kata-qemu" and quantity.value(pm["sandbox"]["usage"]["memory"]) > 64 << 20
    vc.ok("delete", "pod", "two-in-vm", "--grace-period=1")
    assert qemu_pids(vmid) == []


def test_container_over_its_memory_limit_is_oomkilled(vc):
    hog = {"name": "hog", "command": ["sh", "-c", "head -c 200m /dev/zero | tail"],
           "resources": {"limits": {"memory": "32Mi"}}}
    vc.ok("apply", "-f", "-", input=pod("oom-in-vm", "", "kata", containers=[hog]))
    p = vc.wait_phase("oom-in-vm", ("Failed", "Succeeded"), VM_TIMEOUT)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137)
    vc.ok("delete", "pod", "oom-in-vm", "--grace-period=1")


def test_the_guest_agent_creates_containers_as_runc_would(vc):
    """No OCI runtime in the guest: the agent itself applies the user, groups, read-only root, dropped
    capabilities, no_new_privs, masked and read-only paths, and reports a missing executable in runc's words."""
    check = ("id; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; touch /x 2>&1; wc -c < /proc/kcore; "
             "echo x 2>&1 > /proc/sys/kernel/hostname; mount | grep ' on / '; pwd; true")
    secure = {"name": "secure", "command": ["sh", "-c", check], "workingDir": "/made/by/agent",
              "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "readOnlyRootFilesystem": True,
                                  "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    missing = {"name": "missing", "command": ["no-such-binary"]}
    vc.ok("apply", "-f", "-", input=pod("agent-made", "", "kata-fc", containers=[secure, missing],
                                        securityContext={"supplementalGroups": [4000]}))
    p = vc.wait_phase("agent-made", ("Failed", "Succeeded"), VM_TIMEOUT)
    st = {c["name"]: c["state"]["terminated"] for c in p["status"]["containerStatuses"]}
    assert st["secure"]["exitCode"] == 0
    lines = vc.logs("agent-made", "-c", "secure").splitlines()
    assert lines[0].startswith("uid=1000 gid=3000 groups=") and "4000" in lines[0].split("groups=")[1].split(",")
    assert lines[1:4] == ["CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"]
    assert "Read-only file system" in lines[4]                       # readOnlyRootFilesystem
    assert lines[5].strip() == "0"                                   # /proc/kcore masked by /dev/null
    assert "Read-only file system" in lines[6]                       # /proc/sys is read-only
    assert " on / type 9p (ro," in lines[7] and lines[8] == "/made/by/agent"
    assert (st["missing"]["reason"], st["missing"]["exitCode"]) == ("StartError", 128)
    assert st["missing"]["message"] == 'exec: "no-such-binary": executable file not found in $PATH'
    assert p["status"]["phase"] == "Failed"
    vc.ok("delete", "pod", "agent-made", "--grace-period=1")


def test_failed_container_restarts_inside_the_running_vm(vc):
    script = "echo run; if [ -f /data/once ]; then exec sleep 3600; fi; touch /data/once; exit 3"
    ctr = {"name": "app", "command": ["sh", "-c", script], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    vc.ok("apply", "-f", "-", input=pod("vm-restarter", "", "kata-fc", restart="OnFailure", containers=[ctr],
                                        volumes=[{"name": "data", "emptyDir": {}}]))
    p = vc.wait_phase("vm-restarter", ("Running",), VM_TIMEOUT)
    vmid = sandbox_meta(vc.data_dir, p["metadata"]["uid"])["vm"]["vmid"]

    def restarted():
        st = (vc.pod("vm-restarter")["status"].get("containerStatuses") or [{}])[0]
        return st if st.get("restartCount") == 1 and "running" in st.get("state", {}) else None
    st = wait_for(restarted, 60, what="a restart in the VM")
    assert st["lastState"]["terminated"]["exitCode"] == 3
    assert sandbox_meta(vc.data_dir, p["metadata"]["uid"])["vm"]["vmid"] == vmid and len(qemu_pids(vmid)) == 1
    assert vc.logs("vm-restarter", "--previous") == "run\n"
    vc.ok("delete", "pod", "vm-restarter", "--grace-period=1")


def test_a_vm_that_dies_is_replaced(vc):
    vc.ok("apply", "-f", "-", input=pod("vm-phoenix", "echo up; exec sleep 3600", "kata", restart="Always"))
    p = vc.wait_phase("vm-phoenix", ("Running",), VM_TIMEOUT)
    uid = p["metadata"]["uid"]
    vmid = sandbox_meta(vc.data_dir, uid)["vm"]["vmid"]
    os.kill(qemu_pids(vmid)[0], signal.SIGKILL)
    ev = wait_for(lambda: [e for e in vc.events("vm-phoenix") if e["reason"] == "SandboxChanged"], 30)
    assert ev[0]["message"] == "Pod sandbox changed, it will be killed and re-created."
    assert any(e["reason"] == "Failed" and e["message"].startswith("the Pod's VM stopped") for e in vc.events("vm-phoenix"))

    def running_again():
        st = (vc.pod("vm-phoenix")["status"].get("containerStatuses") or [{}])[0]
        return st if st.get("restartCount") == 1 and "running" in st.get("state", {}) else None
    st = wait_for(running_again, VM_TIMEOUT, what="the container in a new VM")
    assert st["lastState"]["terminated"]["exitCode"] == 137
    new = sandbox_meta(vc.data_dir, uid)["vm"]["vmid"]
    assert new != vmid and len(qemu_pids(new)) == 1 and qemu_pids(vmid) == []
    vc.ok("delete", "pod", "vm-phoenix", "--grace-period=1")


def test_logs_follow_and_graceful_delete(vc, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = ("trap 'echo got-TERM; echo 7 > /out/term; exit 7' TERM; i=0; "
              "while true; do i=$((i+1)); echo tick $i; sleep 0.3; done")
    ctr = {"name": "app", "command": ["sh", "-c", script], "volumeMounts": [{"name": "out", "mountPath": "/out"}]}
    vc.ok("apply", "-f", "-", input=pod("vm-ticker", "", "kata-fc", restart="Always", containers=[ctr], grace=20,
                                        volumes=[{"name": "out", "hostPath": {"path": str(out_dir)}}]))
    vc.wait_phase("vm-ticker", ("Running",), VM_TIMEOUT)
    follow = subprocess.Popen(["kubectl", "logs", "-f", "vm-ticker"], stdout=subprocess.PIPE, text=True, env=vc.env())
    try:
        lines = [follow.stdout.readline().strip() for _ in range(5)]
    finally:
        follow.kill()
    assert lines[:5] == [f"tick {i}" for i in range(1, 6)]
    t0 = time.monotonic()
    vc.ok("delete", "pod", "vm-ticker")                           # waits until the agent confirmed
    assert time.monotonic() - t0 < 19                            # the TERM trap ended it within the grace
    assert (out_dir / "term").read_text() == "7\n"               # written by the trap, inside the VM


def test_exec_cp_and_exec_probes_go_through_the_guest_agent(vc, tmp_path):
    """`kubectl exec` into a VM Pod runs the command in the container inside the VM (the guest's kernel answers),
    with stdin, stderr, the exit code, `-it` under a real pseudo-terminal with its size, `kubectl cp` both ways;
    an exec readiness probe runs the same way, so the Pod becomes Ready."""
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
    ctr = {"name": "app", "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"], "readinessProbe": probe}
    vc.ok("apply", "-f", "-", input=pod("vm-exec", "", "kata", restart="Always", containers=[ctr], grace=1))
    wait_for(lambda: "True" in vc.ok("get", "pod", "vm-exec", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"),
             VM_TIMEOUT, what="the exec readiness probe to pass inside the VM")
    assert vc.ok("exec", "vm-exec", "--", "uname", "-r").strip() == guest_release() != os.uname().release
    assert "Linux version " + guest_release() in vc.ok("exec", "vm-exec", "--", "dmesg")
    out = vc.kubectl("exec", "vm-exec", "--", "sh", "-c", "echo out; echo err >&2; ps; exit 3")
    assert out.returncode == 3 and out.stderr == "err\ncommand terminated with exit code 3\n"
    assert out.stdout.splitlines()[0] == "out" and out.stdout.splitlines()[2].split()[:3] == ["1", "root", "sleep"]
    out = vc.kubectl("exec", "-i", "vm-exec", "--", "sh", "-c", "cat > /tmp/x; wc -c < /tmp/x", input="hello vm\n")
    assert out.stdout.strip() == "9", out.stderr
    code, text = vc.terminal(97, 31, "exec -it vm-exec -- sh",
                             [(4, b"stty size; test -t 0 && echo stdin-is-a-tty; echo sum=$((40+2))\n"), (3, b"exit 4\n")])
    assert "31 97\n" in text and "stdin-is-a-tty\n" in text and "sum=42\n" in text, text
    assert "command terminated with exit code 4" in text and code == 4
    src = tmp_path / "src"
    src.mkdir()
    blob = os.urandom(300_000)
    (src / "blob.bin").write_bytes(blob)
    vc.ok("cp", str(src), "vm-exec:/tmp/copied")
    vc.ok("cp", "vm-exec:/tmp/copied", str(tmp_path / "back"))
    assert (tmp_path / "back" / "blob.bin").read_bytes() == blob
    vc.ok("delete", "pod", "vm-exec")


def test_kubectl_attach_to_a_vm_pods_container(vc):
    """kubectl attach (issue 14): the container's output from now on, through the guest agent's `attach`; it ends
    when the container does. Output only: stdin/tty containers are refused with the reason."""
    cmd = "i=0; while [ $i -lt 12 ]; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.5; done"
    vc.ok("apply", "-f", "-", input=pod("vm-attach", "sleep 2; " + cmd, "kata", grace=1))
    vc.wait_phase("vm-attach", ("Running",), VM_TIMEOUT)
    cp = subprocess.run(["kubectl", "--cache-dir", os.path.join(vc.data_dir, "kcache"), "attach", "vm-attach"],
                        capture_output=True, text=True, env=vc.env(), timeout=60)
    assert cp.returncode == 0, cp.stderr
    ticks = [ln for ln in cp.stdout.splitlines() if ln.startswith("tick-")]
    assert len(ticks) >= 5 and ticks[-1] == "tick-11", cp.stdout          # live, to the container's end
    assert [ln for ln in cp.stdout.splitlines() if ln] == ticks            # stdout on stdout
    assert "tock-11" in cp.stderr                                          # stderr on stderr
    assert vc.wait_phase("vm-attach", ("Succeeded",), 30)["status"]["phase"] == "Succeeded"
    vc.ok("delete", "pod", "vm-attach", "--grace-period=1")


def test_kubectl_attach_to_a_vm_containers_stdin_and_terminal(vc):
    """kubectl attach -i to a VM Pod's `stdin: true` container (the guest agent holds its stdin; stdinOnce closes it
    when the attach's ends), and -it to a `tty: true` one (a terminal made in the guest, sized as kubectl's)."""
    reader = {"name": "app", "stdin": True, "stdinOnce": True,
              "command": ["sh", "-c", "while read line; do echo got-$line; echo err-$line >&2; done; echo stdin-closed"]}
    shell = {"name": "app", "stdin": True, "tty": True, "command": ["sh"]}
    vc.ok("apply", "-f", "-", input=pod("vm-stdin", "", "kata", containers=[reader], grace=1) + "---\n" +
          pod("vm-tty", "", "kata", restart="Always", containers=[shell], grace=1))
    vc.wait_phase("vm-stdin", ("Running",), VM_TIMEOUT)
    code, out, err = vc.attach_input("vm-stdin", "one\ntwo\n", before=3, after=2)
    assert code == 0, err
    assert out == "got-one\ngot-two\nstdin-closed\n", (out, err)
    assert "err-one\nerr-two\n" in err
    assert vc.wait_phase("vm-stdin", ("Succeeded",), 30)["status"]["phase"] == "Succeeded"
    vc.wait_phase("vm-tty", ("Running",), VM_TIMEOUT)
    _, text = vc.terminal(91, 27, "attach -it vm-tty",
                          [(4, b"stty size; test -t 0 && echo stdin-is-a-tty; echo sum=$((40+2))\n"), (3, None)], 60)
    assert "stdin-is-a-tty\n" in text and "sum=42\n" in text, text
    assert "27 91\n" in text or "28 92\n" in text, text    # kubectl's size (it sends one larger first)
    assert "sum=42" in vc.logs("vm-tty")                    # the terminal's output is the log's stdout
    vc.ok("delete", "pod", "vm-stdin", "vm-tty", "--grace-period=1")


def test_kubectl_debug_with_a_target_in_a_vm_pod(vc):
    """kubectl debug --target (issue 14): the ephemeral container runs in the Pod's VM, in its target's PID namespace
    (the guest agent joins it), so it sees the target's processes; without --target it has one of its own."""
    vc.ok("apply", "-f", "-", input=pod("vm-debug", "exec sleep 3601", "kata", restart="Always", grace=1))
    vc.wait_phase("vm-debug", ("Running",), VM_TIMEOUT)
    kc = ["kubectl", "--cache-dir", os.path.join(vc.data_dir, "kcache")]
    for name, target in (("dbg", ["--target=app"]), ("alone", [])):
        cp = subprocess.run([*kc, "debug", "vm-debug", f"--image={IMAGE}", "--image-pull-policy=IfNotPresent", "-c", name,
                             "--profile=general", *target, "--", "sh", "-c", "ps -o pid,args"], capture_output=True, text=True,
                            env=vc.env(), timeout=60)
        assert cp.returncode == 0, cp.stderr

    def done(name):
        st = [s for s in vc.pod("vm-debug")["status"].get("ephemeralContainerStatuses") or [] if s["name"] == name]
        return st and "terminated" in st[0]["state"]
    for name in ("dbg", "alone"):
        wait_for(lambda: done(name), VM_TIMEOUT)
    seen = vc.logs("vm-debug", "-c", "dbg")
    assert "sleep 3601" in seen and "ps -o pid,args" in seen, seen        # the target's processes, and its own
    assert "   1 sleep 3601" in seen or "1 sleep 3601" in seen.replace("  ", " "), seen   # the target is PID 1 there
    alone = vc.logs("vm-debug", "-c", "alone")
    assert "sleep 3601" not in alone and "ps -o pid,args" in alone, alone
    vc.ok("delete", "pod", "vm-debug", "--grace-period=1")


def test_a_vm_pod_is_on_the_pod_network(vc):
    """As Kata's tcfilter network model: the CNI plugins give the VM Pod its IP on the node's bridge and the
    guest's virtio-net interface takes it (the VM's tap joined to the Pod's veth by tc), so a runc and a gVisor
    Pod reach its httpd by IP and through a Service; from inside the VM, cluster DNS and the service proxy answer;
    its httpGet readiness probe passes from the node; `kubectl port-forward` reaches it; a kata-fc (microvm) Pod
    reaches it too."""
    serve = "mkdir -p /www && echo vm says $(uname -r) > /www/index.html && exec httpd -f -p 8080 -h /www"
    web = {"name": "web", "command": ["sh", "-c", serve], "ports": [{"containerPort": 8080}],
           "readinessProbe": {"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 1}}
    doc = yaml.safe_load(pod("vm-net", "", "kata", restart="Always", containers=[web], grace=1))
    doc["metadata"]["labels"] = {"app": "vm-net"}
    vc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))
    for name, rc in (("net-runc", "standard"), ("net-gvisor", "gvisor"), ("net-fc", "kata-fc")):
        vc.ok("apply", "-f", "-", input=pod(name, "exec sleep 3600", rc, restart="Always", grace=1))
    vc.ok("expose", "pod", "vm-net", "--port", "80", "--target-port", "8080")
    wait_for(lambda: "True" in vc.ok("get", "pod", "vm-net", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"),
             VM_TIMEOUT, what="the VM Pod's httpGet readiness probe (from the node to its IP) to pass")
    for name in ("net-runc", "net-gvisor", "net-fc"):
        vc.wait_phase(name, ("Running",), timeout=VM_TIMEOUT)
    pods = json.loads(vc.ok("get", "pods", "-o", "json"))["items"]
    ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods}
    vm_ip = ips["vm-net"]
    assert vm_ip and len({ips[n] for n in ("vm-net", "net-runc", "net-gvisor", "net-fc")}) == 4, ips
    row = next(ln for ln in vc.ok("get", "pods", "-o", "wide").splitlines() if ln.startswith("vm-net "))
    assert row.split()[5] == vm_ip
    assert vc.ok("exec", "vm-net", "--", "ip", "-4", "-o", "addr", "show").count(f"inet {vm_ip}/") == 1   # the guest holds it
    page = f"vm says {guest_release()}\n"
    for client in ("net-runc", "net-gvisor", "net-fc"):
        assert vc.ok("exec", client, "--", "wget", "-qO-", f"http://{vm_ip}:8080/") == page, client
    assert vc.ok("exec", "net-runc", "--", "wget", "-qO-", "http://vm-net") == page
    # from inside the guest: cluster DNS, the Service (back to itself) and another Pod
    assert vc.ok("exec", "vm-net", "--", "wget", "-qO-", "http://vm-net.default.svc.cluster.local") == page
    # a short name through resolv.conf's search path (another Service: the Pod's own name is its /etc/hosts entry)
    vc.ok("expose", "pod", "vm-net", "--name", "vm-web", "--port", "80", "--target-port", "8080")
    assert wait_for(lambda: vc.kubectl("exec", "vm-net", "--", "wget", "-qO-", "http://vm-web").stdout == page or None, 30,
                    what="the VM Pod reaching a Service by its short name")
    hosts = vc.ok("exec", "vm-net", "--", "cat", "/etc/hosts")
    assert f"{vm_ip}\tvm-net\n" in hosts and "127.0.1.1" not in hosts   # kubelet's hosts file
    svc_ip = vc.ok("get", "svc", "vm-net", "-o", "jsonpath={.spec.clusterIP}")
    assert svc_ip in vc.ok("exec", "vm-net", "--", "nslookup", "vm-net.default.svc.cluster.local")
    gone = vc.kubectl("exec", "vm-net", "--", "wget", "-qO-", f"http://{ips['net-runc']}:9/")
    assert "Connection refused" in gone.stderr, gone.stderr   # reached the runc Pod, which has nothing on :9
    pf = PortForward(vc, "pod/vm-net", "8080")
    try:
        assert pf.get("/").decode() == page
    finally:
        pf.stop()
    vc.ok("delete", "svc", "vm-net", "vm-web")
    vc.ok("delete", "pod", "vm-net", "net-runc", "net-gvisor", "net-fc")


def small_cluster(tmp_path, *extra: str):
    d = str(tmp_path / "data")
    archive = str(tmp_path / "bb.tar")
    build_busybox_archive(archive)
    subprocess.run(["python3", "-m", "kubeclass.cli", "image", "import", archive, "--data-dir", d], check=True,
                   capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    c = start_node_cluster(d, "--labels", ",".join(KATA_LABELS), *extra)
    c.ok("apply", "-f", "-", input=PRODUCTION_SET)
    return c


def pooled(data_dir: str, handler: str) -> list[str]:
    d = os.path.join(data_dir, "node", "vm-pool")
    out = []
    for f in os.listdir(d) if os.path.isdir(d) else []:
        try:
            with open(os.path.join(d, f)) as fh:
                rec = json.load(fh)
                if rec["handler"] == handler and rec.get("ready") and qemu_pids(f):
                    out.append(f)
        except (OSError, ValueError):
            pass
    return out


def test_warm_pool_then_agent_killed_and_restarted_readopts_the_vm(tmp_path):
    c = small_cluster(tmp_path, "--vm-pool", "1", "--vm-pool-memory", "512Mi")
    d = c.data_dir
    try:
        warm = wait_for(lambda: pooled(d, "kata-qemu"), VM_TIMEOUT, what="a warm kata-qemu VM")
        c.ok("apply", "-f", "-", input=pod("vm-survivor", "echo up; while true; do sleep 0.2; done", "kata", restart="Always"))
        p = c.wait_phase("vm-survivor", ("Running",), VM_TIMEOUT)
        started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        vmid = sandbox_meta(d, p["metadata"]["uid"])["vm"]["vmid"]
        assert [vmid] == warm                             # the Pod took the pooled VM (320 MiB fits in 512)...
        assert sandbox_meta(d, p["metadata"]["uid"])["vm"]["origin"] == "pool"
        refill = wait_for(lambda: pooled(d, "kata-qemu"), VM_TIMEOUT, what="the pool to refill")
        assert refill != warm                             # ...and the pool booted another
        pids = qemu_pids(vmid)
        assert len(pids) == 1
        c.stop(signal.SIGKILL)                            # kill -9: the agent (and the API server) go away...
        assert qemu_pids(vmid) == pids                    # ...the VM keeps running
        c.start()
        time.sleep(3)
        p = c.wait_phase("vm-survivor", ("Running",))
        st = p["status"]["containerStatuses"][0]
        assert st["restartCount"] == 0 and st["state"]["running"]["startedAt"] == started
        assert qemu_pids(vmid) == pids                    # the same VM, and no second one for the Pod
        assert qemu_pids(refill[0]) == []                 # the previous agent's idle pool VM was powered off
        assert c.logs("vm-survivor") == "up\n"
        c.ok("delete", "pod", "vm-survivor", "--grace-period=1")
        assert qemu_pids(vmid) == []
    finally:
        c.teardown(60)
    pool_dir = os.path.join(d, "node", "vm-pool")
    wait_for(lambda: not [v for v in (os.listdir(pool_dir) if os.path.isdir(pool_dir) else []) if qemu_pids(v)], 20,
             what="the pool (idle and booting VMs) powered off at exit")


def test_a_vm_that_cannot_boot_is_failedcreatepodsandbox_with_its_console(tmp_path):
    bad = tmp_path / "garbage.cpio"
    bad.write_bytes(b"not an initramfs" * 64)
    c = small_cluster(tmp_path, "--vm-kernel", os.path.join(guestimage.GUEST_DIR, "current", "vmlinux"), "--vm-initrd", str(bad))
    try:
        c.ok("apply", "-f", "-", input=pod("vm-noboot", "echo SHOULD-NOT-RUN", "kata-fc"))
        ev = wait_for(lambda: [e for e in c.events("vm-noboot") if e["reason"] == "FailedCreatePodSandBox"], VM_TIMEOUT)
        msg = ev[0]["message"]
        assert msg.startswith("Failed to create pod sandbox: failed to boot the Pod's VM: ") and ev[0]["type"] == "Warning"
        assert "Kernel panic" in msg, msg                 # the guest console's last lines
        assert c.phase("vm-noboot") == "Pending"
        assert not [e for e in c.events("vm-noboot") if e["reason"] == "Started"]
    finally:
        c.teardown(60)
