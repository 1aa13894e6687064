"""What the scheduler knows about nodes and pods, as integers: every resource quantity in milli-units
(cpu millicores, memory bytes * 1000), so fit checks are integer comparisons. Built once per object
version and updated incrementally as pods are assumed, bound and deleted (no relist per Pod)."""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from ..api import quantity
from ..api.podresources import pod_requests

# NodeResourcesFit's defaults for pods that request nothing, used for scoring only (upstream's non-zero
# requests: 100m cpu, 200Mi memory)
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024 * 1000


# effective requests by the JSON of the containers' resources and the overhead: a workload's alike
# Pods parse their quantities once (PodInfo is built on every add, update and bind of a Pod)
_REQUESTS: dict[bytes, dict[str, int]] = {}


def milli(v) -> int:
    return quantity.parse(v).milli()


@dataclass
class PodInfo:
    pod: dict
    key: str                                   # namespace/name
    requests: dict[str, int]                   # milli-units, with overhead (upstream PodRequests)
    nonzero_cpu: int
    nonzero_mem: int
    host_ports: list[tuple[str, str, int]]     # (hostIP, protocol, hostPort)
    priority: int

    @classmethod
    def of(cls, pod: dict) -> "PodInfo":
        md = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        sig = orjson.dumps([[c.get("resources") for c in spec.get("containers") or ()],
                            [c.get("resources") for c in spec.get("initContainers") or ()], spec.get("overhead")])
        req = _REQUESTS.get(sig)
        if req is None:
            if len(_REQUESTS) > 4096:
                _REQUESTS.clear()
            req = _REQUESTS[sig] = {r: q.milli() for r, q in pod_requests(pod).items()}
        ports = []
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"])))
        cpu = req.get("cpu") or DEFAULT_MILLI_CPU
        mem = req.get("memory") or DEFAULT_MEMORY
        return cls(pod, f"{md.get('namespace', '')}/{md.get('name', '')}", dict(req), cpu, mem, ports, int(spec.get("priority") or 0))

    @property
    def uid(self) -> str:
        return (self.pod.get("metadata") or {}).get("uid", "")


@dataclass
class NodeInfo:
    node: dict
    name: str
    labels: dict
    taints: list[dict]
    unschedulable: bool
    allocatable: dict[str, int]
    runtime_handlers: set[str] | None          # None: the node publishes no list
    requested: dict[str, int] = field(default_factory=dict)
    nonzero_cpu: int = 0
    nonzero_mem: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)   # uid -> pod
    used_ports: dict[tuple[str, str, int], int] = field(default_factory=dict)
    generation: int = 0

    @classmethod
    def of(cls, node: dict) -> "NodeInfo":
        ni = cls(node, node["metadata"]["name"], {}, [], False, {}, None)
        ni.set_node(node)
        return ni

    def set_node(self, node: dict) -> None:
        md, spec, st = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
        self.node = node
        self.labels = md.get("labels") or {}
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        alloc = st.get("allocatable") or st.get("capacity") or {}
        self.allocatable = {r: milli(v) for r, v in alloc.items()}
        rh = st.get("runtimeHandlers")
        self.runtime_handlers = {h.get("name", "") for h in rh} if rh is not None else None
        self.generation += 1

    def add_pod(self, pi: PodInfo) -> None:
        if pi.uid in self.pods:
            self.remove_pod(pi.uid)
        self.pods[pi.uid] = pi
        for r, v in pi.requests.items():
            self.requested[r] = self.requested.get(r, 0) + v
        self.nonzero_cpu += pi.nonzero_cpu
        self.nonzero_mem += pi.nonzero_mem
        for p in pi.host_ports:
            self.used_ports[p] = self.used_ports.get(p, 0) + 1
        self.generation += 1

    def remove_pod(self, uid: str) -> PodInfo | None:
        pi = self.pods.pop(uid, None)
        if pi is None:
            return None
        for r, v in pi.requests.items():
            self.requested[r] = self.requested.get(r, 0) - v
        self.nonzero_cpu -= pi.nonzero_cpu
        self.nonzero_mem -= pi.nonzero_mem
        for p in pi.host_ports:
            n = self.used_ports.get(p, 0) - 1
            if n > 0:
                self.used_ports[p] = n
            else:
                self.used_ports.pop(p, None)
        self.generation += 1
        return pi

    def clone(self) -> "NodeInfo":
        """A copy whose pod set can change without touching the cache (preemption simulation)."""
        c = NodeInfo(self.node, self.name, self.labels, self.taints, self.unschedulable, self.allocatable,
                     self.runtime_handlers, dict(self.requested), self.nonzero_cpu, self.nonzero_mem,
                     dict(self.pods), dict(self.used_ports), self.generation)
        return c


