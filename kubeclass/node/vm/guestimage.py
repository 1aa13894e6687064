"""The guest a VM Pod boots: Debian's kernel as an ELF `vmlinux` (booted directly through its PVH entry, so
QEMU skips the bzImage decompression, ~3.5 s under TCG) and an initramfs kubeclass builds itself: the guest
agent (guest/agent.c and guest/container.c, one static binary, PID 1, which also creates the containers: no OCI
runtime binary in the guest) and the kernel modules the guest needs (virtio transports, virtio-serial, 9p).

`python -m kubeclass.node.vm.guestimage install --deb linux-image-...deb` (run by scripts/install.sh) writes
GUEST_DIR/<kernel version>/{vmlinux, modules/, initrd.cpio} and GUEST_DIR/current -> that version.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tempfile

GUEST_DIR = os.environ.get("KUBECLASS_GUEST_DIR", "/var/lib/kubeclass/guest")
GUEST_SRC = os.path.join(os.path.dirname(__file__), "guest")
AGENT_SOURCES = ("agent.c", "container.c", "container.h", "execs.c", "execs.h")
# what the guest loads, in this order (dependencies are added before each): virtio over PCI (q35) and over
# MMIO (microvm), the agent's virtio-serial port, the 9p share and the Pod's network interface
MODULES = ("virtio_pci", "virtio_mmio", "virtio_console", "9pnet_virtio", "9p", "virtio_net")


class GuestError(Exception):
    """The guest kernel or initramfs cannot be made or found."""


# ------------------------------------------------------------------------------------------- kernel

def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage (Debian's are xz-compressed): the stream after the xz magic."""
    for magic, opener in ((b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
                          (b"\x1f\x8b\x08", None), (b"\x28\xb5\x2f\xfd", None)):
        i = bzimage.find(magic)
        if i < 0 or opener is None:
            continue
        out = opener().decompress(bzimage[i:])
        if out[:4] == b"\x7fELF":
            return out
    raise GuestError("no xz-compressed ELF kernel found in the bzImage")


def module_depends(ko: str) -> list[str]:
    """The `depends=` of a module's .modinfo (uncompressed .ko, as Debian ships them)."""
    with open(ko, "rb") as f:
        data = f.read()
    i = data.find(b"\x00depends=")
    if i < 0:
        return []
    end = data.find(b"\x00", i + 1)
    deps = data[i + 9:end].decode()
    return [d for d in deps.split(",") if d]


def module_order(moddir: str, wanted: tuple[str, ...] = MODULES) -> list[str]:
    """Paths (relative to moddir) of the wanted modules and their dependencies, dependencies first."""
    index: dict[str, str] = {}
    for dp, _, files in os.walk(moddir):
        for fn in files:
            if fn.endswith(".ko"):
                index[fn[:-3].replace("-", "_")] = os.path.relpath(os.path.join(dp, fn), moddir)
    order: list[str] = []

    def visit(name: str, stack: tuple = ()) -> None:
        name = name.replace("-", "_")
        if name in order or name in stack:
            return
        if name not in index:
            raise GuestError(f"kernel module {name} not found in {moddir}")
        for d in module_depends(os.path.join(moddir, index[name])):
            visit(d, stack + (name,))
        order.append(name)

    for w in wanted:
        visit(w)
    return [index[n] for n in order]


def install_kernel(deb_root: str, dest_root: str = GUEST_DIR) -> str:
    """From an extracted linux-image deb: vmlinux and the modules the guest loads, under
    dest_root/<version>/. Returns that directory."""
    boot = os.path.join(deb_root, "boot")
    images = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))
    if not images:
        raise GuestError(f"no vmlinuz in {boot}")
    version = images[-1].removeprefix("vmlinuz-")
    dest = os.path.join(dest_root, version)
    os.makedirs(os.path.join(dest, "modules"), exist_ok=True)
    with open(os.path.join(boot, images[-1]), "rb") as f:
        elf = extract_vmlinux(f.read())
    _write_atomic(os.path.join(dest, "vmlinux"), elf)
    moddir = os.path.join(deb_root, "lib", "modules", version)
    order = module_order(moddir)
    for rel in order:
        shutil.copy2(os.path.join(moddir, rel), os.path.join(dest, "modules", os.path.basename(rel)))
    with open(os.path.join(dest, "modules", "order"), "w") as f:
        f.write("\n".join(os.path.basename(r) for r in order) + "\n")
    link = os.path.join(dest_root, "current")
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(version, tmp)
    os.replace(tmp, link)
    return dest


# ------------------------------------------------------------------------------------------- initramfs

def build_agent(out: str, cc: str = "gcc") -> None:
    """Compile the guest agent (a static binary: the guest has no libc of its own)."""
    if shutil.which(cc) is None:
        raise GuestError(f"{cc} is not installed (apt-get install gcc libc6-dev): it builds the VM guest agent")
    sources = [os.path.join(GUEST_SRC, s) for s in AGENT_SOURCES if s.endswith(".c")]
    r = subprocess.run([cc, "-static", "-Os", "-s", "-o", out + ".tmp", *sources], capture_output=True, text=True)
    if r.returncode != 0:
        raise GuestError(f"building the guest agent failed: {r.stderr.strip()[-2000:]}")
    os.replace(out + ".tmp", out)


