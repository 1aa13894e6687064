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
        total = 0
        for alloc_r, used in (("cpu", node.nonzero_cpu + pod.nonzero_cpu), ("memory", node.nonzero_mem + pod.nonzero_mem)):
            alloc = node.allocatable.get(alloc_r, 0)
            if alloc <= 0:
                continue
            if self.strategy == "MostAllocated":
                total += min(used, alloc) * MAX_NODE_SCORE // alloc
            else:
                total += 0 if used > alloc else (alloc - used) * MAX_NODE_SCORE // alloc
        return total // 2

    def filter_vector(self, state, pod, table):
        mask = table.pods[: table.n] + 1 <= table.col(table.alloc, "pods") // 1000
        for r, v in pod.requests.items():
            if v > 0:
                mask &= table.col(table.alloc, r) - table.col(table.req, r) >= v
        return mask

    def score_vector(self, state, pod, table, idx):
        total = np.zeros(len(idx))
        for r, used in (("cpu", table.nz_cpu[idx] + pod.nonzero_cpu), ("memory", table.nz_mem[idx] + pod.nonzero_mem)):
            alloc = table.col_f(table.alloc, r)[idx]
            with np.errstate(divide="ignore", invalid="ignore"):
                if self.strategy == "MostAllocated":
                    s = np.floor(np.minimum(used, alloc) * MAX_NODE_SCORE / alloc)
                else:
                    s = np.floor(np.maximum(alloc - used, 0) * MAX_NODE_SCORE / alloc)
            total += np.where(alloc > 0, s, 0)
        return (total // 2).astype(np.int64)


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
