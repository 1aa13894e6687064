"""A warm VM pool (Kata's "VM cache" factory idea, which Kata leaves off by default): `kubeclass node
--vm-pool N` keeps N booted, idle VMs per VM handler. A Pod whose VM size fits a pooled VM (memory and
vCPUs at most the pool's) takes one and the pool boots a replacement in the background; a Pod that needs a
bigger VM boots its own. Pooled VMs have no Pod yet: they mount their (empty) share when they join the pool;
the Pod's directory is bound into that share and the guest's hostname, clock and entropy are set when a Pod
takes it (sandbox.py), and QEMU moves into the Pod's cgroup then.

The pool's VMs are recorded in DATA/vm-pool/<vmid>; a restarted agent powers off the ones it finds there
(idle VMs are cheap to boot again and cannot have been promised to any Pod) and fills the pool anew.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os

from .machine import Vm, VmError

log = logging.getLogger("kubeclass.node.vm")


class VmPool:
    def __init__(self, data_dir: str, handlers: list, size: int, guest, memory_mib: int = 512, vcpus: int = 1,
                 templates=None):
        self.dir = os.path.join(data_dir, "vm-pool")
        self.handlers = {h.name: h for h in handlers}
        self.size = size
        self.guest = guest                  # async () -> guestimage.Guest
        self.memory_mib, self.vcpus = memory_mib, vcpus
        self.idle: dict[str, list[Vm]] = {name: [] for name in self.handlers}
        self.wake = asyncio.Event()
        self.failures = 0
        self.templates = templates          # template.Templates, when the node uses them

    def take(self, handler: str, memory_mib: int, vcpus: int) -> Vm | None:
        """A booted idle VM for a Pod of that size, or None (then the Pod boots its own)."""
        if handler not in self.idle or memory_mib > self.memory_mib or vcpus > self.vcpus:
            return None
        while self.idle[handler]:
            vm = self.idle[handler].pop(0)
            self._forget(vm)
            self.wake.set()
            if vm.alive():
                return vm
        self.wake.set()
        return None

    def _record(self, vm: Vm, ready: bool = False) -> None:
        """DATA/vm-pool/<vmid>: written when QEMU starts, again with ready=true once the VM idles in the pool."""
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, vm.id + ".tmp"), "w") as f:
            json.dump({**vm.meta(), "ready": ready}, f)
        os.replace(os.path.join(self.dir, vm.id + ".tmp"), os.path.join(self.dir, vm.id))

    def _forget(self, vm: Vm) -> None:
        try:
            os.unlink(os.path.join(self.dir, vm.id))
        except OSError:
            pass

    def reap_previous(self) -> None:
        """Power off the idle VMs a previous agent left in the pool."""
        if not os.path.isdir(self.dir):
            return
        for name in os.listdir(self.dir):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    Vm.from_meta(json.load(f)).kill_now()
            except (OSError, ValueError, KeyError):
                pass
            self._forget(Vm(name))

    async def run(self) -> None:
        self.reap_previous()
        while True:
            self.wake.clear()
            short = [n for n, vms in self.idle.items() if len(vms) < self.size]
            for name in short:
                h = self.handlers[name]
                try:
                    guest = await self.guest()
                    # recorded as soon as QEMU runs: a restarted agent finds it, whatever happens next
                    vm = await Vm.boot(h.binary, h.machine, guest, self.memory_mib, self.vcpus, name, templates=self.templates,
                                       on_launch=self._record)
                except (VmError, OSError) as e:   # (its record stays: reap_previous skips VMs that are gone)
                    self.failures += 1
                    log.warning("VM pool: booting a %s VM failed: %s", name, e)
                    await asyncio.sleep(min(60, 2 ** min(self.failures, 6)))
                    break
                try:
                    await vm.conn.call("mount")   # the share, now rather than when a Pod waits for it
                except VmError as e:
                    log.warning("VM pool: a %s VM cannot mount its share: %s", name, e)
                    self._forget(vm)
                    await vm.destroy(grace=1)
                    continue
                except asyncio.CancelledError:
                    self._forget(vm)
                    vm.kill_now()
                    raise
                self.failures = 0
                self.idle[name].append(vm)
                self._record(vm, ready=True)
                log.info("VM pool: %s has %d idle VM(s)", name, len(self.idle[name]))
                break   # one boot at a time, then look again
            else:
                await self.wake.wait()

    async def close(self) -> None:
        for vms in self.idle.values():
            for vm in vms:
                self._forget(vm)
                await vm.destroy(grace=1)
            vms.clear()
