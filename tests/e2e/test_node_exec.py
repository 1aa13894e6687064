"""kubectl exec and kubectl cp into Pods on the real node (issue 14), through the API server's WebSocket relay
to the agent: runc Pods run the command in the Pod's namespaces (the host's kernel), gVisor Pods under their
own gVisor kernel. kubectl 1.32 speaks v5.channel.k8s.io; the official Python client's stream() v4 (text
frames for str data)."""
from __future__ import annotations

import json
import os
import platform
import time

import pytest
import yaml

from nodecluster import IMAGE, node_cluster, wait_for  # noqa: F401 - fixture

CLASSES = ("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n---\n"
           "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: standard\nhandler: runc\n")
PODS = {"standard": "exec-runc", "gvisor": "exec-gvisor"}


@pytest.fixture(scope="module")
def nc(node_cluster):
    node_cluster.ok("apply", "-f", "-", input=CLASSES)
    for rc, name in PODS.items():
        node_cluster.ok("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"runtimeClassName": rc, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]}]}}))
    for name in PODS.values():
        node_cluster.wait_phase(name, ("Running",))
    yield node_cluster
    node_cluster.kubectl("delete", "pod", *PODS.values(), "--grace-period=1")


def test_exec_shows_which_kernel_runs_the_pod(nc):
    assert nc.ok("exec", "exec-runc", "--", "uname", "-r").strip() == platform.release()
    dmesg = nc.ok("exec", "exec-gvisor", "--", "dmesg")
    assert "Starting gVisor..." in dmesg
    assert nc.ok("exec", "exec-gvisor", "--", "uname", "-r").strip() != platform.release()


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_exit_code_stdout_stderr_and_stdin(nc, rc):
    name = PODS[rc]
    out = nc.kubectl("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == "out\n"
    assert out.stderr == "err\ncommand terminated with exit code 3\n"
    out = nc.kubectl("exec", "-i", name, "--", "sh", "-c", "cat > /tmp/x; wc -c < /tmp/x; cat /tmp/x",
                     input="hello from stdin\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["17", "hello", "from", "stdin"]


def test_exec_runs_as_the_container_does(nc):
    """The container's environment and working directory, not the agent's."""
    env = nc.ok("exec", "exec-runc", "--", "env")
    assert "PATH=/bin" in env.split("\n") and "HOSTNAME=exec-runc" in env
    assert nc.ok("exec", "exec-runc", "--", "pwd").strip() == "/"


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_tty_gets_a_prompt_and_the_terminal_size(nc, rc):
    """`kubectl exec -it` under a real pseudo-terminal (script(1)): kubectl sends the terminal's size, the shell
    inside sees it and a tty."""
    name = PODS[rc]
    code, text = nc.terminal(97, 31, f"exec -it {name} -- sh",
                             [(3, b"stty size; test -t 0 && echo stdin-is-a-tty; echo sum=$((40+2))\n"), (1.5, b"exit 4\n")], 30)
    assert "/ # " in text                              # the shell's prompt
    assert "31 97\n" in text and "stdin-is-a-tty\n" in text and "sum=42\n" in text
    assert "command terminated with exit code 4" in text and code == 4


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_kubectl_cp_both_directions(nc, rc, tmp_path):
    name = PODS[rc]
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("some text\n")
    blob = os.urandom(2_500_000)
    (src / "blob.bin").write_bytes(blob)
    nc.ok("cp", str(src), f"{name}:/tmp/copied")
    assert nc.ok("exec", name, "--", "cat", "/tmp/copied/a.txt") == "some text\n"
    back = tmp_path / "back"
    nc.ok("cp", f"{name}:/tmp/copied", str(back))
    assert (back / "blob.bin").read_bytes() == blob
    assert (back / "a.txt").read_text() == "some text\n"


def test_official_client_stream_with_resize(nc):
    from kubernetes import client, config
    from kubernetes.stream import stream
    cfg = client.Configuration()
    config.load_kube_config(config_file=nc.kubeconfig, client_configuration=cfg)
    v1 = client.CoreV1Api(client.ApiClient(cfg))
    out = stream(v1.connect_get_namespaced_pod_exec, "exec-gvisor", "default", command=["sh", "-c", "echo hi; exit 6"],
                 stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    out.run_forever(timeout=20)
    assert out.read_stdout() == "hi\n" and out.returncode == 6
    ws = stream(v1.connect_get_namespaced_pod_exec, "exec-runc", "default", command=["sh"], stderr=True, stdin=True,
                stdout=True, tty=True, _preload_content=False)
    seen = ""
    for w, h in ((123, 45), (77, 11)):
        ws.write_channel(4, json.dumps({"Width": w, "Height": h}))
        time.sleep(0.3)
        ws.write_stdin("stty size\n")

        def got():
            nonlocal seen
            ws.update(timeout=0.5)
            seen += ws.read_stdout() or ""
            return f"{h} {w}" in seen
        wait_for(got, 15, what=f"stty size {h} {w}")
    ws.write_stdin("exit 0\n")
    ws.run_forever(timeout=10)
    assert ws.returncode == 0


def test_refusals_before_the_upgrade(nc):
    out = nc.kubectl("exec", "no-such-pod", "--", "true")
    assert out.returncode == 1 and out.stderr.strip() == 'Error from server (NotFound): pods "no-such-pod" not found'
    out = nc.kubectl("exec", "exec-runc", "-c", "nope", "--", "true")
    assert out.returncode == 1 and "container nope is not valid for pod exec-runc" in out.stderr, out.stderr
    # a plain GET is not an upgrade
    st, _, body = nc.request("GET", "/api/v1/namespaces/default/pods/exec-runc/exec?command=true&stdout=true")
    assert st == 400 and body["message"] == "Upgrade request required"


def test_exec_needs_create_as_well_as_get(nc):
    """The WebSocket upgrade is a GET: `get pods/exec` alone does not run a command (upstream's
    AuthorizePodWebsocketUpgradeCreatePermission); with `create` as well it does."""
    nc.ok("create", "role", "exec-get", "--verb=get", "--resource=pods,pods/exec")
    nc.ok("create", "rolebinding", "exec-get", "--role=exec-get", "--user=eve")
    out = nc.kubectl("--as=eve", "exec", "exec-runc", "--", "true")
    assert out.returncode == 1
    assert 'User "eve" cannot create resource "pods/exec" in API group "" in the namespace "default"' in out.stderr, out.stderr
    nc.ok("create", "role", "exec-create", "--verb=create", "--resource=pods/exec")
    nc.ok("create", "rolebinding", "exec-create", "--role=exec-create", "--user=eve")
    assert wait_for(lambda: nc.kubectl("--as=eve", "exec", "exec-runc", "--", "echo", "ok").stdout == "ok\n", 10)
    nc.kubectl("delete", "role,rolebinding", "exec-get", "exec-create")


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_kubectl_attach_to_the_containers_own_stdio(nc, rc):
    """kubectl attach -i: the container's stdin (held by conmon, `stdin: true`), its stdout and stderr from now on;
    with stdinOnce the container's stdin closes when the attach's does, so the container ends and so does kubectl."""
    name = f"attach-{rc}"
    nc.ok("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"runtimeClassName": rc, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "stdin": True, "stdinOnce": True,
                                 "command": ["sh", "-c", "while read line; do echo got-$line; echo err-$line >&2; done; echo stdin-closed"]}]}}))
    nc.wait_phase(name, ("Running",))
    code, out, err = nc.attach_input(name, "one\ntwo\n", before=2, after=1, timeout=30)
    assert code == 0, err
    assert out == "got-one\ngot-two\nstdin-closed\n"
    assert "err-one\nerr-two\n" in err
    assert nc.wait_phase(name, ("Succeeded",))["status"]["phase"] == "Succeeded"
    assert sorted(nc.logs(name).splitlines()) == ["err-one", "err-two", "got-one", "got-two", "stdin-closed"]
    nc.ok("delete", "pod", name)


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_kubectl_attach_to_a_terminal(nc, rc):
    """A `tty: true` container gets its terminal from conmon; `kubectl attach -it` under a real pseudo-terminal
    types into it and its size follows kubectl's."""
    name = f"attach-tty-{rc}"
    nc.ok("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"runtimeClassName": rc, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "stdin": True, "tty": True,
                                 "command": ["sh"]}]}}))
    nc.wait_phase(name, ("Running",))
    _, text = nc.terminal(91, 27, f"attach -it {name}",
                          [(3, b"stty size; test -t 0 && echo stdin-is-a-tty; echo sum=$((40+2))\n"), (2, None)], 30)
    assert "stdin-is-a-tty\n" in text and "sum=42\n" in text, text
    # kubectl attach resizes to one more row and column, then to the terminal's size (so a re-attached screen is
    # redrawn); runc's containers read the final size; under CI load a gVisor container was once seen still
    # reading the first one (the sandbox's view of its console lagging): known, noted in the README
    assert "27 91\n" in text if rc == "standard" else ("27 91\n" in text or "28 92\n" in text), text
    assert "sum=42" in nc.logs(name)                     # a terminal's output is the log's stdout
    nc.ok("delete", "pod", name)


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_a_command_ends_when_its_client_goes(nc, rc):
    """The client's WebSocket closes mid-command: the runtime's exec is sent SIGTERM, which it passes on, so the
    command does not stay behind in the container."""
    import ssl
    import websocket
    name = PODS[rc]
    url = nc.url.replace("https://", "wss://") + f"/api/v1/namespaces/default/pods/{name}/exec?command=sleep&command=301&stdout=true"
    ws = websocket.create_connection(url, header=[f"Authorization: Bearer {nc.token()}"], subprotocols=["v5.channel.k8s.io"],
                                     sslopt={"ca_certs": nc.ca(), "cert_reqs": ssl.CERT_REQUIRED, "check_hostname": False})
    assert wait_for(lambda: "sleep 301" in nc.ok("exec", name, "--", "ps"), 15)
    ws.close()
    assert wait_for(lambda: "sleep 301" not in nc.ok("exec", name, "--", "ps"), 15, what="the command gone")


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_kubectl_debug_runs_in_the_pods_sandbox_with_its_target(nc, rc):
    """An ephemeral container starts in the Pod's sandbox (under the Pod's gVisor kernel for a gVisor Pod) and,
    with --target, in its target's PID namespace: `ps` shows the target's `sleep 3600` as PID 1. It runs once;
    the Pod stays Running and Ready."""
    name = PODS[rc]
    nc.ok("debug", name, f"--image={IMAGE}", "--image-pull-policy=IfNotPresent", "--target=app", "-c", "look",
          "--", "sh", "-c", "ps; dmesg 2>&1 | head -1")

    def ended():
        p = nc.pod(name)
        sts = p["status"].get("ephemeralContainerStatuses") or []
        return p if sts and "terminated" in sts[0]["state"] else None
    pod = wait_for(ended, 60, what="the debug container to run and end")
    st = pod["status"]["ephemeralContainerStatuses"][0]
    assert st["name"] == "look" and st["restartCount"] == 0 and st["ready"] is False and "started" not in st
    assert st["state"]["terminated"]["reason"] == "Completed" and st["state"]["terminated"]["exitCode"] == 0
    assert pod["status"]["phase"] == "Running" and [c["ready"] for c in pod["status"]["containerStatuses"]] == [True]
    lines = nc.ok("logs", name, "-c", "look").splitlines()
    assert lines[1].split()[:3] == ["1", "root", "sleep"], lines          # the target's process, PID 1
    assert ("Starting gVisor..." in lines[-1]) == (rc == "gvisor")
    events = [(e["reason"], e["message"]) for e in nc.events(name) if "look" in (e.get("involvedObject", {}).get("fieldPath") or "")]
    assert ("Created", "Created container: look") in events


@pytest.mark.parametrize("rc", ["standard", "gvisor"])
def test_kubectl_debug_interactive(nc, rc):
    """`kubectl debug -it --target` under a real pseudo-terminal: kubectl waits for the container to run, attaches
    to its terminal, the shell sees the target's processes and the terminal's size."""
    name = PODS[rc]
    code, text = nc.terminal(83, 23, f"debug -it {name} --image={IMAGE} --image-pull-policy=IfNotPresent --target=app -c shell -- sh",
                             [(6, b"ps; stty size; echo sum=$((40+2))\n"), (2, b"exit 0\n")])
    assert code == 0, text
    assert "sleep 3600" in text and "sum=42\n" in text, text
    # as for kubectl attach (above): kubectl sends one more row and column first; a gVisor container may read that
    assert "23 83\n" in text if rc == "standard" else ("23 83\n" in text or "24 84\n" in text), text
    assert f"may be reattached using 'kubectl attach {name} -c shell -i -t'" in text
