"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory would be used in equal shares
(score = (1 - standard deviation of the fractions) * 100)."""
from __future__ import annotations

import numpy as np

from ..framework import MAX_NODE_SCORE, Plugin


class BalancedAllocation(Plugin):
    name = "NodeResourcesBalancedAllocation"

    def score(self, state, pod, node):
        fr = []
        for r, used in (("cpu", node.requested.get("cpu", 0) + pod.requests.get("cpu", 0)),
                        ("memory", node.requested.get("memory", 0) + pod.requests.get("memory", 0))):
            alloc = node.allocatable.get(r, 0)
            if alloc > 0:
                fr.append(min(used / alloc, 1.0))
        if len(fr) < 2:
            return MAX_NODE_SCORE
        std = abs(fr[0] - fr[1]) / 2
        return int((1 - std) * MAX_NODE_SCORE)

    separable = True   # a node's score depends on that node alone

    def score_key(self, state, pod):
        return pod.requests.get("cpu", 0), pod.requests.get("memory", 0)

    def score_vector(self, state, pod, table, idx):
        fr = [np.minimum((table.col(table.req, r)[idx] + pod.requests.get(r, 0)) / table.divisor_f(r)[idx], 1.0)
              for r in ("cpu", "memory")]
        std = np.abs(fr[0] - fr[1]) / 2
        # one resource the node has none of: a single fraction, deviation 0
        std[~table.has_both()[idx]] = 0.0
        return ((1 - std) * MAX_NODE_SCORE).astype(np.int64)
