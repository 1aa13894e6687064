"""Mount points as the kernel lists them (/proc/self/mountinfo). os.path.ismount cannot see a bind mount of a
directory of the same filesystem (same st_dev), so every check that guards an unmount or a recursive removal
asks here instead. Binds are made with mount(2) itself (through ctypes): a `mount` process costs 3-5 ms,
and a VM Pod's start makes three."""
from __future__ import annotations

import ctypes
import os
import subprocess

MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, flags: int) -> None:
    if _libc.mount(source.encode() if source else None, target.encode(), None, ctypes.c_ulong(flags), None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source or ''} {target}: {os.strerror(e)}")


def bind(source: str, target: str) -> None:
    """mount --bind source target (not recursive)."""
    _mount(source, target, MS_BIND)


def make_shared(path: str) -> None:
    """mount --make-shared path."""
    _mount(None, path, MS_SHARED)


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            return [_unescape(line.split()[4]) for line in f if len(line.split()) > 4]
    except OSError:
        return []


def is_mounted(path: str) -> bool:
    return os.path.realpath(path) in set(mount_points())


def mounted_under(path: str) -> list[str]:
    """Mount points at or below path, deepest first."""
    root = os.path.realpath(path)
    found = [m for m in mount_points() if m == root or m.startswith(root + "/")]
    return sorted(set(found), key=len, reverse=True)


def unmount_all(path: str) -> bool:
    """Lazily unmount everything at or below path; True when nothing is left mounted there."""
    for m in mounted_under(path):
        subprocess.run(["umount", "-l", m], capture_output=True)
    return not mounted_under(path)
