"""QEMU for VM Pods: the command line of one VM (q35 or microvm, KVM where the host really has hardware
virtualization, TCG otherwise), launching it detached so it outlives the node agent, and QMP (its JSON
control socket) for a graceful power-off and quit.

Measured on these machines (issue 11): /dev/kvm is a PVM host on which stock guest kernels do not boot, so
KVM is used only when the CPU shows vmx/svm *and* a probe boot succeeds; otherwise QEMU's TCG (emulated
CPU, multi-threaded). microvm under TCG needs `tsc_early_khz=<host kHz> tsc=reliable` or it may hang at
"Marking TSC unstable"; Debian's kernel lacks virtio-mmio command-line devices, so microvm keeps ACPI on
(the virtio-mmio devices are found through it).
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import subprocess

GUEST_SHARE = "/run/kubeclass/share"    # where the guest mounts the VM's 9p share
TB_SIZE_MB = 32                         # TCG's translated-code cache (QEMU's default is 1 GiB): 32 MiB measured 15 MiB less idle RSS than 64, same boot and container start times


@functools.lru_cache(maxsize=8)
def version(binary: str = "qemu-system-x86_64") -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(r"version (\d+\.\d+)", out)
    return m.group(1) if m else "?"


_accel: str | None = None


def hardware_virtualization() -> bool:
    """vmx (Intel) or svm (AMD) among the CPU flags and /dev/kvm usable."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return False
    return bool(re.search(r"\b(vmx|svm)\b", flags)) and os.access("/dev/kvm", os.R_OK | os.W_OK)


def accelerator() -> str:
    """"kvm" where hardware virtualization works (decided by the first VM: a failed KVM boot falls back
    to TCG for good, see set_accelerator), else "tcg"."""
    global _accel
    if _accel is None:
        _accel = "kvm" if hardware_virtualization() else "tcg"
    return _accel


def set_accelerator(accel: str) -> None:
    global _accel
    _accel = accel


def host_khz() -> int:
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("cpu MHz"):
                    return int(float(ln.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return 0


def command(binary: str, machine: str, accel: str, *, kernel: str, initrd: str, memory_mib: int, vcpus: int,
            rundir: str, share: str, name: str, tap: str = "") -> list[str]:
    """The QEMU command line of one VM: no default devices, direct kernel boot, the console to
    rundir/console.log, the agent's virtio-serial port on rundir/agent.sock, the share over 9p (tag
    kcshare), QMP on rundir/qmp.sock and, with tap, a virtio-net interface on a tap device QEMU creates
    under that name in the node's network namespace (moved into the Pod's when a Pod takes the VM: a VM
    booted ahead, from the pool or a template, gets its Pod's network the same way)."""
    append = ["console=ttyS0", "quiet", "panic=-1", "reboot=t", "cryptomgr.notests", "i8042.noaux", "8250.nr_uarts=1",
              "nokaslr", f"kc.share={GUEST_SHARE}"]
    if machine == "microvm":
        mach = "microvm,pit=off,pic=off,isa-serial=on,rtc=on"
        serial_bus, ninep, nic = "virtio-serial-device", "virtio-9p-device", "virtio-net-device"
        if accel == "tcg":
            khz = host_khz()
            append += ([f"tsc_early_khz={khz}"] if khz else []) + ["tsc=reliable"]
    else:
        mach = "q35"
        serial_bus, ninep, nic = "virtio-serial-pci", "virtio-9p-pci", "virtio-net-pci"
    accel_arg = "kvm" if accel == "kvm" else f"tcg,thread=multi,tb-size={TB_SIZE_MB}"
    net = ["-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no", "-device", f"{nic},netdev=net0"] if tap else []
    return [binary, "-name", name, "-machine", mach, "-accel", accel_arg, "-cpu", "host" if accel == "kvm" else "max",
            "-m", f"{memory_mib}M", "-smp", str(vcpus), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", " ".join(append),
            "-serial", f"file:{os.path.join(rundir, 'console.log')}",
            "-chardev", f"socket,id=agent,path={os.path.join(rundir, 'agent.sock')},server=on,wait=off",
            "-device", f"{serial_bus},id=ser0", "-device", "virtserialport,bus=ser0.0,chardev=agent,name=kubeclass.agent",
            "-fsdev", f"local,id=fs0,path={share},security_model=passthrough",
            "-device", f"{ninep},fsdev=fs0,mount_tag=kcshare", *net,
            "-qmp", f"unix:{os.path.join(rundir, 'qmp.sock')},server=on,wait=off",
            "-pidfile", os.path.join(rundir, "qemu.pid"), "-daemonize"]


def launch(argv: list[str], cgroup_procs: list[str], log: str) -> int:
    """Start QEMU in its own session (it outlives the agent, as conmon does), first moving itself into
    the cgroups whose cgroup.procs files are given, so the guest's memory is charged there from the start.
    QEMU daemonizes once its devices and sockets are set up (-daemonize: the VM's process is then no child
    of the agent, which need not reap it); its pid is in the -pidfile. Returns the launcher's pid, alive
    until QEMU has daemonized or failed."""
    script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
    with open(log, "ab") as out:
        proc = subprocess.Popen(["/bin/sh", "-c", script, "qemu", *cgroup_procs, "--", *argv], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True)
    # reaped in the background (QEMU's first process exits once the daemon runs: no thread is held)
    asyncio.get_event_loop().run_in_executor(None, proc.wait)
    return proc.pid


async def qmp(rundir: str, *commands: dict, timeout: float = 5) -> list[dict]:
    """Run QMP commands on the VM's monitor socket (capabilities negotiated first); their replies."""
    path = os.path.join(rundir, "qmp.sock")
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    out = []
    try:
        async def reply() -> dict:
            while True:
                line = await asyncio.wait_for(reader.readline(), timeout)
                if not line:
                    raise ConnectionError("QMP closed")
                msg = json.loads(line)
                if "return" in msg or "error" in msg:
                    return msg

        await asyncio.wait_for(reader.readline(), timeout)   # the greeting
        writer.write(b'{"execute": "qmp_capabilities"}\n')
        await reply()
        for cmd in commands:
            writer.write(json.dumps(cmd).encode() + b"\n")
            await writer.drain()
            try:
                out.append(await reply())
            except ConnectionError:
                if cmd.get("execute") == "quit":
                    out.append({"return": {}})
                else:
                    raise
    finally:
        writer.close()
    return out


def console_tail(rundir: str, lines: int = 10) -> str:
    """The guest console's last lines (escape sequences removed), with the kernel's panic line first when
    it scrolled out."""
    try:
        with open(os.path.join(rundir, "console.log"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1bc", "", text)
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    panic = next((ln for ln in kept if "Kernel panic" in ln), None)
    tail = kept[-lines:]
    if panic is not None and panic not in tail:
        tail = [panic, "..."] + tail[-(lines - 2):]   # what the kernel said first, then where it stopped
    return "\n".join(tail)

