"""NodeName: a Pod that names its node fits only there."""
from __future__ import annotations

from ..framework import Plugin, unresolvable

REASON = "node(s) didn't match the requested node name"


class NodeName(Plugin):
    name = "NodeName"

    def filter(self, state, pod, node):
        want = (pod.pod.get("spec") or {}).get("nodeName")
        if want and want != node.name:
            return unresolvable(REASON)
        return None

    def filter_vector(self, state, pod, table, rows):
        want = (pod.pod.get("spec") or {}).get("nodeName")
        if not want:
            return None
        return table.row_ids(rows) == table.index.get(want, -1)

    def filter_key(self, state, pod):
        return (pod.pod.get("spec") or {}).get("nodeName")
