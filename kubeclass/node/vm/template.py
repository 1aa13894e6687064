"""VM templates (Kata's "template" VM factory, which Kata leaves off by default): the saved state of a
freshly booted guest — its agent up, no Pod yet — from which later VMs of the same shape start instead of
booting. Measured here under TCG (issue 11 asked): a cold boot to the guest agent takes 2.7-3.8 s, a
restore from a template 0.18-0.24 s (the state file is ~75 MiB: QEMU skips zero pages) and the restored
QEMU's RSS is ~130 MiB instead of ~240 (the kernel and initramfs images are not loaded again).

A template is keyed by everything its state depends on: QEMU's version, the machine type, memory, vCPUs,
the accelerator and the kernel and initramfs files. The first VM of a shape boots cold, and a template of
that shape is made in the background (a separate VM: booted, stopped, saved with QMP `migrate` to a file);
the following ones restore it (`-incoming`, then QMP `cont`). The template is made DELAY seconds after the
cold boot, so that its own boot does not compete for the CPU with the container start of the Pod that asked. A restore that fails removes the template and
boots cold. Every restored VM gets fresh entropy from the host in the agent's `setup` (the CRNG reseeded),
its clock set and its share mounted then, so VMs from one template share no random state.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shlex

from . import qemu

log = logging.getLogger("kubeclass.node.vm")

FORMAT = 2   # bump when the VM's devices or the guest agent's boot-time state change incompatibly (2: a network interface)
DELAY = 5.0  # seconds after the cold boot that asked for it: the template's own boot must not slow that Pod's start


class Templates:
    def __init__(self, directory: str):
        self.dir = directory
        self.making: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.reap_previous()

    def _booting(self, vmid: str) -> str:
        return os.path.join(self.dir, f"booting-{vmid}.json")

    def reap_previous(self) -> None:
        """Power off the template VMs a previous agent (killed while making one) left running."""
        from .machine import Vm
        try:
            names = [n for n in os.listdir(self.dir) if n.startswith("booting-")]
        except OSError:
            return
        for n in names:
            try:
                with open(os.path.join(self.dir, n)) as f:
                    Vm.from_meta(json.load(f)).kill_now()
            except (OSError, ValueError, KeyError):
                pass
            try:
                os.unlink(os.path.join(self.dir, n))
            except OSError:
                pass

    def _record(self, vm) -> None:
        with open(self._booting(vm.id), "w") as f:
            json.dump(vm.meta(), f)

    def path(self, binary: str, machine: str, accel: str, guest, memory_mib: int, vcpus: int) -> str:
        ident = [str(FORMAT), qemu.version(binary), machine, accel, str(memory_mib), str(vcpus)]
        for f in (guest.kernel, guest.initrd):
            st = os.stat(f)
            ident.append(f"{os.path.realpath(f)}:{st.st_size}:{st.st_mtime_ns}")
        key = hashlib.sha256("|".join(ident).encode()).hexdigest()[:16]
        return os.path.join(self.dir, f"{machine}-{memory_mib}m-{vcpus}c-{accel}-{key}.vmstate")

    def find(self, *shape) -> str | None:
        try:
            p = self.path(*shape)
        except OSError:
            return None
        return p if os.path.isfile(p) else None

    def discard(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def make_later(self, binary: str, machine: str, accel: str, guest, memory_mib: int, vcpus: int) -> None:
        """Make the template of this shape in the background (once at a time per shape)."""
        try:
            path = self.path(binary, machine, accel, guest, memory_mib, vcpus)
        except OSError:
            return
        if path in self.making or os.path.exists(path):
            return
        self.making.add(path)
        t = asyncio.ensure_future(self._make(path, binary, machine, accel, guest, memory_mib, vcpus))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        """Stop making templates (a template VM being booted or saved is powered off)."""
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _make(self, path, binary, machine, accel, guest, memory_mib, vcpus) -> None:
        from .machine import Vm, VmError
        vm = None
        tmp = path + f".tmp{os.getpid()}"
        try:
            await asyncio.sleep(DELAY)
            os.makedirs(self.dir, exist_ok=True)
            vm = await Vm._boot(binary, machine, guest, memory_mib, vcpus, "template", [], accel, None, self._record)
            await qemu.qmp(vm.rundir, {"execute": "stop"},
                           {"execute": "migrate", "arguments": {"uri": f"exec:cat > {shlex.quote(tmp)}"}})
            for _ in range(1200):
                st = (await qemu.qmp(vm.rundir, {"execute": "query-migrate"}))[0].get("return", {})
                if st.get("status") in ("completed", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.05)
            if st.get("status") != "completed":
                raise VmError(f"saving the VM state: {st.get('status')} {st.get('error-desc', '')}")
            os.replace(tmp, path)
            log.info("VM template %s made (%d MiB)", os.path.basename(path), os.path.getsize(path) >> 20)
        except (VmError, OSError, ValueError, ConnectionError, asyncio.TimeoutError) as e:
            log.warning("making the VM template %s failed: %s", os.path.basename(path), e)
        finally:
            self.making.discard(path)
            if vm is not None:
                await vm.destroy(grace=0.5)
                try:
                    os.unlink(self._booting(vm.id))
                except OSError:
                    pass
            if os.path.exists(tmp):
                os.unlink(tmp)
