"""The VM runtime's pure parts: VM sizing from a Pod, the guest's view of a container's config.json, the
initramfs writer, kernel extraction and module ordering, the QEMU command lines, and the guest agent protocol
client against a socket that answers as the guest agent does."""
from __future__ import annotations

import asyncio
import concurrent.futures
import lzma
import os

import pytest

from kubeclass.node.vm import guestimage, qemu
from kubeclass.node.vm.machine import AgentConnection, VmError
from kubeclass.node.vm.sandbox import VmSandbox, vm_size


def test_vm_size_from_the_pod():
    seed_kata = {"spec": {"containers": [{"resources": {"requests": {"memory": "128Mi", "cpu": "100m"},
                                                        "limits": {"memory": "256Mi", "cpu": "200m"}}}],
                          "overhead": {"cpu": "250m", "memory": "160Mi"}}}
    assert vm_size(seed_kata) == (448, 1)                                        # 256 + 160, in 64 MiB steps
    assert vm_size({"spec": {"containers": [{}, {}]}}) == (256, 1)                 # 128 MiB a container by default
    assert vm_size({"spec": {"containers": [{"resources": {"limits": {"memory": "32Mi"}}}]}}) == (128, 1)   # the floor
    assert vm_size({"spec": {"containers": [{"resources": {"requests": {"memory": "1Gi"}}}]}}) == (1024, 1)
    two_cpus = {"spec": {"containers": [{"resources": {"limits": {"cpu": "1500m", "memory": "300Mi"}}}],
                         "initContainers": [{"resources": {"limits": {"memory": "2Gi"}}}]}}
    assert vm_size(two_cpus, host_cpus=8) == (2048, 2)                             # the largest init container
    assert vm_size(two_cpus, host_cpus=1) == (2048, 1)
    huge = {"spec": {"containers": [{"resources": {"limits": {"memory": "1Ti", "cpu": "500"}}}]}}
    assert vm_size(huge, host_cpus=2, host_mib=23990) == (23936, 2)                # capped at the host's memory and cores


class _Ctx:
    def __init__(self, d):
        self.dir = d
        self.uid = "u1"
        self.containers = []
        self.pod = {"metadata": {"name": "p", "uid": "u1"}, "spec": {}}


def test_guest_config_paths_namespaces_and_host_paths(tmp_path, monkeypatch):
    pod_dir = str(tmp_path / "pods" / "u1")
    os.makedirs(pod_dir)
    sb = VmSandbox(_Ctx(pod_dir), handler=None)
    bound = []
    monkeypatch.setattr(sb, "bind_host_path", lambda src: bound.append(src) or os.path.join(pod_dir, "hostpaths", "x"))
    cfg = {"root": {"path": f"{pod_dir}/containers/app/0/rootfs"}, "hostname": "p",
           "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                      {"destination": "/etc/hosts", "type": "bind", "source": f"{pod_dir}/etc/hosts"},
                      {"destination": "/data", "type": "bind", "source": "/srv/data"}],
           "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/proc/1/ns/net"},
                                    {"type": "ipc"}, {"type": "uts"}], "cgroupsPath": "/kubeclass/podu1/c"}}
    g = sb.guest_config(cfg)
    assert g["root"]["path"] == "/run/kubeclass/share/pod/containers/app/0/rootfs"
    assert [m["source"] for m in g["mounts"]] == ["proc", "/run/kubeclass/share/pod/etc/hosts", "/run/kubeclass/share/pod/hostpaths/x"]
    assert bound == ["/srv/data"]
    assert g["linux"]["namespaces"] == [{"type": "pid"}, {"type": "mount"}]       # the VM's network, IPC, UTS
    assert "hostname" not in g and g["linux"]["cgroupsPath"] == "/c"
    assert cfg["root"]["path"].startswith(pod_dir)                                  # the host's config is untouched


