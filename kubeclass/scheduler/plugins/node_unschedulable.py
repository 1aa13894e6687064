"""NodeUnschedulable: nodes with spec.unschedulable are skipped unless the Pod tolerates
`node.kubernetes.io/unschedulable:NoSchedule`."""
from __future__ import annotations

import numpy as np

from ..framework import Plugin, unresolvable
from .taint_toleration import tolerates

REASON = "node(s) were unschedulable"
TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable(Plugin):
    name = "NodeUnschedulable"

    def filter(self, state, pod, node):
        if not node.unschedulable:
            return None
        if any(tolerates(t, TAINT) for t in (pod.pod.get("spec") or {}).get("tolerations") or []):
            return None
        return unresolvable(REASON)

    def filter_key(self, state, pod):
        return any(tolerates(t, TAINT) for t in (pod.pod.get("spec") or {}).get("tolerations") or [])

    def filter_vector(self, state, pod, table, rows):
        if self.filter_key(state, pod):
            return None
        return table.cached_mask(("unschedulable",), lambda: np.array([not n.unschedulable for n in table.nodes], bool))[rows]