class Cpio:
    """An uncompressed newc archive (the kernel unpacks it with no decompression)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.seen: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        name = name.lstrip("/")
        if name in self.seen:
            return
        self.seen.add(name)
        nb = name.encode() + b"\x00"
        hdr = "070701" + "".join(f"{v:08x}" for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\x00" * ((4 - (110 + len(nb)) % 4) % 4))
        self.buf.write(data)
        self.buf.write(b"\x00" * ((4 - len(data) % 4) % 4))

    def dir(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def agent_sha256() -> str:
    """What the initramfs's agent was built from (a change rebuilds it)."""
    h = hashlib.sha256()
    for s in AGENT_SOURCES:
        with open(os.path.join(GUEST_SRC, s), "rb") as f:
            h.update(s.encode() + b"\0" + f.read())
    return h.hexdigest()


def build_initrd(kernel_dir: str, agent: str) -> bytes:
    c = Cpio()
    for d in ("proc", "sys", "dev", "run", "tmp", "etc", "modules"):
        c.dir(d)
    with open(agent, "rb") as f:
        c.file("init", f.read(), 0o755)
    c.file("etc/passwd", b"root:x:0:0:root:/:/bin/false\n")
    c.file("etc/group", b"root:x:0:\n")
    with open(os.path.join(kernel_dir, "modules", "order")) as f:
        order = [ln.strip() for ln in f if ln.strip()]
    for m in order:
        with open(os.path.join(kernel_dir, "modules", m), "rb") as f:
            c.file(f"modules/{m}", f.read())
    c.file("modules.list", "".join(f"/modules/{m}\n" for m in order).encode())
    return c.bytes()


def install_initrd(kernel_dir: str) -> str:
    """Build the agent and the initramfs in a directory of their own, then put them in place: node agents
    (and one agent's Pods) that find the initramfs stale at once must not build over each other."""
    work = tempfile.mkdtemp(prefix=".build-", dir=kernel_dir)
    try:
        agent = os.path.join(work, "kubeclass-agent")
        build_agent(agent)
        data = build_initrd(kernel_dir, agent)
        os.replace(agent, os.path.join(kernel_dir, "kubeclass-agent"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = os.path.join(kernel_dir, "initrd.cpio")
    _write_atomic(path, data)
    _write_atomic(os.path.join(kernel_dir, "agent.sha256"), agent_sha256().encode())
    return path


def _built_sha(kernel_dir: str) -> str:
    try:
        with open(os.path.join(kernel_dir, "agent.sha256")) as f:
            return f.read().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------- lookup

class Guest:
    """The kernel and initramfs VM Pods boot, found on this node (or given with --vm-kernel / --vm-initrd)."""

    def __init__(self, kernel: str, initrd: str, version: str):
        self.kernel, self.initrd, self.version = kernel, initrd, version


def find(kernel: str | None = None, initrd: str | None = None, root: str | None = None) -> Guest:
    """The guest to boot, or GuestError saying what is missing. A stale initramfs (built from another agent
    source) is rebuilt."""
    root = root or os.environ.get("KUBECLASS_GUEST_DIR", GUEST_DIR)
    if kernel or initrd:
        if not (kernel and initrd):
            raise GuestError("--vm-kernel and --vm-initrd go together")
        for p in (kernel, initrd):
            if not os.path.isfile(p):
                raise GuestError(f"{p}: no such file")
        return Guest(kernel, initrd, os.path.basename(kernel))
    cur = os.path.join(root, "current")
    vmlinux = os.path.join(cur, "vmlinux")
    if not os.path.isfile(vmlinux):
        raise GuestError(f"no guest kernel in {root} (scripts/install.sh extracts Debian's)")
    kdir = os.path.realpath(cur)
    initrd_path = os.path.join(kdir, "initrd.cpio")
    want = agent_sha256()
    if _built_sha(kdir) != want or not os.path.isfile(initrd_path):
        with open(os.path.join(kdir, ".build.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)   # one build at a time; whoever waited finds it done
            if _built_sha(kdir) != want or not os.path.isfile(initrd_path):
                install_initrd(kdir)
    return Guest(vmlinux, initrd_path, os.path.basename(kdir))


def _write_atomic(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubeclass.node.vm.guestimage")
    p.add_argument("what", choices=["install"])
    p.add_argument("--deb-root", required=True, help="an extracted linux-image-*-amd64 package (dpkg-deb -x)")
    p.add_argument("--dest", default=GUEST_DIR)
    a = p.parse_args(argv)
    try:
        kdir = install_kernel(a.deb_root, a.dest)
        install_initrd(kdir)
    except (GuestError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"guest kernel and initramfs in {kdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def missing(root: str | None = None) -> str:
    """Why VM Pods cannot run on this node ("" when they can): no guest kernel, or no way to build the
    initramfs. Cheap: looks at files only."""
    root = root or os.environ.get("KUBECLASS_GUEST_DIR", GUEST_DIR)
    kdir = os.path.join(root, "current")
    if not os.path.isfile(os.path.join(kdir, "vmlinux")):
        return f"no guest kernel in {root} (scripts/install.sh extracts Debian's linux-image)"
    if not os.path.isfile(os.path.join(kdir, "initrd.cpio")) and shutil.which("gcc") is None:
        return "no guest initramfs and no gcc to build its agent (apt-get install gcc libc6-dev)"
    return ""
