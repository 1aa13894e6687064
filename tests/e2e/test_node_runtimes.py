"""Pods on real OCI runtimes through the node agent: gVisor's kernel under runsc and the host's under runc
(seed 001's sandboxed-app idea), a handler this node lacks (FailedCreatePodSandBox, phase Failed), a
RuntimeClass deleted after admission, logs (-f, --tail, --previous), restarts with back-off, graceful
deletion, Pod cgroup limits with overhead (upstream's e2e_node figures), and an agent restart that
re-adopts a running container."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import yaml

from nodecluster import IMAGE, NODE, node_cluster, start_node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = """
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: gvisor
handler: runsc
scheduling:
  nodeSelector:
    runtime.kubernetes.io/gvisor: "true"
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: standard
handler: runc
"""


def pod_yaml(name: str, command: str, rc: str | None = None, restart: str = "Never", **spec) -> str:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": spec.pop("grace", 30),
                    "containers": [{"name": spec.pop("container", "app"), "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                    "command": ["sh", "-c", command], **spec.pop("ctr", {})}], **spec}}
    if rc:
        pod["spec"]["runtimeClassName"] = rc
    return yaml.safe_dump(pod)


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    return node_cluster


def test_gvisor_shows_its_kernel_and_runc_the_hosts(nc):
    # dmesg's error (a runc container may not read the host's log) goes into the pipe too: stdout and stderr are
    # separate streams whose interleaving in the log is not ordered, so the first line must come from stdout alone
    cmd = "uname -r; dmesg 2>&1 | head -1"
    nc.ok("apply", "-f", "-", input=pod_yaml("sandboxed-app", cmd, "gvisor") + "---\n" + pod_yaml("trusted-app", cmd, "standard"))
    g = nc.wait_phase("sandboxed-app", ("Succeeded", "Failed"))
    r = nc.wait_phase("trusted-app", ("Succeeded", "Failed"))
    assert g["status"]["phase"] == "Succeeded" and r["status"]["phase"] == "Succeeded"
    glog = nc.logs("sandboxed-app")
    assert "Starting gVisor..." in glog
    assert glog.splitlines()[0] != os.uname().release          # gVisor's own kernel version
    assert nc.logs("trusted-app").splitlines()[0] == os.uname().release
    assert g["spec"]["nodeName"] == NODE
    st = g["status"]["containerStatuses"][0]
    assert st["state"]["terminated"]["reason"] == "Completed" and st["state"]["terminated"]["exitCode"] == 0
    reasons = [(e["reason"], e["message"]) for e in nc.events("sandboxed-app")]
    assert ("Created", "Created container: app") in reasons
    assert any(r == "Started" and 'runtime handler "runsc"' in m for r, m in reasons)
    assert ("Pulled", f'Container image "{IMAGE}" already present on machine') in reasons
    out = nc.ok("get", "pod", "sandboxed-app")
    assert out.splitlines()[1].split()[2] == "Completed"


def test_handler_missing_on_this_node_fails_the_pod(nc):
    # Cloud Hypervisor's Kata handler: not offered by this node (its Kata handlers are kata-qemu and kata-fc)
    nc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: kata-clh\nhandler: kata-clh\n")
    nc.ok("apply", "-f", "-", input=pod_yaml("needs-kata", "echo SHOULD-NOT-RUN", "kata-clh", nodeName=NODE))
    p = nc.wait_phase("needs-kata", ("Failed",))
    assert p["status"]["reason"] == "RuntimeHandlerNotFound"
    ev = wait_for(lambda: [e for e in nc.events("needs-kata") if e["reason"] == "FailedCreatePodSandBox"], 20)
    assert ev[0]["type"] == "Warning"
    assert ev[0]["message"] == ('Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox '
                                'runtime: no runtime for "kata-clh" is configured')
    assert not [e for e in nc.events("needs-kata") if e["reason"] in ("Started", "Created")]
    r = nc.kubectl("logs", "needs-kata")
    assert r.returncode != 0 and "is waiting to start" in r.stderr
    desc = nc.ok("describe", "pod", "needs-kata")
    assert "FailedCreatePodSandBox" in desc and "RuntimeHandlerNotFound" in desc


def test_runtimeclass_deleted_after_admission(nc):
    nc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: short-lived\nhandler: runc\n")
    nc.ok("apply", "-f", "-", input=pod_yaml("orphan-class", "echo SHOULD-NOT-RUN", "short-lived", nodeSelector={"later": "yes"}))
    nc.ok("delete", "runtimeclass", "short-lived")
    nc.ok("label", "node", NODE, "later=yes")
    try:
        p = nc.wait_phase("orphan-class", ("Failed",))
        ev = [e for e in nc.events("orphan-class") if e["reason"] == "FailedCreatePodSandBox"]
        assert ev and ev[0]["message"] == 'Failed to create pod sandbox: runtimeclass.node.k8s.io "short-lived" not found'
        assert p["status"]["reason"] == "RuntimeHandlerNotFound"
    finally:
        nc.ok("label", "node", NODE, "later-")


def test_logs_restarts_previous_and_graceful_delete(nc):
    script = 'trap "echo got TERM; exit 0" TERM; echo start $(cat /tmp/n 2>/dev/null); echo x >> /tmp/n; ' \
             'if [ -f /data/once ]; then while true; do sleep 0.2; done; fi; touch /data/once; echo bye; exit 3'
    nc.ok("apply", "-f", "-", input=pod_yaml("restarter", script, "standard", restart="OnFailure", grace=10,
                                               ctr={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                                               volumes=[{"name": "data", "emptyDir": {}}]))
    def restarted():
        p = nc.pod("restarter")
        st = (p["status"].get("containerStatuses") or [{}])[0]
        return p if st.get("restartCount") == 1 and "running" in st.get("state", {}) else None
    p = wait_for(restarted, 60, what="a restart")
    st = p["status"]["containerStatuses"][0]
    assert st["lastState"]["terminated"]["exitCode"] == 3 and st["lastState"]["terminated"]["reason"] == "Error"
    assert p["status"]["phase"] == "Running"
    assert nc.logs("restarter", "--previous").splitlines() == ["start", "bye"]
    assert nc.logs("restarter") == "start\n"                 # a fresh root filesystem: /tmp/n is gone
    assert nc.logs("restarter", "--tail", "1") == "start\n"
    assert any(e["reason"] == "BackOff" for e in nc.events("restarter"))
    out = nc.ok("get", "pod", "restarter").splitlines()[1].split()
    assert out[1] == "1/1" and out[2] == "Running" and out[3].startswith("1")
    log_file = wait_for(lambda: [os.path.join(dp, f) for dp, _, fs in os.walk(nc.data_dir) for f in fs
                                 if f == "1.log" and dp.endswith("/logs/app")], 5)
    t0 = time.monotonic()
    nc.ok("delete", "pod", "restarter")                       # waits until the agent confirmed
    assert time.monotonic() - t0 < 9                           # the TERM trap ended it well within the grace
    assert any(e["reason"] == "Killing" and e["message"] == "Stopping container app" for e in nc.events("restarter"))
    assert not os.path.exists(log_file[0])                     # state removed with the Pod


def test_follow_streams_until_the_container_ends(nc):
    nc.ok("apply", "-f", "-", input=pod_yaml("ticker", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done", "gvisor"))
    wait_for(lambda: nc.phase("ticker") in ("Running", "Succeeded"), 30)
    out = subprocess.run(["kubectl", "logs", "-f", "ticker"], capture_output=True, text=True, env=nc.env(), timeout=30)
    assert out.returncode == 0 and out.stdout.splitlines() == [f"tick {i}" for i in range(1, 6)]


def test_cri_log_format_timestamps_since_and_streams(nc):
    """Logs are kept in the CRI format (as containerd writes them): kubectl logs --timestamps prints each
    line's RFC 3339 nano time, --since-time / --since filter by it, stdout and stderr both appear, a last
    line without its newline stays without one, and lines over 16 KiB come back whole."""
    script = "echo early; sleep 1.2; echo late >&2; head -c 20000 /dev/zero | tr '\\0' x; echo; printf tail-no-newline"
    nc.ok("apply", "-f", "-", input=pod_yaml("stamped", script, "standard"))
    nc.wait_phase("stamped", ("Succeeded",), timeout=60)
    out = nc.logs("stamped")
    assert out.startswith("early\nlate\n") and out.endswith("\ntail-no-newline")
    assert "x" * 20000 + "\n" in out
    stamped = nc.logs("stamped", "--timestamps").split("\n")
    t_early, rest = stamped[0].split(" ", 1)
    assert rest == "early" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", t_early)
    t_late = stamped[1].split(" ", 1)[0]
    assert stamped[1].endswith(" late") and t_late > t_early
    assert len(stamped[2].split(" ", 1)[1]) == 20000          # partial records joined, one timestamp
    assert nc.logs("stamped", f"--since-time={t_late}").startswith("late\n")
    assert nc.logs("stamped", "--since=1h").startswith("early\n")
    raw = open(glob_log(nc, "stamped"), "rb").read().split(b"\n")
    assert raw[0].endswith(b" stdout F early") and raw[1].endswith(b" stderr F late")
    assert b" stdout P " in raw[2] and raw[-2].endswith(b" stdout P tail-no-newline")


def glob_log(nc, pod_name: str) -> str:
    uid = nc.pod(pod_name)["metadata"]["uid"]
    found = [os.path.join(dp, f) for dp, _, fs in os.walk(nc.data_dir) for f in fs if uid in dp and dp.endswith("/logs/app")]
    assert found, f"no log file for {pod_name}"
    return found[0]


def test_pod_cgroup_has_container_limits_plus_overhead(nc):
    # upstream test/e2e_node/runtimeclass_test.go: limits 100m/100Mi + overhead 200m/140Mi -> quota 30000, 251658240 bytes
    nc.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: with-overhead\n"
                                    "handler: runc\noverhead:\n  podFixed:\n    cpu: 200m\n    memory: 140Mi\n")
    nc.ok("apply", "-f", "-", input=pod_yaml("overhead-pod", "sleep 30", "with-overhead",
                                               ctr={"resources": {"limits": {"cpu": "100m", "memory": "100Mi"}}}))
    p = nc.wait_phase("overhead-pod", ("Running",))
    from kubeclass.node import cgroups
    lim = cgroups.read_limits(p["metadata"]["uid"])
    assert lim == {"memory": 251658240, "cpu_quota": 30000}
    nc.ok("delete", "pod", "overhead-pod", "--grace-period=1")


def test_agent_restart_readopts_running_containers(tmp_path):
    from nodecluster import build_busybox_archive, need
    need("runc")
    d = str(tmp_path / "data")
    archive = str(tmp_path / "bb.tar")
    build_busybox_archive(archive)
    subprocess.run(["python3", "-m", "kubeclass.cli", "image", "import", archive, "--data-dir", d], check=True,
                   capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    c = start_node_cluster(d)
    try:
        c.ok("apply", "-f", "-", input=CLASSES)
        c.ok("apply", "-f", "-", input=pod_yaml("survivor", "echo up; while true; do sleep 0.2; done", "standard", restart="Always"))
        p = c.wait_phase("survivor", ("Running",))
        started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        runc_root = os.path.join(d, "node", "runtime", "runc")

        def containers():
            out = subprocess.run(["runc", "--root", runc_root, "list", "-f", "json"], capture_output=True, text=True)
            return [x for x in json.loads(out.stdout or "[]") or [] if "survivor" not in x["id"] and x["status"] == "running"]
        before = containers()
        assert len(before) == 1
        ip = wait_for(lambda: c.pod("survivor")["status"].get("podIP"), 20, what="the Pod's IP")
        c.stop()                                         # the agent (and the API server) go away...
        assert containers() == before                    # ...the container keeps running
        c.start()
        time.sleep(3)
        p = c.wait_phase("survivor", ("Running",))
        st = p["status"]["containerStatuses"][0]
        assert st["restartCount"] == 0 and st["state"]["running"]["startedAt"] == started
        assert p["status"]["podIP"] == ip                # its address kept (the CNI result in its directory)
        assert containers() == before                    # the same one, not a second
        assert c.logs("survivor") == "up\n"
        c.ok("delete", "pod", "survivor", "--grace-period=1")
        assert containers() == []
    finally:
        c.teardown(60)


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_containers_of_a_pod_share_one_sandbox(nc, rc):
    """Two containers and an init container: they share the Pod's network (localhost) and UTS namespace
    (its hostname); under gvisor all run in one gVisor sandbox (one kernel)."""
    name = f"duo-{rc}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"runtimeClassName": rc, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                    "initContainers": [{"name": "init", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                        "command": ["sh", "-c", "echo init ran; hostname"]}],
                    "containers": [
                        {"name": "server", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                         "command": ["sh", "-c", "echo hello-from-server | nc -l -p 8080; sleep 1"]},
                        {"name": "client", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                         "command": ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 8080 && break; sleep 0.3; done; hostname; uname -r"]}]}}
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(pod))
    p = nc.wait_phase(name, ("Succeeded", "Failed"), timeout=90)
    assert p["status"]["phase"] == "Succeeded", json.dumps(p["status"], indent=1)
    assert nc.logs(name, "-c", "init") == f"init ran\n{name}\n"
    out = nc.logs(name, "-c", "client").splitlines()
    assert out[0] == "hello-from-server" and out[1] == name
    assert (out[2] == os.uname().release) == (rc == "standard")
    init = p["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert init["reason"] == "Completed"
    r = nc.kubectl("logs", name)                              # kubectl picks the first container itself
    assert r.returncode == 0 and 'Defaulted container "server" out of: server, client, init (init)' in r.stderr
    code, _, body = nc.request("GET", f"/api/v1/namespaces/default/pods/{name}/log")
    assert code == 400 and body["message"] == (f"a container name must be specified for pod {name}, choose one of: "
                                               "[server client] or one of the init containers: [init]")


def test_missing_executable_is_a_start_error(nc):
    """The runtime cannot exec the command: the container ends as containerd reports it (StartError, exit
    code 128, the runtime's message) and a Failed event says why; the Pod (restartPolicy Never) fails."""
    doc = yaml.safe_load(pod_yaml("no-binary", "unused", "standard"))
    doc["spec"]["containers"][0]["command"] = ["/no/such/binary"]
    nc.ok("apply", "-f", "-", input=yaml.safe_dump(doc))
    p = nc.wait_phase("no-binary", ("Failed", "Succeeded"), timeout=60)
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert p["status"]["phase"] == "Failed"
    assert term["reason"] == "StartError" and term["exitCode"] == 128
    assert "/no/such/binary" in term["message"] and "no such file or directory" in term["message"]
    assert any(e["reason"] == "Failed" and e["message"].startswith("Error: ") and "/no/such/binary" in e["message"]
               for e in nc.events("no-binary"))
