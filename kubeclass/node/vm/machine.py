"""One VM and the connection to its guest agent.

A VM's runtime state lives in RUN_ROOT/<vmid>/ (short paths: QEMU's unix sockets are limited to 107
bytes): qemu.pid, agent.sock (the guest agent's virtio-serial port), qmp.sock, console.log, and share/, the
directory the guest mounts over 9p at qemu.GUEST_SHARE. A Pod's directory is bound at share/pod when the Pod
takes the VM (so a warm VM booted before its Pod was known serves it too); see sandbox.py.

The guest agent protocol (guest/agent.c): one line per message, tab-separated fields.
  host -> guest:  ID VERB ARG...          guest -> host:  ID ok [DATA...]  |  ID err MESSAGE
  ping                                    -> ok VERSION GUEST_UPTIME
  mount                                   -> ok          (mounts the share: a pooled VM does it ahead)
  setup HOSTNAME UNIX_NANOS ENTROPY_HEX   -> ok          (mounts the share if not yet; the guest's hostname and
                                             clock; host entropy credited and the CRNG reseeded)
  run CID LOG EXIT RTLOG SPEC_HEX         -> ok PID      (the agent creates the container guestspec.py's spec
                                             describes, hex-encoded; PID once it has exec'd, else err with
                                             runc's words, also written to RTLOG as a JSON log line; its
                                             output goes to LOG in the CRI format, its exit code to EXIT,
                                             "EXIT.oom" when the guest's memory cgroup killed it; guest paths)
  kill CID SIGNO                          -> ok
  stats [CID...]                          -> ok MEM_TOTAL_KB MEM_AVAILABLE_KB CPU_TICKS [MEM WORKING_SET CPU_USEC]...
                                             (one triple per container named, from its guest cgroup; "-" fields
                                             when it is gone)
  poweroff                                -> ok          (then the guest powers off)
  exec CID TTY STDIN ARGV_HEX           -> ok PID      (a command in the running container: its PID and mount
                                             namespaces, cgroup, environment, cwd and user; then, on the
                                             request's ID: "out HEX" / "err HEX" as it writes, "exit CODE" last)
  stdin ID HEX | close ID | resize ID ROWS COLS | signal ID SIGNO      (to an exec session; no answer)
  net MAC ADDRESS/PREFIX GATEWAY MTU      -> ok IFNAME   (the VM's interface takes the Pod's address and its veth's MAC)
  attach CID                              -> ok          (then, on the request's ID, the container's output as it
                                             comes: "out HEX" / "err HEX", and "exit CODE" when it ends)
  detach ID                               (no answer: that attach session's output stops)
  stdin ID HEX | close ID | resize ID ROWS COLS   (to an attach session: the container's stdin, its end (stdinOnce),
                                             its terminal's size; a container's spec says "stdin" / "terminal")
The guest also sends "0 event exit CID CODE" when a container ends. A request is at most 2 MiB (a run request
carries its spec).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import shlex
import shutil
import signal
import time

from .. import mounts
from ..runtimes import process_alive as _alive
from . import qemu

log = logging.getLogger("kubeclass.node.vm")

RUN_ROOT = "/run/kubeclass/vms"
BOOT_TIMEOUT = 120.0


class VmError(Exception):
    """A VM that could not be booted or talked to; the message says why (with its console's last lines)."""


class AgentConnection:
    """Requests to the guest agent over its virtio-serial port (QEMU's unix socket on the host side)."""

    def __init__(self, path: str):
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[str, asyncio.Future] = {}
        self.streams: dict[str, asyncio.Queue] = {}   # exec sessions: their messages after the first answer
        self.ids = itertools.count(1)
        self.task: asyncio.Task | None = None
        self.lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self) -> None:
        async with self.lock:
            if self.connected:
                return
            self.reader, self.writer = await asyncio.open_unix_connection(self.path)
            self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                parts = line.decode(errors="replace").rstrip("\n").split("\t")
                fut = self.pending.pop(parts[0], None)
                if fut is not None and not fut.done():
                    fut.set_result(parts[1:])
                elif parts[0] in self.streams:
                    self.streams[parts[0]].put_nowait(parts[1:])
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(VmError("the connection to the guest agent closed"))
            self.pending.clear()
            for q in self.streams.values():
                q.put_nowait(None)
            if self.writer is not None:
                self.writer.close()
            self.writer = None

    async def call(self, verb: str, *args: str, timeout: float = 10, stream: asyncio.Queue | None = None) -> list[str]:
        """A request and its answer. stream: the queue that gets the messages the guest sends on the request's id
        after its answer (an exec session's output and exit; None when the connection closes)."""
        for a in (verb, *args):
            if "\t" in a or "\n" in a or not a:
                raise VmError(f"an agent request argument cannot be empty or hold a tab or newline: {a!r}")
        if not self.connected:
            await self.connect()
        rid = str(next(self.ids))
        if stream is not None:
            self.streams[rid] = stream
            stream.rid = rid   # type: ignore[attr-defined]
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        assert self.writer is not None
        self.writer.write(("\t".join((rid, verb, *args)) + "\n").encode())
        try:
            parts = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.pending.pop(rid, None)
            self.streams.pop(rid, None)
            raise VmError(f"the guest agent did not answer {verb} within {timeout:g}s") from None
        if parts and parts[0] == "ok":
            return parts[1:]
        self.streams.pop(rid, None)
        raise VmError(parts[1] if len(parts) > 1 else f"{verb} failed")

    def send(self, verb: str, *args: str) -> None:
        """A message the guest does not answer (to an exec session); dropped when the connection is down."""
        if self.connected and all(a and "\t" not in a and "\n" not in a for a in (verb, *args)):
            assert self.writer is not None
            self.writer.write(("\t".join(("0", verb, *args)) + "\n").encode())

    def end_stream(self, rid: str) -> None:
        self.streams.pop(rid, None)

    async def ping_until_ready(self, timeout: float, alive) -> list[str]:
        """Ping until the guest answers (its port opens once it has booted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise VmError("QEMU exited")
            try:
                return await self.call("ping", timeout=0.25)
            except (VmError, OSError):
                if not self.connected:
                    await asyncio.sleep(0.02)
        raise VmError(f"the guest did not answer within {timeout:g}s")

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Vm:
    """A VM: booted by boot(), or found again by its id after an agent restart."""

    def __init__(self, vmid: str, handler_name: str = "", machine: str = "", memory_mib: int = 0, vcpus: int = 0):
        self.id = vmid
        self.rundir = os.path.join(RUN_ROOT, vmid)
        self.share = os.path.join(self.rundir, "share")
        self.handler_name, self.machine, self.memory_mib, self.vcpus = handler_name, machine, memory_mib, vcpus
        self.conn = AgentConnection(os.path.join(self.rundir, "agent.sock"))
        self.boot_seconds = 0.0
        self.origin = ""             # how it started: "boot", "template" or "pool" (a pooled VM, either way)

    def meta(self) -> dict:
        return {"vmid": self.id, "handler": self.handler_name, "machine": self.machine, "memoryMiB": self.memory_mib,
                "vcpus": self.vcpus, "origin": self.origin}

    @classmethod
    def from_meta(cls, meta: dict) -> "Vm":
        vm = cls(meta["vmid"], meta.get("handler", ""), meta.get("machine", ""), meta.get("memoryMiB", 0), meta.get("vcpus", 0))
        vm.origin = meta.get("origin", "")
        return vm

    @property
    def tap(self) -> str:
        """The tap device of the VM's network interface (15 characters: an interface name's limit)."""
        return "kct" + self.id[:12]

    @property
    def pid(self) -> int | None:
        try:
            with open(os.path.join(self.rundir, "qemu.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def alive(self) -> bool:
        return self.pid is not None

    @classmethod
    async def boot(cls, binary: str, machine: str, guest, memory_mib: int, vcpus: int, handler_name: str,
                   cgroup_procs: list[str] | None = None, templates=None, on_launch=None) -> "Vm":
        """Start a VM and wait for its guest agent: from a template of its shape when there is one
        (template.py), else booted (and a template of the shape made in the background). KVM is tried
        first where the CPU has hardware virtualization; a failed KVM boot falls back to TCG for this and
        every later VM. on_launch(vm) is called as soon as QEMU is started (so that its owner can record it
        before the boot completes: an agent killed mid-boot must not leave the VM behind)."""
        accel = qemu.accelerator()
        if templates is not None:
            state = templates.find(binary, machine, accel, guest, memory_mib, vcpus)
            if state is not None:
                try:
                    return await cls._boot(binary, machine, guest, memory_mib, vcpus, handler_name, cgroup_procs, accel, state, on_launch)
                except VmError as e:
                    log.warning("starting a VM from the template %s failed (%s); booting instead", state, e)
                    templates.discard(state)
        try:
            vm = await cls._boot(binary, machine, guest, memory_mib, vcpus, handler_name, cgroup_procs, accel, None, on_launch)
        except VmError as e:
            if accel != "kvm":
                raise
            log.warning("VM boot with KVM failed (%s); using TCG from now on", e)
            accel = "tcg"
            qemu.set_accelerator(accel)
            vm = await cls._boot(binary, machine, guest, memory_mib, vcpus, handler_name, cgroup_procs, accel, None, on_launch)
        if templates is not None:
            templates.make_later(binary, machine, accel, guest, memory_mib, vcpus)
        return vm

    @classmethod
    async def _boot(cls, binary, machine, guest, memory_mib, vcpus, handler_name, cgroup_procs, accel, state,
                    on_launch=None) -> "Vm":
        """Boot (state None) or restore a saved state (QMP `cont` once it is loaded)."""
        vm = cls(secrets.token_hex(6), handler_name, machine, memory_mib, vcpus)
        os.makedirs(vm.share, exist_ok=True)
        argv = qemu.command(binary, machine, accel, kernel=guest.kernel, initrd=guest.initrd, memory_mib=memory_mib,
                            vcpus=vcpus, rundir=vm.rundir, share=vm.share, name=f"kubeclass-{vm.id}", tap=vm.tap)
        if state is not None:
            argv += ["-incoming", f"exec:cat {shlex.quote(state)}"]
        t0 = time.monotonic()
        launcher = qemu.launch(argv, cgroup_procs or [], os.path.join(vm.rundir, "qemu.log"))
        if on_launch is not None:
            on_launch(vm)
        try:
            await vm._wait_socket(launcher)
            if state is not None:
                await vm._resume_incoming()
            await vm.conn.ping_until_ready(BOOT_TIMEOUT, lambda: vm.alive() or _alive(launcher))
        except (VmError, OSError) as e:
            why = vm.failure(str(e))
            await vm.destroy()
            raise VmError(why) from None
        except asyncio.CancelledError:   # the agent stops mid-boot: nothing would ever power this VM off
            vm.kill_now()
            raise
        vm.boot_seconds = time.monotonic() - t0
        vm.origin = "template" if state else "boot"
        log.info("VM %s (%s, %s, %d MiB, %d vCPU) %s in %.2fs", vm.id, machine, accel, memory_mib, vcpus,
                 "restored from its template" if state else "booted", vm.boot_seconds)
        return vm

    async def _resume_incoming(self) -> None:
        """Wait until QEMU has loaded the saved state, then run the VM."""
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            if not self.alive() and os.path.exists(os.path.join(self.rundir, "qemu.pid")):
                raise VmError("QEMU exited while loading the VM template")
            try:
                status = (await qemu.qmp(self.rundir, {"execute": "query-status"}, timeout=2))[0]["return"]["status"]
            except (OSError, ValueError, KeyError, ConnectionError, asyncio.TimeoutError):
                status = ""
            if status not in ("", "inmigrate"):
                break
            await asyncio.sleep(0.01)
        if status not in ("paused", "running"):
            raise VmError(f"loading the VM template ended in state {status or 'unknown'}")
        await qemu.qmp(self.rundir, {"execute": "cont"})

    async def _wait_socket(self, launcher: int) -> None:
        sock = os.path.join(self.rundir, "agent.sock")
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if (not _alive(launcher) and not self.alive()) or time.monotonic() > deadline:
                raise VmError("QEMU did not start")
            await asyncio.sleep(0.005)

    def failure(self, why: str) -> str:
        """A failure's message with what QEMU printed and the guest console's last lines."""
        parts = [why]
        try:
            with open(os.path.join(self.rundir, "qemu.log"), errors="replace") as f:
                q = f.read().strip()[-1000:]
            if q:
                parts.append(f"qemu: {q}")
        except OSError:
            pass
        console = qemu.console_tail(self.rundir)
        if console:
            parts.append(f"console:\n{console}")
        return "; ".join(parts[:2]) + ("\n" + parts[2] if len(parts) > 2 else "")

    async def destroy(self, grace: float = 3.0) -> None:
        """Power the VM off (the guest agent, then QMP quit, then SIGKILL) and remove its state."""
        pid = self.pid
        if pid is not None:
            try:
                await self.conn.call("poweroff", timeout=1)
            except (VmError, OSError):
                pass
            if not await _wait_gone(pid, grace):
                try:
                    await qemu.qmp(self.rundir, {"execute": "quit"}, timeout=2)
                except (OSError, ValueError, ConnectionError, asyncio.TimeoutError):
                    pass
                if not await _wait_gone(pid, 2):
                    _kill(pid)
                    await _wait_gone(pid, 5)
        self.conn.close()
        self.remove_state()

    def kill_now(self) -> None:
        """For cleanup without an event loop: SIGKILL QEMU and remove the state."""
        pid = self.pid
        if pid is not None:
            _kill(pid)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.remove_state()

    def remove_state(self) -> None:
        # share/pod is a bind of the Pod's directory: never remove through it
        if mounts.unmount_all(self.rundir):
            shutil.rmtree(self.rundir, ignore_errors=True)
        else:
            log.warning("VM %s: %s still has mounts; its state is left in place", self.id, self.rundir)


def reap_stale(min_age: float = 120.0) -> None:
    """Remove the state directories of VMs that are gone (killed with the machine's agent, say): no live
    QEMU, nothing mounted, older than min_age seconds (a VM being booted has no pid file yet)."""
    try:
        names = os.listdir(RUN_ROOT)
    except OSError:
        return
    now = time.time()
    for name in names:
        vm = Vm(name)
        try:
            if now - os.path.getmtime(vm.rundir) < min_age:
                continue
        except OSError:
            continue
        if vm.pid is None and not mounts.mounted_under(vm.rundir):
            shutil.rmtree(vm.rundir, ignore_errors=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.02)
    return not _alive(pid)
