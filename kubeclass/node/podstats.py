"""The node's resource figures: kubelet's /stats/summary (node, Pods, containers: CPU and memory), and what each
Pod's sandbox costs beyond its containers — its measured runtime overhead.

Each sandbox kind says what its containers used as its runtime accounts for them (sandbox.usage()); the Pod's
cgroup says what the whole Pod was charged. The difference is the sandbox's own cost: nothing much for runc,
gVisor's Sentry and Gofer, a VM's QEMU and guest kernel. CPU rates (usageNanoCores) are taken between the
current reading and one at least a second older; a loop reads every INTERVAL seconds, so a rate is ready
when `kubectl top` asks, and publishes each Pod's overhead (overhead.py)."""
from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass, field

from . import cgroupstats
from .cgroupstats import Usage

INTERVAL = 10.0
MIN_WINDOW = 1.0


def _rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodReading:
    worker: object
    pod: Usage | None
    containers: dict[str, Usage]

    @property
    def sandbox(self) -> Usage | None:
        """What the Pod's cgroup was charged beyond its containers (None before a container runs)."""
        if self.pod is None or not self.containers:
            return None
        total = Usage()
        for u in self.containers.values():
            total = total + u
        return self.pod - total


@dataclass
class Reading:
    wall: float
    mono: float
    node: Usage
    available: int
    pods: list[PodReading] = field(default_factory=list)

    def cpu(self) -> dict[tuple, int]:
        out = {("node",): self.node.cpu_ns}
        for p in self.pods:
            uid = p.worker.uid
            if p.pod is not None:
                out[("pod", uid)] = p.pod.cpu_ns
            for n, u in p.containers.items():
                out[("ctr", uid, n)] = u.cpu_ns
            if p.sandbox is not None:
                out[("sbx", uid)] = p.sandbox.cpu_ns
        return out


class Stats:
    """Readings of one node's Pods (mgr: the PodManager) and the CPU rates between them."""

    def __init__(self, mgr, node_name: str):
        self.mgr, self.node_name = mgr, node_name
        self.history: list[tuple[float, dict[tuple, int]]] = []   # (monotonic time, CPU ns by key), oldest first
        self.boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)

    async def read(self) -> Reading:
        node, avail = cgroupstats.node()
        r = Reading(time.time(), time.monotonic(), node, avail)
        for w in list(self.mgr.workers.values()):
            sb = getattr(w, "sandbox", None)
            if sb is None or not getattr(w, "sandbox_ready", False) or w.finished:
                continue
            try:
                pod, ctrs = await sb.usage()
            except Exception:   # a sandbox going away while it is read
                continue
            r.pods.append(PodReading(w, pod, ctrs))
        return r

    async def sample(self) -> tuple[Reading, dict[tuple, tuple[int, float]]]:
        """A reading and, per key, (usageNanoCores, window seconds) against the newest earlier reading at least
        MIN_WINDOW old (the first call waits for one)."""
        r = await self.read()
        base = [h for h in self.history if r.mono - h[0] >= MIN_WINDOW]
        if not base:
            self.history.append((r.mono, r.cpu()))
            await asyncio.sleep(MIN_WINDOW)
            r = await self.read()
            base = [h for h in self.history if r.mono - h[0] >= MIN_WINDOW]
        cpu = r.cpu()
        rates: dict[tuple, tuple[int, float]] = {}
        if base:
            t0, before = base[-1]
            dt = r.mono - t0
            for k, v in cpu.items():
                if k in before:
                    rates[k] = (max(0, int((v - before[k]) / dt)), dt)
        if not self.history or r.mono - self.history[-1][0] >= INTERVAL / 2:
            self.history = (self.history + [(r.mono, cpu)])[-3:]
        return r, rates

    # ---------------------------------------------------------------- kubelet's Summary API (stats/v1alpha1)
    def summary(self, r: Reading, rates: dict[tuple, tuple[int, float]]) -> dict:
        t = _rfc3339(r.wall)

        def cpu(key: tuple, u: Usage) -> dict:
            out = {"time": t, "usageCoreNanoSeconds": u.cpu_ns}
            if key in rates:
                out["usageNanoCores"] = rates[key][0]
            return out

        def mem(u: Usage, available: int | None = None) -> dict:
            out = {"time": t, "usageBytes": u.memory, "workingSetBytes": u.working_set, "rssBytes": u.rss,
                   "pageFaults": u.page_faults, "majorPageFaults": u.major_page_faults}
            if available is not None:
                out = {"time": t, "availableBytes": available, **{k: v for k, v in out.items() if k != "time"}}
            return out

        pods = []
        for p in r.pods:
            w = p.worker
            md = w.pod["metadata"]
            containers = []
            for c in w.containers:
                u = p.containers.get(c.name)
                if u is None:
                    continue
                containers.append({"name": c.name, "startTime": c.started_at or t, "cpu": cpu(("ctr", w.uid, c.name), u),
                                   "memory": mem(u)})
            e = {"podRef": {"name": md["name"], "namespace": md.get("namespace", ""), "uid": w.uid},
                 "startTime": w.start_time or t, "containers": containers}
            if p.pod is not None:
                e["cpu"], e["memory"] = cpu(("pod", w.uid), p.pod), mem(p.pod)
            sb = p.sandbox
            if sb is not None:   # ours: what the sandbox itself used (the Pod's usage minus its containers')
                e["sandbox"] = {"runtimeHandler": getattr(getattr(w, "handler", None), "name", ""),
                                "cpu": cpu(("sbx", w.uid), sb), "memory": mem(sb)}
            pods.append(e)
        return {"node": {"nodeName": self.node_name, "startTime": _rfc3339(self.boot),
                         "cpu": cpu(("node",), r.node), "memory": mem(r.node, r.available)},
                "pods": pods}
