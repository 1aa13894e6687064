"""The node lifecycle controller (kube-controller-manager's node lifecycle and taint eviction controllers):
every --node-monitor-period it looks at each Node's Lease and status; a Node silent for longer than
--node-monitor-grace-period goes Ready=Unknown, Nodes get and lose the unreachable / not-ready taints as
their Ready condition says, and Pods on NoExecute-tainted Nodes are evicted when their tolerations run out
(the decisions: kubeclass/api/nodelifecycle.py). Simulated (KWOK) Nodes are left to the simulator, which
keeps them Ready.

Started by `kubeclass up` in its process (the controllers command of the workloads issue will host it)."""
from __future__ import annotations

import asyncio
import datetime
import logging

from ..api import nodelifecycle as nl
from ..client import ApiError, Client, path_for
from ..httpclient import TransportError
from .simulated_nodes import is_fake

log = logging.getLogger("kubeclass.nodelifecycle")


class NodeLifecycle:
    def __init__(self, client: Client, grace: float = 40.0, period: float = 5.0):
        self.client, self.grace, self.period = client, grace, period
        self.first_seen: dict[str, datetime.datetime] = {}
        self.evicting: set[str] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.sync(datetime.datetime.now(datetime.timezone.utc))
            except (ApiError, TransportError) as e:
                log.warning("node lifecycle: %s", e)
            await asyncio.sleep(self.period)

    async def sync(self, now: datetime.datetime) -> None:
        nodes = (await self.client.list(path_for("", "v1", "nodes")))["items"]
        leases = {ls["metadata"]["name"]: ls for ls in
                  (await self.client.list(path_for("coordination.k8s.io", "v1", "leases", "kube-node-lease")))["items"]}
        names = {n["metadata"]["name"] for n in nodes}
        for gone in set(self.first_seen) - names:
            del self.first_seen[gone]
        tainted: dict[str, list[dict]] = {}
        for node in nodes:
            if is_fake(node):
                continue
            name = node["metadata"]["name"]
            seen = self.first_seen.setdefault(name, now)
            if (now - nl.last_heartbeat(node, leases.get(name), seen)).total_seconds() > self.grace:
                conds = nl.unknown_conditions(node, now)
                if conds is not None:
                    log.info("node %s: no heartbeat for %.0f s: status Unknown", name, self.grace)
                    node = await self._patch(path_for("", "v1", "nodes", None, name, "status"), {"status": {"conditions": conds}}) or node
                    await self.client.event({"kind": "Node", "apiVersion": "v1", **node}, "NodeNotReady",
                                            f"Node {name} status is now: NodeNotReady", component="node-controller")
            taints = nl.desired_taints(node, now)
            if taints is not None:
                node = await self._patch(path_for("", "v1", "nodes", None, name), {"spec": {"taints": taints}}) or node
            noexec = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
            if noexec:
                tainted[name] = noexec
        if tainted:
            await self._evict(tainted, now)

    async def _evict(self, tainted: dict[str, list[dict]], now: datetime.datetime) -> None:
        pods = (await self.client.list(path_for("", "v1", "pods")))["items"]
        for pod in pods:
            md, spec = pod["metadata"], pod.get("spec") or {}
            node = spec.get("nodeName")
            if node not in tainted or md.get("deletionTimestamp"):
                continue
            when = nl.eviction_time(pod, tainted[node])
            if when is None or (when is not True and when > now) or md["uid"] in self.evicting:
                continue
            self.evicting.add(md["uid"])
            log.info("evicting pod %s/%s from node %s (NoExecute taints)", md["namespace"], md["name"], node)
            await self.client.event({"kind": "Pod", "apiVersion": "v1", **pod}, "TaintManagerEviction",
                                    f"Marking for deletion Pod {md['namespace']}/{md['name']}", component="taint-eviction-controller")
            try:
                await self.client.delete(path_for("", "v1", "pods", md["namespace"], md["name"]),
                                         {"preconditions": {"uid": md["uid"]}})
            except ApiError as e:
                if e.status not in (404, 409):
                    self.evicting.discard(md["uid"])
                    log.warning("evicting %s/%s: %s", md["namespace"], md["name"], e)

    async def _patch(self, path: str, body: dict) -> dict | None:
        try:
            return await self.client.patch(path, body, kind="merge")
        except ApiError as e:
            if e.status != 404:
                log.warning("node lifecycle: %s: %s", path, e)
            return None
