"""NodeResourcesFit: Pod requests (max of the containers' sum and the largest init container, plus
overhead) must fit what is left of each resource's allocatable, and the pod count (`Too many pods`,
`Insufficient cpu`, ...). Scores by LeastAllocated (default) or MostAllocated on cpu and memory with
upstream's non-zero defaults."""
from __future__ import annotations

import numpy as np

from ..framework import MAX_NODE_SCORE, UNSCHEDULABLE, Plugin, Status

ORDERED = ("cpu", "memory", "ephemeral-storage")


class NodeResourcesFit(Plugin):
    name = "NodeResourcesFit"

    def __init__(self, strategy: str = "LeastAllocated"):
        self.strategy = strategy

    def filter(self, state, pod, node):
        reasons = insufficient(pod, node)
        if reasons:
            return Status(UNSCHEDULABLE, reasons)
        return None

    def score(self, state, pod, node):
        """leastRequestedScore / mostRequestedScore per resource, averaged over the resources the node has."""
        total = counted = 0
        for alloc_r, used in (("cpu", node.nonzero_cpu + pod.nonzero_cpu), ("memory", node.nonzero_mem + pod.nonzero_mem)):
            alloc = node.allocatable.get(alloc_r, 0)
            if alloc <= 0:
                continue
            counted += 1
            if self.strategy == "MostAllocated":
                total += min(used, alloc) * MAX_NODE_SCORE // alloc
            else:
                total += 0 if used > alloc else (alloc - used) * MAX_NODE_SCORE // alloc
        return total // counted if counted else 0

    separable = True   # a node's score depends on that node alone (no normalisation across nodes)

    def filter_key(self, state, pod):
        return tuple(pod.requests.items())

    def score_key(self, state, pod):
        return pod.nonzero_cpu, pod.nonzero_mem

    def filter_vector(self, state, pod, table, rows):
        mask = table.pods[rows] < table.max_pods()[rows]
        for r, v in pod.requests.items():
            if v > 0:
                mask &= table.col(table.alloc, r)[rows] - table.col(table.req, r)[rows] >= v
        return mask

    def score_vector(self, state, pod, table, idx):
        """The same integer arithmetic as `score` (int64: exact for nodes below ~92 TB of memory, which is
        held in milli-bytes)."""
        total = np.zeros(len(idx), np.int64)
        for r, nz, add in (("cpu", table.nz_cpu, pod.nonzero_cpu), ("memory", table.nz_mem, pod.nonzero_mem)):
            alloc = table.col(table.alloc, r)[idx]
            used = nz[idx] + add
            if self.strategy == "MostAllocated":
                total += np.minimum(used, alloc) * MAX_NODE_SCORE // table.divisor(r)[idx]
            else:
                total += np.maximum(alloc - used, 0) * MAX_NODE_SCORE // table.divisor(r)[idx]
        return total // table.scored_resources()[idx]


def insufficient(pod, node) -> list[str]:
    reasons = []
    if len(node.pods) + 1 > node.allocatable.get("pods", 110_000) // 1000:
        reasons.append("Too many pods")
    req = pod.requests
    if not req:
        return reasons
    for r in ORDERED:
        v = req.get(r, 0)
        if v > 0 and v > node.allocatable.get(r, 0) - node.requested.get(r, 0):
            reasons.append(f"Insufficient {r}")
    for r, v in req.items():
        if r in ORDERED or v <= 0:
            continue
        if v > node.allocatable.get(r, 0) - node.requested.get(r, 0):
            reasons.append(f"Insufficient {r}")
    return reasons
