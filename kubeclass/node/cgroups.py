"""Pod-level cgroups (cgroupfs driver, v1 or v2): /kubeclass/pod<uid> with the Pod's limits — the sum of
its containers' limits plus the RuntimeClass overhead, as kubelet sets them — and its containers'
cgroups below it (the runtime creates those from config.json's cgroupsPath)."""
from __future__ import annotations

import os
import shutil

ROOT = "/sys/fs/cgroup"
PARENT = "kubeclass"


def is_v2() -> bool:
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


def pod_path(uid: str) -> str:
    """The Pod's cgroup, relative to the hierarchy root (what cgroupsPath values start with)."""
    return f"/{PARENT}/pod{uid}"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def ensure_pod(uid: str, limits: dict) -> None:
    """Create the Pod's cgroup and write its limits (limits: cpu (cores, Fraction), memory (bytes),
    cpu_shares). Best effort where a controller is missing (a container without that limit)."""
    rel = pod_path(uid).lstrip("/")
    if is_v2():
        parent = os.path.join(ROOT, PARENT)
        os.makedirs(parent, exist_ok=True)
        for d in (ROOT, parent):
            try:
                _write(os.path.join(d, "cgroup.subtree_control"), "+cpu +memory +pids")
            except OSError:
                pass
        path = os.path.join(ROOT, rel)
        os.makedirs(path, exist_ok=True)
        if "memory" in limits:
            _write(os.path.join(path, "memory.max"), str(int(limits["memory"])))
        if "cpu" in limits:
            _write(os.path.join(path, "cpu.max"), f"{max(1000, int(limits['cpu'] * 100000))} 100000")
        _write(os.path.join(path, "cpu.weight"), str(max(1, min(10000, 1 + ((limits.get('cpu_shares', 2) - 2) * 9999) // 262142))))
        return
    for ctrl in ("cpu", "cpuacct", "memory", "pids", "cpuset"):
        base = os.path.join(ROOT, ctrl)
        if not os.path.isdir(base):
            continue
        path = os.path.join(base, rel)
        os.makedirs(path, exist_ok=True)
        if ctrl == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):   # a new cpuset is empty until given its parent's
                for d in (os.path.join(base, PARENT), path):
                    try:
                        if not open(os.path.join(d, f)).read().strip():
                            _write(os.path.join(d, f), open(os.path.join(os.path.dirname(d), f)).read().strip())
                    except OSError:
                        pass
    mem = os.path.join(ROOT, "memory", rel)
    cpu = os.path.join(ROOT, "cpu", rel)
    if "memory" in limits and os.path.isdir(mem):
        _write(os.path.join(mem, "memory.limit_in_bytes"), str(int(limits["memory"])))
    if os.path.isdir(cpu):
        if "cpu" in limits:
            _write(os.path.join(cpu, "cpu.cfs_period_us"), "100000")
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(max(1000, int(limits["cpu"] * 100000))))
        _write(os.path.join(cpu, "cpu.shares"), str(limits.get("cpu_shares", 2)))


def procs_files(uid: str) -> list[str]:
    """The cgroup.procs files that put a process in the Pod's cgroup (v1: one per hierarchy it has)."""
    rel = pod_path(uid).lstrip("/")
    if is_v2():
        return [os.path.join(ROOT, rel, "cgroup.procs")]
    return [p for p in (os.path.join(ROOT, c, rel, "cgroup.procs") for c in ("memory", "cpu", "cpuacct", "pids"))
            if os.path.exists(p)]


def raise_memory(uid: str, at_least: int) -> None:
    """Raise the Pod's memory limit, where it has one, to at_least bytes (a VM Pod's cgroup also holds
    QEMU; the guest's own cgroups enforce the containers' limits)."""
    rel = pod_path(uid).lstrip("/")
    path = os.path.join(ROOT, rel, "memory.max") if is_v2() else os.path.join(ROOT, "memory", rel, "memory.limit_in_bytes")
    try:
        cur = open(path).read().strip()
    except OSError:
        return
    if cur != "max" and int(cur) < at_least and int(cur) < 1 << 62:
        _write(path, str(at_least))


def read_limits(uid: str) -> dict:
    """The Pod cgroup's memory limit (bytes) and CPU quota (us per 100 ms), as tests and `describe` check."""
    rel = pod_path(uid).lstrip("/")
    out: dict = {}
    if is_v2():
        p = os.path.join(ROOT, rel)
        mem = open(os.path.join(p, "memory.max")).read().strip()
        out["memory"] = None if mem == "max" else int(mem)
        q = open(os.path.join(p, "cpu.max")).read().split()[0]
        out["cpu_quota"] = None if q == "max" else int(q)
        return out
    mem = int(open(os.path.join(ROOT, "memory", rel, "memory.limit_in_bytes")).read())
    out["memory"] = None if mem >= 1 << 62 else mem
    q = int(open(os.path.join(ROOT, "cpu", rel, "cpu.cfs_quota_us")).read())
    out["cpu_quota"] = None if q < 0 else q
    return out


def remove_pod(uid: str) -> None:
    rel = pod_path(uid).lstrip("/")
    bases = [ROOT] if is_v2() else [os.path.join(ROOT, c) for c in ("cpu", "memory", "pids", "cpuset", "cpuacct", "blkio",
                                                                       "devices", "freezer", "systemd")]
    for base in bases:
        path = os.path.join(base, rel)
        if not os.path.isdir(path):
            continue
        for d in sorted((os.path.join(dp) for dp, _, _ in os.walk(path)), key=len, reverse=True):
            try:
                os.rmdir(d)   # cgroup directories are removed with rmdir, children first
            except OSError:
                pass
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