def test_initramfs_is_a_newc_archive_cpio_reads(tmp_path):
    c = guestimage.Cpio()
    c.file("init", b"#!agent", 0o755)
    c.file("usr/bin/crun", b"x" * 5)
    c.file("lib/x86_64-linux-gnu/libc.so.6", b"libc")
    c.symlink("lib64", "lib")
    data = c.bytes()
    entries, off = [], 0
    while True:                                     # read it back as the kernel does (newc: 110-byte headers)
        assert data[off:off + 6] == b"070701"
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[off + 110: off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += (4 - off % 4) % 4
        body = data[off: off + size]
        off += size + (4 - size % 4) % 4
        if name == "TRAILER!!!":
            break
        entries.append((name, oct(mode), body))
    assert [e[0] for e in entries] == ["init", "usr", "usr/bin", "usr/bin/crun", "lib", "lib/x86_64-linux-gnu",
                                       "lib/x86_64-linux-gnu/libc.so.6", "lib64"]
    assert entries[0] == ("init", oct(0o100755), b"#!agent") and entries[1][1] == oct(0o40755)
    assert entries[-1] == ("lib64", oct(0o120777), b"lib") and off == len(data)


def test_extract_vmlinux_from_an_xz_bzimage():
    elf = b"\x7fELF" + os.urandom(64)
    bz = b"MZ-setup-code" + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"trailing"
    assert guestimage.extract_vmlinux(bz) == elf
    with pytest.raises(guestimage.GuestError):
        guestimage.extract_vmlinux(b"not a kernel")


def test_module_order_puts_dependencies_first(tmp_path):
    def mod(name, deps):
        p = tmp_path / "kernel" / f"{name}.ko"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\x7fELF...\x00license=GPL\x00depends=" + ",".join(deps).encode() + b"\x00vermagic=6.1\x00")
    mod("virtio", [])
    mod("virtio_ring", [])
    mod("virtio_pci", ["virtio", "virtio_ring"])
    mod("9pnet", [])
    mod("9pnet_virtio", ["9pnet", "virtio_ring", "virtio"])
    order = [os.path.basename(p)[:-3] for p in guestimage.module_order(str(tmp_path), ("virtio_pci", "9pnet_virtio"))]
    assert order == ["virtio", "virtio_ring", "virtio_pci", "9pnet", "9pnet_virtio"]
    with pytest.raises(guestimage.GuestError, match="kernel module 9p not found"):
        guestimage.module_order(str(tmp_path), ("9p",))


def test_qemu_command_lines():
    q = qemu.command("/usr/bin/qemu-system-x86_64", "q35", "tcg", kernel="/k", initrd="/i", memory_mib=416, vcpus=1,
                     rundir="/run/kubeclass/vms/abc", share="/run/kubeclass/vms/abc/share", name="kubeclass-abc")
    s = " ".join(q)
    assert "-machine q35" in s and "-accel tcg,thread=multi" in s and "-m 416M" in s and "virtio-9p-pci" in s
    assert "virtio-serial-pci" in s and "name=kubeclass.agent" in s and "-nodefaults" in s
    m = qemu.command("/usr/bin/qemu-system-x86_64", "microvm", "tcg", kernel="/k", initrd="/i", memory_mib=128, vcpus=1,
                     rundir="/r", share="/r/share", name="n")
    s = " ".join(m)
    assert "-machine microvm" in s and "virtio-9p-device" in s and "virtio-serial-device" in s
    assert "tsc=reliable" in s                              # microvm under TCG hangs without it (issue 11)
    k = qemu.command("/q", "q35", "kvm", kernel="/k", initrd="/i", memory_mib=128, vcpus=2, rundir="/r", share="/s", name="n")
    assert "-accel kvm" in " ".join(k) and "-cpu host" in " ".join(k)


def test_agent_connection_speaks_the_line_protocol(tmp_path):
    sock = str(tmp_path / "agent.sock")
    seen = []

    async def guest(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            rid, verb, *args = line.decode().rstrip("\n").split("\t")
            seen.append((verb, args))
            if verb == "ping":
                writer.write(f"0\tevent\texit\tc1\t0\n{rid}\tok\t1\t0.5\n".encode())   # an event first, then the reply
            elif verb == "kill":
                writer.write(f"{rid}\terr\tno such container\n".encode())
            await writer.drain()

    async def main():
        server = await asyncio.start_unix_server(guest, sock)
        conn = AgentConnection(sock)
        assert await conn.call("ping") == ["1", "0.5"]
        with pytest.raises(VmError, match="no such container"):
            await conn.call("kill", "c9", "15")
        with pytest.raises(VmError, match="tab or newline"):
            await conn.call("run", "bad\targ")
        with pytest.raises(VmError, match="did not answer setup"):
            await conn.call("setup", "h", "1", timeout=0.2)
        conn.close()
        server.close()

    asyncio.run(main())
    assert seen[:2] == [("ping", []), ("kill", ["c9", "15"])]


def test_concurrent_finds_build_one_whole_initramfs(tmp_path):
    """Node agents (and one agent's pool and Pods) that find the initramfs stale at once must not build
    over each other: a race once left an empty /init (the guest then panics: "No working init found")."""
    kdir = tmp_path / "6.1.0-test"
    (kdir / "modules").mkdir(parents=True)
    (kdir / "modules" / "order").write_text("")
    (kdir / "vmlinux").write_bytes(b"\x7fELF")
    (tmp_path / "current").symlink_to("6.1.0-test")
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        guests = list(ex.map(lambda _: guestimage.find(root=str(tmp_path)), range(4)))
    assert {g.initrd for g in guests} == {str(kdir / "initrd.cpio")}
    data = (kdir / "initrd.cpio").read_bytes()
    agent = (kdir / "kubeclass-agent").read_bytes()
    assert agent[:4] == b"\x7fELF" and agent in data
    assert (kdir / "agent.sha256").read_text() == guestimage.agent_sha256()
    assert not [p for p in os.listdir(kdir) if p.startswith(".build-")]