class Cache:
    """Nodes and the pods bound or assumed on them; updated from watch events and by the scheduler."""

    def __init__(self) -> None:
        from .nodetable import NodeTable
        self.nodes: dict[str, NodeInfo] = {}
        self.table = NodeTable()                   # the same state in columns, for whole-cluster filtering
        self.pod_node: dict[str, str] = {}         # pod uid -> node name
        self.assumed: set[str] = set()
        self._pending_pods: dict[str, dict[str, PodInfo]] = {}   # pods on nodes we have not seen yet

    def upsert_node(self, node: dict) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = NodeInfo.of(node)
            self.nodes[name] = ni
            for pi in self._pending_pods.pop(name, {}).values():
                ni.add_pod(pi)
        else:
            ni.set_node(node)
        self.table.upsert(ni)
        return ni

    @property
    def order(self) -> list[str]:
        """Node names in a stable order (the table's rows)."""
        return self.table.names

    def remove_node(self, name: str) -> None:
        ni = self.nodes.pop(name, None)
        if ni is not None:
            self.table.remove(name)
            self._pending_pods[name] = dict(ni.pods)

    def add_pod(self, pod: dict, node_name: str, assumed: bool = False) -> None:
        pi = PodInfo.of(pod)
        old = self.pod_node.get(pi.uid)
        if old is not None and old != node_name:
            self.remove_pod(pi.uid)
        self.pod_node[pi.uid] = node_name
        if assumed:
            self.assumed.add(pi.uid)
        else:
            self.assumed.discard(pi.uid)
        ni = self.nodes.get(node_name)
        if ni is None:
            self._pending_pods.setdefault(node_name, {})[pi.uid] = pi
            return
        cur = ni.pods.get(pi.uid)
        if cur is not None and cur.requests == pi.requests and cur.host_ports == pi.host_ports:
            ni.pods[pi.uid] = pi   # the same pod again (an assumed pod's binding, a status update): nothing to recount
            return
        ni.add_pod(pi)
        self.table.refresh_pods(ni)

    def remove_pod(self, uid: str) -> None:
        node = self.pod_node.pop(uid, None)
        self.assumed.discard(uid)
        if node is None:
            return
        ni = self.nodes.get(node)
        if ni is not None:
            ni.remove_pod(uid)
            self.table.refresh_pods(ni)
        else:
            self._pending_pods.get(node, {}).pop(uid, None)


def cluster_cache(nodes: list[dict], pods: list[dict], leave_out_uid: str | None = None) -> "Cache":
    """A scheduler cache of the cluster as it is: its nodes and the Pods bound to them that still hold resources
    (not Succeeded or Failed), but the Pod of uid leave_out_uid (the one being explained, as if not yet placed)."""
    cache = Cache()
    for n in nodes:
        cache.upsert_node(n)
    for p in pods:
        nn = (p.get("spec") or {}).get("nodeName")
        if nn and p["metadata"].get("uid") != leave_out_uid and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            cache.add_pod(p, nn)
    return cache
