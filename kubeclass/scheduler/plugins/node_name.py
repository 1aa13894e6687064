"""NodeName: a Pod that names its node fits only there."""
from __future__ import annotations

import numpy as np

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
        m = np.zeros(rows.stop - rows.start, bool)
        i = table.index.get(want)
        if i is not None and rows.start <= i < rows.stop:
            m[i - rows.start] = True
        return m
