"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics) as metrics-server serves it, so `kubectl top` works: the API
server asks each Ready node agent for its /stats/summary (kubelet's Summary API) and answers from those figures,
kept for RESOLUTION seconds as metrics-server keeps its last scrape. A node without an agent (a simulated one)
or one that does not answer is left out, as metrics-server leaves out nodes it could not scrape.

Beyond metrics-server: a PodMetrics carries `sandbox`, the usage of the Pod's sandbox beyond its containers (the
measured runtime overhead: gVisor's Sentry and Gofer, a VM's QEMU) and the runtime handler that ran it."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from ..api import errors, quantity, registry
from ..api.selectors import LabelSelector, SelectorError
from . import podstreams

RESOLUTION = 5.0
WINDOW = "10s"   # the agents' reading interval (node/podstats.py), over which CPU rates are taken
GV = "metrics.k8s.io/v1beta1"


def cpu_quantity(nanocores: int) -> str:
    """As metrics-server's resource.NewScaledQuantity(nanocores, Nano), printed canonically."""
    return quantity.canonical(f"{int(nanocores)}n")


def memory_quantity(b: int) -> str:
    """As metrics-server's resource.NewQuantity(bytes, BinarySI)."""
    return quantity.canonical_binary(int(b))


def _usage(cpu: dict | None, mem: dict | None) -> dict:
    return {"cpu": cpu_quantity((cpu or {}).get("usageNanoCores", 0)), "memory": memory_quantity((mem or {}).get("workingSetBytes", 0))}


class MetricsAPI:
    def __init__(self, store, node_client):
        self.store, self.node_client = store, node_client
        self._scrape: tuple[float, dict[str, dict]] | None = None
        self._lock = asyncio.Lock()

    def _nodes(self) -> list[dict]:
        nodes = self.store.list_objects(registry.BY_PATH[("", "v1", "nodes")].key_prefix(None))
        return [n for n in nodes if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (n.get("status") or {}).get("conditions") or [])]

    async def _fetch(self, node: dict) -> tuple[str, dict | None]:
        name = node["metadata"]["name"]
        try:
            base = podstreams.agent_base(node)
            async with self.node_client.session.get(base + "/stats/summary", timeout=aiohttp.ClientTimeout(total=8)) as r:
                if r.status != 200:
                    return name, None
                return name, orjson.loads(await r.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return name, None

    async def summaries(self) -> dict[str, dict]:
        """node name -> its Summary (nodes that answered), at most RESOLUTION seconds old."""
        async with self._lock:
            if self._scrape is not None and time.monotonic() - self._scrape[0] < RESOLUTION:
                return self._scrape[1]
            nodes = [n for n in self._nodes() if not (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node")]
            got = await asyncio.gather(*(self._fetch(n) for n in nodes))
            out = {name: s for name, s in got if s is not None}
            self._scrape = (time.monotonic(), out)
            return out

    # ------------------------------------------------------------------ objects
    def _labels(self, key: str) -> dict:
        ent = self.store.get(key)
        return ((ent.obj["metadata"].get("labels") or {}) if ent is not None else None) or {}

    def node_metrics(self, name: str, s: dict) -> dict:
        n = s.get("node") or {}
        cpu = n.get("cpu") or {}
        md = {"name": name, "creationTimestamp": cpu.get("time")}
        labels = self._labels(registry.BY_PATH[("", "v1", "nodes")].key(None, name))
        if labels:
            md["labels"] = labels
        return {"kind": "NodeMetrics", "apiVersion": GV, "metadata": md,
                "timestamp": cpu.get("time"), "window": WINDOW, "usage": _usage(cpu, n.get("memory"))}

    def pod_metrics(self, p: dict) -> dict | None:
        ref = p.get("podRef") or {}
        key = registry.BY_PATH[("", "v1", "pods")].key(ref.get("namespace"), ref.get("name", ""))
        ent = self.store.get(key)
        if ent is None or ent.obj["metadata"].get("uid") != ref.get("uid"):
            return None
        containers = [{"name": c["name"], "usage": _usage(c.get("cpu"), c.get("memory"))} for c in p.get("containers") or []]
        if not containers:
            return None
        t = (p.get("cpu") or {}).get("time") or (p["containers"][0].get("cpu") or {}).get("time")
        md = {"name": ref["name"], "namespace": ref["namespace"], "creationTimestamp": t}
        if ent.obj["metadata"].get("labels"):
            md["labels"] = ent.obj["metadata"]["labels"]
        out = {"kind": "PodMetrics", "apiVersion": GV, "metadata": md,
               "timestamp": t, "window": WINDOW, "containers": containers}
        sb = p.get("sandbox")
        if sb:
            out["sandbox"] = {"runtimeHandler": sb.get("runtimeHandler", ""), "usage": _usage(sb.get("cpu"), sb.get("memory"))}
        return out

    async def serve(self, plural: str, ns: str | None, name: str | None, query: dict) -> dict:
        """GET /apis/metrics.k8s.io/v1beta1/{nodes,pods}[/NAME] (pods: in a namespace or all)."""
        try:
            sel = LabelSelector.parse(query.get("labelSelector")) if query.get("labelSelector") else None
        except SelectorError as e:
            raise errors.bad_request(f"unable to parse requirement: {e}")
        summaries = await self.summaries()
        if plural == "nodes":
            items = [self.node_metrics(n, s) for n, s in sorted(summaries.items())]
            if name is not None:
                found = next((i for i in items if i["metadata"]["name"] == name), None)
                if found is None:
                    raise errors.not_found("nodemetrics", "metrics.k8s.io", name)   # metrics-server's words
                return found
            kind = "NodeMetricsList"
        else:
            items = []
            for s in summaries.values():
                for p in s.get("pods") or []:
                    ref = p.get("podRef") or {}
                    if ns is not None and ref.get("namespace") != ns:
                        continue
                    m = self.pod_metrics(p)
                    if m is not None:
                        items.append(m)
            items.sort(key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"]))
            if name is not None:
                found = next((i for i in items if i["metadata"]["name"] == name), None)
                if found is None:
                    raise errors.not_found("podmetrics", "metrics.k8s.io", f"{ns}/{name}")
                return found
            kind = "PodMetricsList"
        if sel is not None:
            items = [i for i in items if sel.matches(i["metadata"].get("labels") or {})]
        return {"kind": kind, "apiVersion": GV, "metadata": {}, "items": items}
