"""Running containers through an OCI runtime's CLI (runc, crun, runsc: the same verbs), and the Pod
sandbox that holds the namespaces a Pod's containers share.

Each container is started and watched by conmon, the container monitor CRI-O uses (Debian package
`conmon`): through a small wrapper (RUN_WRAPPER) it runs `<runtime> run`, holds the container's stdio and
writes it to the log file in the CRI log format, and when the container ends writes its exit code to
`exits/<cid>`. conmon outlives the
agent, so an agent restart finds every container where it was: running (its pid file and a live process)
or finished (its exit file) — never started twice.

The sandbox, for runc-like runtimes, is a tiny process in fresh network, IPC and UTS namespaces (its
hostname set, loopback up) whose namespaces the containers join. For runsc it is a gVisor sandbox: a
pause container that the Pod's containers join (gVisor's own multi-container sandbox, selected with the
CRI annotations its containerd shim uses), so every container of the Pod runs under one gVisor kernel.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import time

from . import crilog
from .poddir import write_exit
from .handlers import Handler

PAUSE_BINARY_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


class RuntimeError_(Exception):
    """A runtime call that failed; the message is what the runtime said."""


def process_alive(pid: int) -> bool:
    """pid is a live process (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


class Runtime:
    """One handler's OCI runtime."""

    def __init__(self, handler: Handler, state_root: str):
        self.handler = handler
        self.flavor = handler.flavor
        self.root = handler.root or os.path.join(state_root, "runtime", handler.name)
        os.makedirs(self.root, exist_ok=True)
        self.sockets = os.path.join(state_root, "runtime", "conmon")   # conmon's attach/notify links
        os.makedirs(self.sockets, exist_ok=True)

    def argv(self, network: str | None = None) -> list[str]:
        """The runtime's global flags. network: runsc's --network for a sandbox being created ("sandbox" when
        the Pod has its own network namespace: gVisor's netstack serves its interface; "none" otherwise, never
        "sandbox" in the node's own namespace, whose interfaces runsc would take over)."""
        out = [self.handler.binary, "--root", self.root]
        if self.flavor == "runsc":
            flags = {"network": network or "none", **self.handler.flags}
            out += [f"--{k}={v}" for k, v in flags.items()]
        elif self.handler.systemd_cgroup and os.path.isdir("/run/systemd/system"):
            out.append("--systemd-cgroup")
        return out

    async def call(self, *args: str, timeout: float = 30) -> str:
        proc = await asyncio.create_subprocess_exec(*self.argv(), *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError_(f"{self.handler.binary} {args[0]}: timed out after {timeout:g}s")
        if proc.returncode != 0:
            raise RuntimeError_((err or out).decode(errors="replace").strip() or f"{args[0]} exited {proc.returncode}")
        return out.decode(errors="replace")

    async def state(self, cid: str) -> dict | None:
        try:
            return json.loads(await self.call("state", cid, timeout=10))
        except (RuntimeError_, ValueError):
            return None

    async def kill(self, cid: str, sig: str = "TERM", all_procs: bool = False) -> None:
        args = ["kill"] + (["--all"] if all_procs and self.flavor != "runsc" else []) + [cid, sig]
        try:
            await self.call(*args, timeout=10)
        except RuntimeError_:
            pass

    async def delete(self, cid: str) -> None:
        try:
            await self.call("delete", "--force", cid, timeout=30)
        except RuntimeError_:
            pass

    def monitor_runtime(self) -> str:
        """The runtime conmon is given: a wrapper that turns conmon's `create ... --pid-file F ID` into
        `<runtime> run ... ID` in the background and writes that process's pid to F. conmon then waits for
        `run`, whose exit status is the container's, and no separate `start` is needed: one runtime
        invocation per container, as a bare `runc run`. It also serves containers that join a gVisor
        sandbox, whose stdio runsc takes from the call that starts them."""
        path = os.path.join(os.path.dirname(self.sockets), f"{self.handler.name}-run.sh")
        script = RUN_WRAPPER.replace("@RUNTIME@", shlex.quote(self.handler.binary))
        if _read(path) != script.strip():
            with open(path + ".tmp", "w") as f:
                f.write(script)
            os.chmod(path + ".tmp", 0o755)
            os.rename(path + ".tmp", path)
        return path

    def attach_socket(self, cid: str) -> str:
        """conmon's attach socket of a container (api version 1: <socket dir>/<cid>/attach)."""
        return os.path.join(self.sockets, cid, "attach")

    async def launch(self, cid: str, bundle: str, workdir: str, log_path: str, network: str | None = None,
                     stdin: bool = False, stdin_once: bool = False, tty: bool = False) -> None:
        """Run the container under conmon (CRI-O's container monitor). conmon outlives the agent: it holds
        the container's stdio, writes its output to log_path in the CRI log format, and when the container
        ends writes the exit code to workdir/exits/<cid>. Returns once the runtime has written the
        container's pid file (or the attempt ended); raises RuntimeError_ with the runtime's message when
        the container could not be started (an exit file, code 128, then marks the attempt ended)."""
        conmon = shutil.which("conmon")
        if conmon is None:
            raise RuntimeError_("conmon is not installed on this node (apt-get install conmon)")
        exits = os.path.join(workdir, "exits")
        os.makedirs(exits, exist_ok=True)
        runtime_log = os.path.join(workdir, "runtime.log")
        _, *global_args = self.argv(network)
        argv = [conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid, "-r", self.monitor_runtime(),
                "-b", bundle, "-p", os.path.join(workdir, "run.pid"), "-P", os.path.join(workdir, "conmon.pid"),
                "-l", log_path, "--exit-dir", exits, "--socket-dir-path", self.sockets]
        if stdin:   # a pipe to the container's stdin, written through the attach socket (kubectl attach -i)
            argv += ["--stdin"] + ([] if stdin_once else ["--leave-stdin-open"])
        if tty:     # the container's terminal, held by conmon (its output is the log's stdout)
            argv.append("--terminal")
        for a in global_args + ["--log", runtime_log]:
            argv += ["--runtime-arg", a]
        r, w = os.pipe()
        os.set_blocking(r, False)
        try:
            # a plain Popen (vfork) is several ms cheaper than asyncio's subprocess machinery; conmon's
            # parent exits as soon as the monitor has daemonized, so this never blocks for long
            proc = subprocess.Popen(argv, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "_OCI_SYNCPIPE": str(w), "KUBECLASS_INIT_PIDFILE": os.path.join(workdir, "pid")})
        finally:
            os.close(w)
        reply = b""
        deadline = time.monotonic() + 60
        delay = 0.002
        try:
            while True:
                st = container_state(workdir)
                if st["state"] != "created":
                    break
                try:
                    reply += os.read(r, 65536)
                except BlockingIOError:
                    pass
                failed = _sync_failure(reply)
                if failed is not None:
                    await self._failed(cid, exits, failed or runtime_error(workdir, log_path))
                if proc.poll() not in (None, 0) and not reply:
                    await self._failed(cid, exits, f"conmon exited with status {proc.returncode}")
                if time.monotonic() > deadline:
                    await self._failed(cid, exits, "timed out starting the container")
                await asyncio.sleep(delay)
                delay = min(delay * 1.2, 0.01)
            # conmon writes its sync message once the runtime call returns, which (with a terminal: `run
            # --detach`) may be after the container runs: the pipe stays open until then, or conmon would die
            # of SIGPIPE writing into a closed pipe, and its terminal with it
            until = time.monotonic() + 5
            while not reply.rstrip().endswith(b"}") and proc.poll() in (None, 0) and time.monotonic() < until:
                try:
                    reply += os.read(r, 65536)
                except BlockingIOError:
                    await asyncio.sleep(0.005)
        finally:
            os.close(r)
            if proc.poll() is None:
                asyncio.get_running_loop().run_in_executor(None, proc.wait)
        if not (st["state"] == "running" or (st["state"] == "exited" and os.path.exists(os.path.join(workdir, "pid")))):
            await self._failed(cid, exits, runtime_error(workdir, log_path))

    async def _failed(self, cid: str, exits: str, msg: str) -> None:
        await self.delete(cid)
        path = os.path.join(exits, cid)
        if not os.path.exists(path):
            write_exit(path, 128)
        raise RuntimeError_(_runtime_message(msg))


RUN_WRAPPER = """#!/bin/sh
# Written by kubeclass: the runtime conmon runs (see kubeclass/node/runtimes.py). `create ... --pid-file F ID`
# becomes `run --pid-file $KUBECLASS_INIT_PIDFILE ... ID` in the background, and F gets that process's pid.
# With a terminal (conmon -t passes --console-socket) it becomes `run --detach`, which hands the console to
# conmon's socket and returns once the container runs; F then gets the container's pid (conmon reaps it).
pidfile=
detach=
for a in "$@"; do [ "$a" = "--console-socket" ] && detach=1; done
i=0
total=$#
while [ "$i" -lt "$total" ]; do
  a=$1; shift; i=$((i + 1))
  case "$a" in
    create) set -- "$@" run ${detach:+--detach} ${KUBECLASS_INIT_PIDFILE:+--pid-file "$KUBECLASS_INIT_PIDFILE"} ;;
    --pid-file) pidfile=$1; shift; i=$((i + 1)) ;;
    *) set -- "$@" "$a" ;;
  esac
done
# runsc --network=sandbox refuses to start when /proc/sys/net/core/rmem_default exists, taking that for the
# node's own network namespace; kernels 6.x show it in every namespace. It is hidden from this runsc only
# (a private mount namespace that still receives the node's mounts).
for a in "$@"; do [ "$a" = "--network=sandbox" ] && set -- unshare -m --propagation slave /bin/sh -c \
  'mount -t tmpfs -o size=4k,mode=555 kubeclass-hide /proc/sys/net && exec "$0" "$@"' @RUNTIME@ "$@" && break; done
[ "$1" = unshare ] || set -- @RUNTIME@ "$@"
if [ -z "$pidfile" ]; then exec "$@"; fi
if [ -n "$detach" ]; then
  "$@" || exit $?
  cp "$KUBECLASS_INIT_PIDFILE" "$pidfile"
  exit 0
fi
# a background command's stdin is /dev/null unless redirected: keep conmon's (a container with stdin: true)
exec 3<&0
"$@" <&3 3<&- &
exec 3<&-
echo $! > "$pidfile"
"""


def _sync_failure(data: bytes) -> str | None:
    """conmon's sync pipe carries {"data": pid} once the runtime call returned, or {"data": -1, "message":
    why}: the message of a failure, or None."""
    if not data:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("data"), int) and doc["data"] < 0:
        return str(doc.get("message") or "")
    return None


