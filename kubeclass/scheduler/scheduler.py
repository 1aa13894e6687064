"""The scheduler process: informers on Nodes, Pods and RuntimeClasses through the API, the scheduling
queue, one scheduling cycle at a time, and binding cycles in flight concurrently through `pods/binding`,
exactly as an external scheduler talks to kube-apiserver. Failures set PodScheduled=False/Unschedulable
and post a `FailedScheduling` Warning from `default-scheduler`; successes a `Scheduled` event.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

import orjson

from ..client import ApiError, Client, now_rfc3339, path_for
from . import metrics
from .framework import FitError, Framework
from .nodeinfo import Cache, PodInfo
from .plugins.balanced_allocation import BalancedAllocation
from .plugins.default_preemption import DefaultPreemption
from .plugins.node_affinity import NodeAffinity
from .plugins.node_name import NodeName
from .plugins.node_ports import NodePorts
from .plugins.node_resources_fit import NodeResourcesFit
from .plugins.node_unschedulable import NodeUnschedulable
from .plugins.runtime_handler import RuntimeHandler
from .plugins.taint_toleration import TaintToleration
from .queue import SchedulingQueue

log = logging.getLogger("kubeclass.scheduler")
NAME = "default-scheduler"
DECISION_ANNOTATION = "scheduler.kubeclass.io/decision"


@dataclass
class Options:
    scheduler_name: str = NAME
    runtime_handler_filter: bool = True
    scoring_strategy: str = "LeastAllocated"
    percentage_of_nodes_to_score: int = 0
    record_decisions: bool = False
    max_binds_in_flight: int = 256
    seed: int | None = None
    leader_elect: bool = True
    identity: str = field(default_factory=lambda: f"kubeclass-scheduler-{random.getrandbits(32):08x}")


def build_framework(handlers: dict[str, str], opts: Options) -> Framework:
    filters = [NodeUnschedulable(), NodeName(), TaintToleration(), NodeAffinity(), NodePorts(),
               NodeResourcesFit(opts.scoring_strategy)]
    if opts.runtime_handler_filter:
        filters.insert(4, RuntimeHandler(handlers))
    by_name = {p.name: p for p in filters}
    scorers = [(by_name["TaintToleration"], 3), (by_name["NodeAffinity"], 2), (by_name["NodeResourcesFit"], 1),
               (BalancedAllocation(), 1)]
    return Framework(filters, scorers, post_filters=[DefaultPreemption()],
                     percentage_of_nodes_to_score=opts.percentage_of_nodes_to_score)


class Scheduler:
    def __init__(self, client: Client, opts: Options | None = None):
        self.client = client
        self.opts = opts or Options()
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.handlers: dict[str, str] = {}   # RuntimeClass -> handler
        self.framework = build_framework(self.handlers, self.opts)
        self.rng = random.Random(self.opts.seed)
        self.synced = {"nodes": asyncio.Event(), "pods": asyncio.Event(), "runtimeclasses": asyncio.Event()}
        self._binds = asyncio.Semaphore(self.opts.max_binds_in_flight)
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"scheduled": 0, "bound": 0, "unschedulable": 0, "bind_errors": 0}
        self.latencies: list[float] = []        # seconds from first seen in the queue to bound
        self._first_seen: dict[str, float] = {}
        self._attempts: dict[str, int] = {}     # scheduling attempts of a Pod not yet bound
        self.last_decision: dict[str, dict] = {}
        profile = self.opts.scheduler_name
        self._m = {r: (metrics.ATTEMPTS.labels(r, profile), metrics.ATTEMPT_DURATION.labels(r, profile))
                   for r in ("scheduled", "unschedulable", "error")}
        metrics.PENDING.clear()
        for q in ("active", "backoff", "unschedulable"):
            metrics.PENDING.labels(q).set_function(lambda q=q: self.queue.pending_counts()[q])

    # ------------------------------------------------------------------ informers
    def _responsible(self, pod: dict) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") or NAME) == self.opts.scheduler_name

    def on_node(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            live = {n["metadata"]["name"] for n in obj.get("items") or []}
            for name in [n for n in self.cache.nodes if n not in live]:
                self.cache.remove_node(name)
            for n in obj.get("items") or []:
                self.cache.upsert_node(n)
            self.synced["nodes"].set()
            self.queue.move_all()
            return
        if typ == "DELETED":
            self.cache.remove_node(obj["metadata"]["name"])
            return
        self.cache.upsert_node(obj)
        self.queue.move_all()   # node added or changed: unschedulable pods may fit now

    def on_pod(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            for p in obj.get("items") or []:
                p.setdefault("apiVersion", "v1")
                p.setdefault("kind", "Pod")
                self.on_pod("ADDED", p)
            self.synced["pods"].set()
            return
        md = obj["metadata"]
        key = f"{md.get('namespace', '')}/{md['name']}"
        uid = md.get("uid", "")
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if typ == "DELETED" or phase in ("Succeeded", "Failed"):
            if uid in self.cache.pod_node:
                self.cache.remove_pod(uid)
                self.queue.move_all()   # resources freed
            self.queue.delete(key)
            self._first_seen.pop(key, None)
            self._attempts.pop(key, None)
            return
        if spec.get("nodeName"):
            self.cache.add_pod(obj, spec["nodeName"])
            self.queue.delete(key)
            return
        if not self._responsible(obj) or md.get("deletionTimestamp"):
            return
        self._first_seen.setdefault(key, time.monotonic())
        if typ == "ADDED":
            self.queue.add(obj)
        else:
            self.queue.update(obj)

    def on_runtimeclass(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            self.handlers.clear()
            for rc in obj.get("items") or []:
                self.handlers[rc["metadata"]["name"]] = rc.get("handler", "")
            self.synced["runtimeclasses"].set()
            return
        name = obj["metadata"]["name"]
        if typ == "DELETED":
            self.handlers.pop(name, None)
        else:
            self.handlers[name] = obj.get("handler", "")
        self.queue.move_all()

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        c = self.client
        self._spawn(c.informer("/api/v1/nodes", self.on_node, stop))
        self._spawn(c.informer("/api/v1/pods", self.on_pod, stop))
        self._spawn(c.informer("/apis/node.k8s.io/v1/runtimeclasses", self.on_runtimeclass, stop))
        for ev in self.synced.values():
            await ev.wait()
        log.info("scheduler %s: caches synced (%d nodes), scheduling", self.opts.identity, len(self.cache.nodes))
        while not stop.is_set():
            pod = await self.queue.pop()
            t0 = time.monotonic()
            key = self.queue.key(pod)
            self._attempts[key] = self._attempts.get(key, 0) + 1
            try:
                result = await self.schedule_one(pod)
            except Exception:  # noqa: BLE001 - one pod's failure must not stop the scheduler
                log.exception("scheduling %s failed", key)
                self.queue.requeue_error(key)
                result = "error"
            count, duration = self._m[result]
            count.inc()
            duration.observe(time.monotonic() - t0)

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def schedule_one(self, pod: dict) -> str:
        """One scheduling attempt; its result as scheduler_schedule_attempts_total counts it."""
        key = self.queue.key(pod)
        pi = PodInfo.of(pod)
        try:
            state, result = self.framework.schedule(self.cache, pi, explain=self.opts.record_decisions, rng=self.rng)
        except FitError as e:
            await self._unschedulable(pod, key, e, getattr(e, "verdicts", {}))
            return "unschedulable"
        node = result.node
        if self.opts.record_decisions:
            self.last_decision[key] = {"node": node, "verdicts": result.verdicts, "scores": result.scores}
        st = self.framework.reserve(state, pi, node) or self.framework.permit(state, pi, node)
        if st is not None:
            self.queue.requeue_error(key)
            return "error"
        self.cache.add_pod(pod, node, assumed=True)   # assume: the next cycle sees the node as taken
        self.stats["scheduled"] += 1
        self.queue.done(key)
        await self._binds.acquire()
        self._spawn(self._bind(pod, key, node))
        return "scheduled"

    async def _bind(self, pod: dict, key: str, node: str) -> None:
        md = pod["metadata"]
        try:
            body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md.get("uid")},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
            await self.client.create(path_for("", "v1", "pods", md["namespace"], md["name"], "binding"), body)
            self.stats["bound"] += 1
            t0 = self._first_seen.pop(key, None)
            attempts = metrics.attempts_label(self._attempts.pop(key, 1))
            if t0 is not None:
                self.latencies.append(time.monotonic() - t0)
                metrics.POD_DURATION.labels(attempts).observe(self.latencies[-1])
                metrics.POD_SLI_DURATION.labels(attempts).observe(self.latencies[-1])
            rc = (pod.get("spec") or {}).get("runtimeClassName")
            metrics.BY_HANDLER.labels(self.handlers.get(rc, "") if rc else "").inc()
            self._spawn(self.client.event(pod, "Scheduled", f"Successfully assigned {md['namespace']}/{md['name']} to {node}",
                                          component=self.opts.scheduler_name, action="Binding"))
            if self.opts.record_decisions and key in self.last_decision:
                self._spawn(self._record(pod, self.last_decision.pop(key)))
        except ApiError as e:
            self.stats["bind_errors"] += 1
            self.cache.remove_pod(md.get("uid", ""))   # forget the assumption
            if e.status != 404 and "already assigned" not in e.body.get("message", ""):
                log.warning("binding %s to %s failed: %s", key, node, e)
                self.queue.add(pod)
                self.queue.requeue_error(key)
        except Exception:  # noqa: BLE001
            self.stats["bind_errors"] += 1
            self.cache.remove_pod(md.get("uid", ""))
            log.exception("binding %s failed", key)
            self.queue.add(pod)
            self.queue.requeue_error(key)
        finally:
            self._binds.release()

    async def _unschedulable(self, pod: dict, key: str, err: FitError, verdicts: dict) -> None:
        self.stats["unschedulable"] += 1
        msg = err.message()
        md = pod["metadata"]
        preempt = getattr(err, "state", {}).get("preemption")
        self.queue.requeue_unschedulable(key)
        if self.opts.record_decisions:
            self.last_decision[key] = {"node": None, "message": msg, "verdicts": verdicts}
            await self._record(pod, self.last_decision[key])
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        cur = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if cur is None or cur.get("message") != msg or cur.get("status") != "False":
            try:
                await self.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"], "status"),
                                        {"status": {"conditions": [cond]}})
            except ApiError:
                pass
        self._spawn(self.client.event(pod, "FailedScheduling", msg, type="Warning", component=self.opts.scheduler_name,
                                      action="Scheduling"))
        if preempt:
            await self._preempt(pod, *preempt)

    async def _preempt(self, pod: dict, node: str, victims: list[PodInfo]) -> None:
        md = pod["metadata"]
        for v in victims:
            vmd = v.pod["metadata"]
            try:
                await self.client.delete(path_for("", "v1", "pods", vmd["namespace"], vmd["name"]),
                                         {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                          "preconditions": {"uid": vmd.get("uid")}})
                self._spawn(self.client.event(v.pod, "Preempted", f"Preempted by pod {md.get('uid', '')} on node {node}",
                                              component=self.opts.scheduler_name, action="Preempting"))
            except ApiError as e:
                log.warning("preempting %s/%s failed: %s", vmd["namespace"], vmd["name"], e)
        try:
            await self.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"], "status"),
                                    {"status": {"nominatedNodeName": node}})
        except ApiError:
            pass

    async def _record(self, pod: dict, decision: dict) -> None:
        md = pod["metadata"]
        try:
            await self.client.patch(path_for("", "v1", "pods", md["namespace"], md["name"]),
                                    {"metadata": {"annotations": {DECISION_ANNOTATION: orjson.dumps(decision).decode()}}}, kind="merge")
        except ApiError:
            pass
