"""Columnar node state (numpy), kept beside the per-node `NodeInfo`s so a scheduling cycle can filter and
score every node at once: allocatable and requested per resource, pod counts, the non-zero requests used
for scoring. Label-, taint- and handler-derived masks are cached per pod signature until a node changes
(`changed`), so a workload of alike Pods pays for them once; `dirty` lists the rows whose pods changed,
for the framework's PodClasses to catch up on."""
from __future__ import annotations

import numpy as np

from .nodeinfo import NodeInfo, PodInfo

_I = np.int64


class NodeTable:
    def __init__(self) -> None:
        self.n = 0
        self._cap = 0
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.nodes: list[NodeInfo] = []
        self.alloc: dict[str, np.ndarray] = {}
        self.req: dict[str, np.ndarray] = {}
        self.pods = np.zeros(0, _I)
        self.nz_cpu = np.zeros(0, _I)
        self.nz_mem = np.zeros(0, _I)
        self._masks: dict[tuple, np.ndarray] = {}   # node-derived vectors, dropped when a node changes
        # rows whose pods changed, in order; a pod class (framework.PodClass) catches up from its position
        self.dirty: list[int] = []
        self.pod_classes: dict[tuple, object] = {}

    # ---- storage
    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, self._cap * 2, 64)

        def grow(a: np.ndarray) -> np.ndarray:
            b = np.zeros(cap, a.dtype)
            b[: self.n] = a[: self.n]
            return b
        for d in (self.alloc, self.req):
            for k in d:
                d[k] = grow(d[k])
        self.pods, self.nz_cpu, self.nz_mem = grow(self.pods), grow(self.nz_cpu), grow(self.nz_mem)
        self._cap = cap

    def _column(self, d: dict, r: str) -> np.ndarray:
        a = d.get(r)
        if a is None:
            a = d[r] = np.zeros(self._cap, _I)
        return a

    def changed(self) -> None:
        """A node was added, removed or changed (not its pods): everything derived from nodes goes."""
        self._masks.clear()
        self.pod_classes.clear()
        self.dirty.clear()

    def _touched(self, i: int) -> None:
        if len(self.dirty) >= 65536:   # classes not used for that long start over
            self.pod_classes.clear()
            self.dirty.clear()
        self.dirty.append(i)

    def upsert(self, ni: NodeInfo) -> None:
        i = self.index.get(ni.name)
        if i is None:
            self._grow(self.n + 1)
            i = self.n
            self.n += 1
            self.names.append(ni.name)
            self.nodes.append(ni)
            self.index[ni.name] = i
        else:
            self.nodes[i] = ni
        for a in self.alloc.values():
            a[i] = 0
        for r, v in ni.allocatable.items():
            self._column(self.alloc, r)[i] = v
        self.refresh_pods(ni)
        self.changed()

    def remove(self, name: str) -> None:
        i = self.index.pop(name, None)
        if i is None:
            return
        last = self.n - 1
        if i != last:   # move the last row into the hole
            for d in (self.alloc, self.req):
                for a in d.values():
                    a[i] = a[last]
            for a in (self.pods, self.nz_cpu, self.nz_mem):
                a[i] = a[last]
            self.names[i], self.nodes[i] = self.names[last], self.nodes[last]
            self.index[self.names[i]] = i
        self.names.pop()
        self.nodes.pop()
        self.n -= 1
        for d in (self.alloc, self.req):
            for a in d.values():
                a[last] = 0
        self.changed()

    def refresh_pods(self, ni: NodeInfo) -> None:
        """Copy a node's requested totals into the columns (after its pods changed)."""
        i = self.index.get(ni.name)
        if i is None:
            return
        for a in self.req.values():
            a[i] = 0
        for r, v in ni.requested.items():
            self._column(self.req, r)[i] = v
        self.pods[i] = len(ni.pods)
        self.nz_cpu[i] = ni.nonzero_cpu
        self.nz_mem[i] = ni.nonzero_mem
        self._touched(i)

    def add_pod(self, name: str, pi: PodInfo, sign: int = 1) -> None:
        i = self.index.get(name)
        if i is None:
            return
        for r, v in pi.requests.items():
            self._column(self.req, r)[i] += sign * v
        self.pods[i] += sign
        self.nz_cpu[i] += sign * pi.nonzero_cpu
        self.nz_mem[i] += sign * pi.nonzero_mem
        self._touched(i)

    # ---- views
    def col(self, d: dict, r: str) -> np.ndarray:
        a = d.get(r)
        return a[: self.n] if a is not None else np.zeros(self.n, _I)

    def row_ids(self, rows) -> np.ndarray:
        """Row numbers of a slice or an index array."""
        return np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows

    def row_nodes(self, rows) -> list[NodeInfo]:
        return self.nodes[rows] if isinstance(rows, slice) else [self.nodes[i] for i in rows]

    def max_pods(self) -> np.ndarray:
        return self.cached_mask(("max-pods",), lambda: self.col(self.alloc, "pods") // 1000)

    def divisor(self, r: str) -> np.ndarray:
        """Allocatable of r, with 1 where a node has none (scores divide by it; the numerator is then 0)."""
        return self.cached_mask(("divisor", r), lambda: np.maximum(self.col(self.alloc, r), 1))

    def divisor_f(self, r: str) -> np.ndarray:
        return self.cached_mask(("divisor-f", r), lambda: self.divisor(r).astype(np.float64))

    def scored_resources(self) -> np.ndarray:
        """How many of cpu and memory each node has (at least 1): the score plugins average over those."""
        return self.cached_mask(("scored",), lambda: np.maximum(
            (self.col(self.alloc, "cpu") > 0).astype(_I) + (self.col(self.alloc, "memory") > 0), 1))

    def has_both(self) -> np.ndarray:
        return self.cached_mask(("both",), lambda: (self.col(self.alloc, "cpu") > 0) & (self.col(self.alloc, "memory") > 0))

    def cached_mask(self, key: tuple, compute) -> np.ndarray:
        """A per-node boolean (or numeric) vector that depends only on node properties and the key."""
        m = self._masks.get(key)
        if m is None:
            if len(self._masks) > 4096:
                self._masks.clear()
            m = compute()
            self._masks[key] = m
        return m
