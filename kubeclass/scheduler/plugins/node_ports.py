"""NodePorts: a Pod's hostPorts must be free on the node (same protocol and port; 0.0.0.0 conflicts with
every address)."""
from __future__ import annotations

import numpy as np

from ..framework import Plugin, unschedulable

REASON = "node(s) didn't have free ports for the requested pod ports"


class NodePorts(Plugin):
    name = "NodePorts"

    def filter(self, state, pod, node):
        if not pod.host_ports or not node.used_ports:
            return None
        for ip, proto, port in pod.host_ports:
            for (uip, uproto, uport) in node.used_ports:
                if uport == port and uproto == proto and (ip == uip or "0.0.0.0" in (ip, uip)):
                    return unschedulable(REASON)
        return None

    def filter_vector(self, state, pod, table, rows):
        if not pod.host_ports:
            return None
        return np.array([self.filter(state, pod, n) is None for n in table.row_nodes(rows)], bool)

    def filter_key(self, state, pod):
        return tuple(pod.host_ports)
