"""Running containers through an OCI runtime's CLI (runc, crun, runsc: the same verbs), and the Pod
sandbox that holds the namespaces a Pod's containers share.

Each container is started by a detached monitor (a two-line shell, our counterpart of containerd's shim):
it runs `<runtime> run` with the container's stdout and stderr appended to its log file, and when the
container ends writes the exit code and the time to files beside it. The monitor outlives the agent, so
an agent restart finds every container where it was: running (its pid file and a live process) or
finished (its exit file) — never started twice.

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

from .handlers import Handler

PAUSE_BINARY_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


class RuntimeError_(Exception):
    """A runtime call that failed; the message is what the runtime said."""


def _alive(pid: int) -> bool:
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

    def argv(self) -> list[str]:
        out = [self.handler.binary, "--root", self.root]
        if self.flavor == "runsc":
            flags = {"network": "none", **self.handler.flags}
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

    def launch(self, cid: str, bundle: str, workdir: str, log_path: str) -> None:
        """Start `<runtime> run` under a detached monitor. Files in workdir: pid (the container's init,
        written by the runtime), exit (its exit code), finished (RFC 3339 time it ended), runtime.log."""
        run = " ".join(shlex.quote(a) for a in self.argv() + ["--log", os.path.join(workdir, "runtime.log"),
                                                               "run", "--bundle", bundle, "--pid-file",
                                                               os.path.join(workdir, "pid"), cid])
        w = shlex.quote(workdir)
        script = (f"( {run} </dev/null >>{shlex.quote(log_path)} 2>&1; code=$?; "
                  f"date -u +%Y-%m-%dT%H:%M:%SZ > {w}/finished.tmp; echo $code > {w}/exit.tmp; "
                  f"mv {w}/finished.tmp {w}/finished; mv {w}/exit.tmp {w}/exit ) &")
        subprocess.run(["/bin/sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True, check=True)


# ------------------------------------------------------------------------------------ container state

def container_state(workdir: str) -> dict:
    """What the monitor's files say: {"state": "created"|"running"|"exited", "pid", "exit", "finished"}."""
    code = _read(os.path.join(workdir, "exit"))
    if code is not None:
        try:
            exit_code = int(code)
        except ValueError:
            exit_code = 255
        return {"state": "exited", "exit": exit_code, "finished": _read(os.path.join(workdir, "finished")) or ""}
    pid = _read(os.path.join(workdir, "pid"))
    if pid and pid.isdigit() and _alive(int(pid)):
        return {"state": "running", "pid": int(pid)}
    return {"state": "created"}


async def wait_started(workdir: str, timeout: float = 30) -> dict:
    """Until the runtime has written the pid file (the container runs) or the monitor recorded an exit."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        st = container_state(workdir)
        if st["state"] != "created":
            return st
        if time.monotonic() > deadline:
            return st
        await asyncio.sleep(delay)
        delay = min(delay * 1.2, 0.01)


def runtime_error(workdir: str, log_path: str) -> str:
    """The runtime's complaint when a container never started (runtime.log is JSON lines from runc)."""
    msg = ""
    for line in (_read(os.path.join(workdir, "runtime.log")) or "").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") in ("error", "fatal"):
            msg = rec.get("msg", "")
    if not msg:
        tail = (_read(log_path) or "").splitlines()
        msg = tail[-1] if tail else "the runtime failed to start the container"
    return msg


# ------------------------------------------------------------------------------------ sandboxes

class Sandbox:
    """The shared namespaces of one Pod (runc-like runtimes): a process parked in them."""

    def __init__(self, pod_dir: str):
        self.dir = pod_dir
        self.pid_file = os.path.join(pod_dir, "sandbox.pid")

    @property
    def pid(self) -> int | None:
        p = _read(self.pid_file)
        if p and p.isdigit() and _alive(int(p)):
            return int(p)
        return None

    def ns_paths(self) -> dict[str, str]:
        pid = self.pid
        if pid is None:
            return {}
        return {t: f"/proc/{pid}/ns/{n}" for t, n in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))}

    async def ensure(self, hostname: str, host_network: bool = False) -> None:
        if self.pid is not None:
            return
        os.makedirs(self.dir, exist_ok=True)
        flags = "--ipc --uts" + ("" if host_network else " --net")
        inner = 'hostname "$1"; ip link set lo up 2>/dev/null; exec sleep infinity'
        script = (f"unshare {flags} /bin/sh -c {shlex.quote(inner)} sandbox {shlex.quote(hostname)} "
                  f"</dev/null >/dev/null 2>&1 & echo $! > {shlex.quote(self.pid_file)}")
        subprocess.run(["/bin/sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True, check=True)
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