def _runtime_message(msg: str) -> str:
    """runc's JSON log lines carry the useful part in "msg"."""
    lines = [ln for ln in msg.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("msg"):
            return rec["msg"]
    return lines[-1] if lines else "the runtime failed to start the container"


# ------------------------------------------------------------------------------------ container state

def exit_file(workdir: str) -> str | None:
    d = os.path.join(workdir, "exits")
    try:
        names = [n for n in os.listdir(d) if not n.endswith((".tmp", ".oom"))]
    except OSError:
        return None
    return os.path.join(d, names[0]) if names else None


def read_exit(workdir: str) -> dict | None:
    """The ended state the exit file records ({"state": "exited", "exit", "finished"}, and "oom" when a
    "<exit file>.oom" marker says the memory cgroup killed it), or None while there is none."""
    path = exit_file(workdir)
    code = _read(path) if path else None
    if code is None:
        return None
    try:
        exit_code = int(code)
    except ValueError:
        exit_code = 255
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(path)))
    st = {"state": "exited", "exit": exit_code, "finished": finished}
    if os.path.exists(path + ".oom"):
        st["oom"] = True
    return st


def container_state(workdir: str) -> dict:
    """What conmon's files say: {"state": "created"|"running"|"exited", "pid", "exit", "finished"}."""
    st = read_exit(workdir)
    if st is not None:
        return st
    pid = _read(os.path.join(workdir, "pid"))
    if pid and pid.isdigit() and process_alive(int(pid)):
        return {"state": "running", "pid": int(pid)}
    return {"state": "created"}


