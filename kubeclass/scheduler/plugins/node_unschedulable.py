"""NodeUnschedulable: nodes with spec.unschedulable are skipped unless the Pod tolerates
`node.kubernetes.io/unschedulable:NoSchedule`."""
from __future__ import annotations

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
