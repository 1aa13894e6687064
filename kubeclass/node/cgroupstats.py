"""What the kernel charged to a cgroup, a process and the node: CPU time and memory, read from cgroupfs (v1 or
v2) and /proc. Working set as cAdvisor computes it (usage minus inactive file pages), so `kubectl top` figures
mean what they mean upstream."""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import cgroups

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    cpu_ns: int = 0          # cumulative CPU time
    memory: int = 0          # bytes charged (page cache included)
    working_set: int = 0     # memory minus inactive file pages
    rss: int = 0             # anonymous memory
    page_faults: int = 0
    major_page_faults: int = 0

    def __add__(self, o: "Usage") -> "Usage":
        return Usage(*(a + b for a, b in zip(self.astuple(), o.astuple())))

    def __sub__(self, o: "Usage") -> "Usage":
        return Usage(*(max(0, a - b) for a, b in zip(self.astuple(), o.astuple())))

    def astuple(self) -> tuple[int, ...]:
        return (self.cpu_ns, self.memory, self.working_set, self.rss, self.page_faults, self.major_page_faults)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _kv(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def cgroup(rel: str) -> Usage | None:
    """A cgroup's usage (rel: its path below the hierarchy root, e.g. cgroups.pod_path(uid)); None when it
    does not exist."""
    rel = rel.lstrip("/")
    if cgroups.is_v2():
        base = os.path.join(cgroups.ROOT, rel)
        cur = _read(os.path.join(base, "memory.current"))
        if cur is None:
            return None
        st, cpu = _kv(_read(os.path.join(base, "memory.stat"))), _kv(_read(os.path.join(base, "cpu.stat")))
        mem = int(cur)
        return Usage(cpu.get("usage_usec", 0) * 1000, mem, max(0, mem - st.get("inactive_file", 0)), st.get("anon", 0),
                     st.get("pgfault", 0), st.get("pgmajfault", 0))
    cur = _read(os.path.join(cgroups.ROOT, "memory", rel, "memory.usage_in_bytes"))
    if cur is None:
        return None
    st = _kv(_read(os.path.join(cgroups.ROOT, "memory", rel, "memory.stat")))
    cpu = _read(os.path.join(cgroups.ROOT, "cpuacct", rel, "cpuacct.usage"))
    mem = int(cur)
    return Usage(int(cpu) if cpu else 0, mem, max(0, mem - st.get("total_inactive_file", 0)), st.get("total_rss", 0),
                 st.get("total_pgfault", 0), st.get("total_pgmajfault", 0))


def cgroup_pids(rel: str) -> list[int]:
    """The processes in a cgroup and the cgroups below it."""
    rel = rel.lstrip("/")
    base = os.path.join(cgroups.ROOT, rel) if cgroups.is_v2() else os.path.join(cgroups.ROOT, "memory", rel)
    pids: list[int] = []
    for dirpath, _, files in os.walk(base):
        if "cgroup.procs" in files:
            pids += [int(p) for p in (_read(os.path.join(dirpath, "cgroup.procs")) or "").split()]
    return pids


def process(pid: int) -> Usage | None:
    """One process's CPU time (user + system, its threads included) and resident memory."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    f = stat[stat.rfind(")") + 2:].split()
    # fields from 3 (state): minflt = 10, majflt = 12, utime = 14, stime = 15, rss = 24 (pages)
    rss = int(f[21]) * os.sysconf("SC_PAGE_SIZE")
    cpu = (int(f[11]) + int(f[12])) * 1_000_000_000 // CLK_TCK   # clock ticks: 10 ms steps
    try:   # the threads' run time in ns where the scheduler keeps it (threads that exited are not in it)
        cpu = sum(int((_read(f"/proc/{pid}/task/{t}/schedstat") or "0").split()[0]) for t in os.listdir(f"/proc/{pid}/task"))
    except (OSError, ValueError, IndexError):
        pass
    return Usage(cpu, rss, rss, rss, int(f[7]), int(f[9]))


def cmdline(pid: int) -> str:
    return (_read(f"/proc/{pid}/cmdline") or "").split("\0", 1)[0]


def node() -> tuple[Usage, int]:
    """The node's usage (CPU busy time from /proc/stat; memory: total minus free, working set total minus
    available) and its available memory."""
    mi = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        mi[k] = int(v.split()[0]) * 1024 if v.split() else 0
    first = (_read("/proc/stat") or "cpu 0").splitlines()[0].split()[1:]
    ticks = [int(x) for x in first] + [0] * 8
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]   # user nice system irq softirq steal
    total, avail = mi.get("MemTotal", 0), mi.get("MemAvailable", 0)
    vm = _kv(_read("/proc/vmstat"))
    return Usage(busy * 1_000_000_000 // CLK_TCK, total - mi.get("MemFree", 0), total - avail,
                 mi.get("AnonPages", 0), vm.get("pgfault", 0), vm.get("pgmajfault", 0)), avail