def runtime_log_error(workdir: str) -> str:
    """The last error runtime.log records (JSON lines from runc or crun, level "error" or "fatal"), or ""."""
    msg = ""
    for line in (_read(os.path.join(workdir, "runtime.log")) or "").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("level") in ("error", "fatal"):
            msg = rec.get("msg", "")
    return msg


def runtime_error(workdir: str, log_path: str) -> str:
    """The runtime's complaint when a container never started, else the container's last log line."""
    return runtime_log_error(workdir) or crilog.last_line(log_path) or "the runtime failed to start the container"


# ------------------------------------------------------------------------------------ sandboxes

class Sandbox:
    """The shared namespaces of one Pod (runc-like runtimes): a process parked in them."""

    def __init__(self, pod_dir: str):
        self.dir = pod_dir
        self.pid_file = os.path.join(pod_dir, "sandbox.pid")

    @property
    def pid(self) -> int | None:
        p = _read(self.pid_file)
        if p and p.isdigit() and process_alive(int(p)):
            return int(p)
        return None

    def ns_paths(self) -> dict[str, str]:
        pid = self.pid
        if pid is None:
            return {}
        return {t: f"/proc/{pid}/ns/{n}" for t, n in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))}

    def spawn(self, hostname: str, host_network: bool = False, netns: str | None = None) -> None:
        """Start the sandbox process (its pid, hence ns_paths(), is known on return); wait_ready() before
        a container joins it. netns: the Pod's network namespace (CNI's) to park in; without it a fresh one
        (loopback only) or, with host_network, the node's."""
        if self.pid is not None:
            return
        os.makedirs(self.dir, exist_ok=True)
        flags = "--ipc --uts" + ("" if host_network or netns else " --net")
        inner = 'hostname "$1"; ip link set lo up 2>/dev/null; exec sleep infinity'
        enter = f"nsenter --net={shlex.quote(netns)} " if netns else ""
        script = (f"{enter}unshare {flags} /bin/sh -c {shlex.quote(inner)} sandbox {shlex.quote(hostname)} "
                  f"</dev/null >/dev/null 2>&1 & echo $! > {shlex.quote(self.pid_file)}")
        subprocess.run(["/bin/sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True, check=True)

    async def wait_ready(self) -> None:
        """Until the sandbox process has its own namespaces, hostname and loopback (it then execs sleep)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pid = self.pid
            if pid is not None:
                try:
                    if os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts") and \
                            os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "sleep":
                        return
                except OSError:
                    pass
            await asyncio.sleep(0.002)
        raise RuntimeError_("the pod sandbox did not start")

    def stop(self) -> None:
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def pause_rootfs(node_dir: str) -> str:
    """A root filesystem for a gVisor pod sandbox's pause process: the host's static busybox."""
    root = os.path.join(node_dir, "pause", "rootfs")
    exe = os.path.join(root, "sleep")   # busybox runs the applet its argv[0] names
    if not os.path.exists(exe):
        src = next((p for p in PAUSE_BINARY_CANDIDATES if os.path.exists(p)), None)
        if src is None:
            raise RuntimeError_("no static busybox on this node for the gVisor pod sandbox (install busybox-static)")
        os.makedirs(root, exist_ok=True)
        for d in ("proc", "dev", "sys", "tmp"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        tmp = exe + ".tmp"
        shutil.copy2(src, tmp)
        os.replace(tmp, exe)
    return root
