"""Measured runtime overhead, published: every podstats.INTERVAL the agent reads what each Pod's sandbox cost
beyond its containers (podstats.py) and
- gives the Pod a condition `kubeclass.io/OverheadWithinPodFixed` (True / False against the Pod's
  spec.overhead, which RuntimeClass admission copied from its class; Unknown when it declares none), with
  the figures in its message, and a Warning event OverheadExceeded the first time it goes over;
- keeps the annotation `runtimeclass.kubeclass.io/measured-overhead` on each RuntimeClass whose handler it
  ran Pods for current: per node, the number of Pods measured and the p95 of their sandboxes' CPU and memory,
  so `kubectl describe runtimeclass` shows what the class really costs next to what it declares."""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time

from ..api import quantity
from ..client import ApiError, TransportError, path_for
from . import podstats

log = logging.getLogger("kubeclass.node")

CONDITION = "kubeclass.io/OverheadWithinPodFixed"
ANNOTATION = "runtimeclass.kubeclass.io/measured-overhead"
PUBLISH_EVERY = 60.0


def mem_str(b: int) -> str:
    """Bytes as Mi rounded up (what a podFixed would need), or Ki below one Mi."""
    if b < 1 << 20:
        return f"{math.ceil(b / 1024)}Ki"
    return f"{math.ceil(b / (1 << 20))}Mi"


def cpu_str(nanocores: int) -> str:
    return f"{math.ceil(nanocores / 1_000_000)}m"


def p95(values: list[int]) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)] if s else 0


def verdict(memory: int, nanocores: int, declared: dict | None) -> tuple[str, str, str]:
    """(status, reason, message) of the condition for a sandbox using memory bytes and nanocores."""
    used = f"cpu {cpu_str(nanocores)}, memory {mem_str(memory)}"
    if not declared:
        return "Unknown", "NoPodFixed", f"the sandbox uses {used}; the Pod declares no overhead"
    over = []
    if "memory" in declared and memory > quantity.value(declared["memory"]):
        over.append(f"memory {mem_str(memory)} > {declared['memory']}")
    if "cpu" in declared and nanocores > quantity.value(declared["cpu"]) * 1_000_000_000:
        over.append(f"cpu {cpu_str(nanocores)} > {declared['cpu']}")
    decl = ", ".join(f"{k} {declared[k]}" for k in ("cpu", "memory") if k in declared)
    if over:
        return "False", "ExceedsPodFixed", f"the sandbox uses more than the Pod's overhead declares: {'; '.join(over)}"
    return "True", "WithinPodFixed", f"the sandbox uses {used}; the Pod's overhead declares {decl}"


class OverheadReporter:
    def __init__(self, stats: podstats.Stats, mgr, client, node_name: str):
        self.stats, self.mgr, self.client, self.node_name = stats, mgr, client, node_name
        self.published: dict[str, tuple[float, str]] = {}   # RuntimeClass -> (when, what)

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as e:   # never let one bad reading stop the measurements
                log.warning("node %s: overhead measurement failed: %s", self.node_name, e)
            await asyncio.sleep(podstats.INTERVAL)

    async def once(self) -> None:
        r, rates = await self.stats.sample()
        by_handler: dict[str, list[tuple[int, int]]] = {}
        rows: list[tuple[str, str, str, int, int]] = []
        for p in r.pods:
            sb, w = p.sandbox, p.worker
            if sb is None or ("sbx", w.uid) not in rates:
                continue
            cpu = rates[("sbx", w.uid)][0]
            by_handler.setdefault(getattr(w.handler, "name", ""), []).append((sb.working_set, cpu))
            md = w.pod["metadata"]
            rows.append((getattr(w.handler, "name", ""), md.get("namespace", ""), md["name"], sb.working_set, cpu))
            if not (w.pod.get("spec") or {}).get("runtimeClassName"):
                continue   # no class, nothing declared: the figures still count for the handler
            status, reason, message = verdict(sb.working_set, cpu, (w.pod.get("spec") or {}).get("overhead"))
            prev = getattr(w, "overhead_condition", None)
            if prev is None or prev["status"] != status or prev["reason"] != reason or self._moved(prev, sb.working_set, cpu):
                w.overhead_condition = {"type": CONDITION, "status": status, "reason": reason, "message": message,
                                        "_memory": sb.working_set, "_cpu": cpu}
                if status == "False":
                    w.event("OverheadExceeded", f"Measured sandbox overhead exceeds the Pod's declared overhead "
                            f"(RuntimeClass {(w.pod.get('spec') or {}).get('runtimeClassName') or '<none>'}): "
                            f"{message.split(': ', 1)[-1]}", type="Warning", once=True)
                    w.flush_events()
                w.wake.set()
        m = getattr(self.mgr, "metrics", None)
        if m is not None:
            m.set_overhead(rows)
        await self.publish(by_handler)

    @staticmethod
    def _moved(prev: dict, memory: int, cpu: int) -> bool:
        """Worth a status update: memory moved by 1 MiB and 10 %, or CPU by 5m and 50 %."""
        dm, dc = abs(memory - prev["_memory"]), abs(cpu - prev["_cpu"])
        return (dm > 1 << 20 and dm > prev["_memory"] / 10) or (dc > 5_000_000 and dc > prev["_cpu"] / 2)

    async def publish(self, by_handler: dict[str, list[tuple[int, int]]]) -> None:
        classes = getattr(self.mgr, "_classes", {}) or {}
        now = time.monotonic()
        for name, rc in list(classes.items()):
            samples = by_handler.get(rc.get("handler", ""))
            if not samples:
                continue
            figures = {"pods": len(samples), "cpu": cpu_str(p95([c for _, c in samples])),
                       "memory": mem_str(p95([m for m, _ in samples])),
                       "measuredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            what = json.dumps({k: v for k, v in figures.items() if k != "measuredAt"}, sort_keys=True)
            last = self.published.get(name)
            if last is not None and last[1] == what and now - last[0] < PUBLISH_EVERY:
                continue
            await self._annotate(name, figures)
            self.published[name] = (now, what)

    async def _annotate(self, name: str, figures: dict) -> None:
        """Merge this node's figures into the class's annotation (a JSON object by node), with the class's
        resourceVersion as precondition so two nodes never drop each other's."""
        path = path_for("node.k8s.io", "v1", "runtimeclasses", None, name)
        for _ in range(3):
            try:
                rc = await self.client.get(path)
                try:
                    cur = json.loads((rc["metadata"].get("annotations") or {}).get(ANNOTATION) or "{}")
                    if not isinstance(cur, dict):
                        cur = {}
                except ValueError:
                    cur = {}
                cur[self.node_name] = figures
                await self.client.patch(path, {"metadata": {"resourceVersion": rc["metadata"]["resourceVersion"],
                                                            "annotations": {ANNOTATION: json.dumps(cur, sort_keys=True)}}},
                                        kind="merge")
                return
            except ApiError as e:
                if e.status != 409:
                    log.warning("node %s: could not annotate RuntimeClass %s: %s", self.node_name, name, e)
                    return
            except TransportError:
                return
