"""A VM per Pod, as Kata Containers does it: the Pod sandbox is a QEMU VM with its own guest kernel; its
containers are created inside it by the guest agent itself (as Kata's agent does: no OCI runtime binary in the
guest), each in its own mount and PID namespace and guest cgroup with the container's limits, all sharing the
VM's network, IPC and UTS namespaces.

The Pod's directory on the host (overlay root filesystems, volumes, /etc files, logs) reaches the guest over
9p: it is bound at the VM's share/pod (as a shared-propagation peer, so the root filesystems mounted there
later appear in the guest too); the container's config.json is rewritten to the guest's paths and handed to
the agent as a line-based spec (guestspec.py), written beside it as spec.vm. Logs
and exit codes are written by the guest agent straight into the files conmon writes for runc containers,
so `kubectl logs` and the container states work unchanged.

The Pod's network, as Kata's default `tcfilter` model: the CNI plugins wire the Pod's network namespace as
for any Pod (podnet.py); the VM's virtio-net interface sits on a tap device QEMU made in the node's namespace,
which moves into the Pod's when the Pod takes the VM, where tc redirects every frame between it and the Pod's
veth; the guest agent gives the guest's interface the veth's MAC and the Pod's address and default route. So
the guest kernel is the Pod's network stack (Services, cluster DNS, probes and port-forward reach it at its IP).

VM size from the Pod: memory = the sum of the app containers' memory limits (else requests, else
DEFAULT_CONTAINER_MIB each; at least the largest init container's) plus the Pod's overhead, rounded up to
64 MiB; vCPUs = the CPU limits (plus overhead) rounded up, at least 1, at most the host's cores. The VM
starts from a template of its shape when there is one (template.py). QEMU runs in the Pod's cgroup from
before the guest starts.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import math
import secrets
import os
import signal
import subprocess
import time

from ...api import quantity
from .. import cgroups, cgroupstats, mounts, podnet
from ..cgroupstats import Usage
from ..poddir import glob_workdirs, read_json, write_exit
from ..runtimes import RuntimeError_, exit_file, read_exit
from ..handlers import vm_description
from ..sandbox import PodSandbox
from . import guestspec, qemu
from .guestexec import GuestAttachSession, GuestExecSession
from .guestimage import GuestError
from .machine import Vm, VmError

log = logging.getLogger("kubeclass.node.vm")
GUEST_PROC = "/proc"   # the guest agent's /proc, where a container's PID namespace is named

DEFAULT_CONTAINER_MIB = 128   # a container without a memory limit or request
MIN_MEMORY_MIB = 128          # the guest kernel, the initramfs and the agent need about 50 MiB
MEMORY_STEP_MIB = 64          # VM memory is rounded up to this, so that alike Pods share a VM template
VMM_MIB = {"tcg": 320, "kvm": 160}   # QEMU's own memory (measured: ~260 MiB RSS idle under TCG with a 64 MiB code cache)
GUEST_POD = qemu.GUEST_SHARE + "/pod"


def _mib(q) -> int:
    return math.ceil(quantity.value(str(q)) / (1 << 20)) if q is not None else 0


def host_memory_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(next(ln for ln in f if ln.startswith("MemTotal:")).split()[1]) // 1024
    except (OSError, StopIteration, ValueError):
        return 1 << 20


def vm_size(pod: dict, host_cpus: int | None = None, host_mib: int | None = None) -> tuple[int, int]:
    """(memory MiB, vCPUs) for a Pod's VM, at most the host's memory and cores (a limit of 1Ti must not
    make a VM whose kernel alone would take gigabytes of host memory for its page tables)."""
    spec = pod.get("spec") or {}

    def mem(c: dict) -> int:
        r = c.get("resources") or {}
        v = (r.get("limits") or {}).get("memory") or (r.get("requests") or {}).get("memory")
        return _mib(v) if v is not None else DEFAULT_CONTAINER_MIB

    def cpu(c: dict) -> float:
        v = ((c.get("resources") or {}).get("limits") or {}).get("cpu")
        return float(quantity.value(str(v))) if v is not None else 0.0

    apps = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    overhead = spec.get("overhead") or {}
    memory = max(sum(mem(c) for c in apps), max((mem(c) for c in inits), default=0)) + _mib(overhead.get("memory"))
    memory = max(MIN_MEMORY_MIB, -(-memory // MEMORY_STEP_MIB) * MEMORY_STEP_MIB)
    memory = min(memory, (host_mib or host_memory_mib()) // MEMORY_STEP_MIB * MEMORY_STEP_MIB)
    cpus = sum(cpu(c) for c in apps) + (float(quantity.value(str(overhead["cpu"]))) if overhead.get("cpu") else 0.0)
    vcpus = max(1, math.ceil(cpus - 1e-9)) if cpus else 1
    return memory, min(vcpus, host_cpus or os.cpu_count() or 1)


class VmSandbox(PodSandbox):
    def __init__(self, ctx, handler, runtime=None):
        super().__init__(ctx, handler, None)
        self.vm: Vm | None = None

    def describe(self) -> str:
        return vm_description(self.handler, "VM")

    # ------------------------------------------------------------------ sandbox
    async def run(self) -> None:
        memory, vcpus = vm_size(self.ctx.pod)
        uid = self.ctx.uid
        procs = cgroups.procs_files(uid)
        pool = getattr(self.ctx.mgr, "vm_pool", None)
        vm = pool.take(self.handler.name, memory, vcpus) if pool is not None else None
        # the cgroup must hold the whole VM (a pooled one may be bigger than the Pod asked) and QEMU itself
        cgroups.raise_memory(uid, ((vm.memory_mib if vm is not None else memory) + VMM_MIB[qemu.accelerator()]) << 20)
        if vm is not None:
            vm.origin = "pool"
            for path in procs:
                try:
                    with open(path, "w") as f:
                        f.write(str(vm.pid))
                except (OSError, TypeError):
                    pass
        else:
            try:
                guest = await self.ctx.mgr.guest()
                vm = await Vm.boot(self.handler.binary, self.handler.machine, guest, memory, vcpus, self.handler.name, procs,
                                   templates=getattr(self.ctx.mgr, "vm_templates", None))
            except (VmError, GuestError) as e:
                raise RuntimeError_(f"failed to boot the Pod's VM: {e}") from None
        self.vm = vm
        t0 = time.monotonic()
        try:
            share_pod(self.ctx.dir, vm.share)
            t1 = time.monotonic()
            await vm.conn.call("setup", self.ctx.hostname(), str(time.time_ns()), secrets.token_hex(32))
            t2 = time.monotonic()
            net = getattr(self.ctx, "net", None)
            if net is not None:
                mac, cidr, gateway, mtu = await asyncio.to_thread(podnet.hand_to_vm, net.netns, vm.tap)
                await vm.conn.call("net", mac, cidr, gateway, str(mtu))
            log.debug("VM %s (%s): share %.0f ms, setup %.0f ms, network %.0f ms", vm.id, vm.origin, (t1 - t0) * 1e3,
                      (t2 - t1) * 1e3, (time.monotonic() - t2) * 1e3)
        except podnet.VmNetError as e:
            await vm.destroy()
            unshare_pod(self.ctx.dir)
            raise RuntimeError_(f"failed to give the Pod's VM its network: {e}") from None
        except (VmError, OSError) as e:
            await vm.destroy()
            unshare_pod(self.ctx.dir)
            raise RuntimeError_(f"failed to set up the Pod's VM: {e}") from None

    def meta(self) -> dict:
        return {"vm": self.vm.meta()} if self.vm else {}

    def adopt(self, meta: dict) -> None:
        if meta.get("vm"):
            self.vm = Vm.from_meta(meta["vm"])

    def lost(self) -> str:
        """The VM died: its running containers are marked ended (137) and the reason given."""
        if self.vm is None or self.vm.alive():
            return ""
        for wd in glob_workdirs(self.ctx.dir):
            if os.path.exists(os.path.join(wd, "pid")) and exit_file(wd) is None:
                cid = read_json(os.path.join(wd, "meta.json")).get("cid") or "container"
                write_exit(os.path.join(wd, "exits", cid), 137)
        console = qemu.console_tail(self.vm.rundir, 5)
        return "the Pod's VM stopped" + (f"; its console's last lines:\n{console}" if console else "")

    async def usage(self) -> tuple[Usage | None, dict[str, Usage]]:
        """The Pod's cgroup holds QEMU (the guest's memory as far as it was touched, and its emulated or virtual
        CPUs); each container's own figures come from its cgroup in the guest, through the agent."""
        pod = cgroupstats.cgroup(cgroups.pod_path(self.ctx.uid))
        running = self.running_containers()
        if self.vm is None or not running:
            return pod, {}
        try:
            f = await self.vm.conn.call("stats", *(c.cid for c in running), timeout=5)
        except (VmError, OSError) as e:
            log.debug("VM %s: no container stats: %s", self.vm.id, e)
            return pod, {}
        out = {}
        for i, c in enumerate(running):
            mem, ws, usec = (f[3 + 3 * i: 6 + 3 * i] + ["-"] * 3)[:3]
            if "-" not in (mem, ws, usec):
                out[c.name] = Usage(int(usec) * 1000, int(mem), int(ws), int(ws))
        return pod, out

    async def stop(self) -> None:
        if self.vm is not None:
            await self.vm.destroy()
        unshare_pod(self.ctx.dir)

    def reap(self) -> None:
        if self.vm is not None:
            self.vm.kill_now()
        unshare_pod(self.ctx.dir)

    # ------------------------------------------------------------------ containers
    def guest_path(self, path: str) -> str:
        rel = os.path.relpath(path, self.ctx.dir)
        if rel == "." or rel.startswith(".."):
            raise RuntimeError_(f"{path} is outside the Pod's directory")
        return f"{GUEST_POD}/{rel}"

    def guest_config(self, cfg: dict) -> dict:
        """The container's config.json as the guest sees it: its paths under the 9p share, the VM's network,
        IPC and UTS namespaces shared (only mount and PID namespaces of its own), no hostname (the VM's), its
        cgroup directly below the guest's root (the VM is the Pod's: a Pod level in the guest would only cost
        a cgroup creation per container, ~15 ms under TCG)."""
        g = copy.deepcopy(cfg)
        g["root"]["path"] = self.guest_path(g["root"]["path"])
        for m in g.get("mounts") or []:
            if m.get("type") == "bind":
                src = m["source"]
                if not os.path.realpath(src).startswith(os.path.realpath(self.ctx.dir) + os.sep):
                    src = self.bind_host_path(src)
                m["x-kubeclass-dir"] = os.path.isdir(src)
                m["source"] = self.guest_path(src)
        lx = g.setdefault("linux", {})
        # a host namespace path means nothing in the guest; a debug container's target PID namespace is the guest's
        # (container_options made it)
        lx["namespaces"] = [{"type": n["type"], **({"path": n["path"]} if n.get("type") == "pid" and
                                                   str(n.get("path", "")).startswith(GUEST_PROC) else {})}
                            for n in lx.get("namespaces") or [] if n.get("type") in ("pid", "mount")]
        g.pop("hostname", None)
        if lx.get("cgroupsPath"):
            lx["cgroupsPath"] = "/" + lx["cgroupsPath"].rstrip("/").rsplit("/", 1)[-1]
        return g

    def bind_host_path(self, src: str) -> str:
        """A hostPath volume: bound into the Pod's directory, so that it reaches the guest over the share."""
        dest = os.path.join(self.ctx.dir, "hostpaths", hashlib.sha256(src.encode()).hexdigest()[:16])
        if not mounts.is_mounted(dest):
            if os.path.isdir(src):
                os.makedirs(dest, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                open(dest, "a").close()
            mounts.bind(src, dest)
        return dest

    async def start_container(self, cid: str, workdir: str, log_path: str, cfg: dict, stdin: bool = False,
                              stdin_once: bool = False) -> None:
        if self.vm is None:
            raise RuntimeError_("the Pod has no VM")
        exits = os.path.join(workdir, "exits")
        os.makedirs(exits, exist_ok=True)
        try:
            spec = guestspec.render(self.guest_config(cfg), stdin=stdin)
        except OSError as e:
            self._failed(cid, exits, f"hostPath: {e}")
        except guestspec.SpecError as e:
            self._failed(cid, exits, str(e))
        self._write_config(workdir, cfg)
        with open(os.path.join(workdir, "spec.vm"), "w") as f:
            f.write(spec)
        open(log_path, "a").close()
        g = self.guest_path
        t0 = time.monotonic()
        try:
            # the spec travels in the request (hex: the protocol is tab-separated lines)
            pid, *_ = await self.vm.conn.call("run", cid, g(log_path), g(os.path.join(exits, cid)),
                                              g(os.path.join(workdir, "runtime.log")), spec.encode().hex(), timeout=70)
        except VmError as e:
            self._failed(cid, exits, str(e))
        with open(os.path.join(workdir, "pid"), "w") as f:
            f.write(pid)
        log.debug("VM %s: container %s started in %.0f ms", self.vm.id, cid, (time.monotonic() - t0) * 1e3)

    def _failed(self, cid: str, exits: str, msg: str, rewrite: bool = False) -> None:
        path = os.path.join(exits, cid)
        if rewrite or not os.path.exists(path):
            write_exit(path, 128)
        raise RuntimeError_(msg)

    def container_state(self, workdir: str) -> dict:
        st = read_exit(workdir)
        if st is not None:
            return st
        if os.path.exists(os.path.join(workdir, "pid")) and self.vm is not None and self.vm.alive():
            try:
                return {"state": "running", "pid": int(open(os.path.join(workdir, "pid")).read().strip())}   # the guest's
            except (OSError, ValueError):
                return {"state": "running"}
        return {"state": "created"}

    def container_options(self, name: str, target: tuple[str, int] | None = None) -> dict:
        """A debug container with a target joins the target's PID namespace in the guest (target: its guest PID)."""
        ns = {"pid": f"{GUEST_PROC}/{int(target[1])}/ns/pid"} if target else {}
        return {"ns_paths": ns, "hostname": None, "annotations": {}}

    async def kill(self, cid: str, sig: str, all_procs: bool = False) -> None:
        if self.vm is None or not self.vm.alive():
            return
        try:
            await self.vm.conn.call("kill", cid, str(int(signal.Signals["SIG" + sig])), timeout=5)
        except VmError:
            pass

    async def attach_session(self, cid: str, workdir: str):
        """kubectl attach: the container's stdio held by the guest agent (GuestAttachSession)."""
        if self.vm is None or not self.vm.alive():
            raise RuntimeError_("the Pod's VM is not running")
        c = next((c for c in self.ctx.containers if c.cid == cid), None)
        spec = c.spec if c is not None else {}
        try:
            return await GuestAttachSession.start(self.vm.conn, cid, tty=bool(spec.get("tty")),
                                                  stdin_once=bool(spec.get("stdinOnce")))
        except VmError as e:
            raise RuntimeError_(str(e)) from None

    async def exec_session(self, cid: str, workdir: str, cmd: list[str], tty: bool, stdin: bool):
        """The command runs in the container inside the VM, started by the guest agent (guest/execs.c): the guest's
        kernel runs it, as runsc exec runs a command under the Pod's gVisor kernel."""
        if self.vm is None or not self.vm.alive():
            raise RuntimeError_("the Pod's VM is not running")
        try:
            return await GuestExecSession.start(self.vm.conn, cid, cmd, tty, stdin)
        except VmError as e:
            raise RuntimeError_(str(e)) from None

    async def exec(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, str]:
        """An exec probe: the command's output (stdout then stderr) and exit code."""
        session = await self.exec_session(cid, "", cmd, False, False)

        async def run() -> tuple[int, str]:
            out, err = await asyncio.gather(session.stdout.read(), session.stderr.read())
            return await session.wait(), (out + err).decode(errors="replace")
        try:
            return await asyncio.wait_for(run(), timeout)
        except asyncio.TimeoutError:
            session.kill()
            raise

    async def remove_container(self, cid: str) -> None:
        """The guest agent removes a container (its namespaces and cgroup) when it ends; nothing is left on the host."""


def share_pod(pod_dir: str, share: str) -> None:
    """Bind the Pod's directory at share/pod as a shared-propagation peer: mounts made under the Pod's
    directory later (a container's overlay root, a secret's tmpfs) appear in the guest as well."""
    if not mounts.is_mounted(pod_dir):
        mounts.bind(pod_dir, pod_dir)
    mounts.make_shared(pod_dir)
    dest = os.path.join(share, "pod")
    os.makedirs(dest, exist_ok=True)
    if not mounts.is_mounted(dest):
        mounts.bind(pod_dir, dest)


def unshare_pod(pod_dir: str) -> None:
    """Undo share_pod and the hostPath binds (the containers' overlays are unmounted by the Pod worker)."""
    hp = os.path.join(pod_dir, "hostpaths")
    for m in mounts.mounted_under(hp):
        subprocess.run(["umount", "-l", m], capture_output=True)
    if mounts.is_mounted(pod_dir):
        subprocess.run(["umount", "-l", pod_dir], capture_output=True)
