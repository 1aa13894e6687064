"""RuntimeHandler (ours; upstream lacks it, kubernetes#72413): when a node publishes
`status.runtimeHandlers`, a Pod whose RuntimeClass handler is not among them does not fit there
(`node(s) didn't have the runtime handler "<handler>"`). Nodes that publish no list are not filtered.
The class -> handler map comes from the scheduler's RuntimeClass informer."""
from __future__ import annotations

import numpy as np

from ..framework import Plugin, unresolvable


class RuntimeHandler(Plugin):
    name = "RuntimeHandler"

    def __init__(self, handlers: dict[str, str]):
        self.handlers = handlers   # RuntimeClass name -> handler, kept current by the scheduler

    def pre_filter(self, state, pod):
        rc = (pod.pod.get("spec") or {}).get("runtimeClassName")
        state["runtime_handler"] = self.handlers.get(rc) if rc else None
        return None

    def filter(self, state, pod, node):
        if "runtime_handler" not in state:
            self.pre_filter(state, pod)
        h = state["runtime_handler"]
        if h is None or node.runtime_handlers is None or h in node.runtime_handlers:
            return None
        return unresolvable(f'node(s) didn\'t have the runtime handler "{h}"')

    def filter_key(self, state, pod):
        return state["runtime_handler"]   # set by pre_filter, which runs first

    def filter_vector(self, state, pod, table, rows):
        self.pre_filter(state, pod)
        h = state["runtime_handler"]
        if h is None:
            return None
        return table.cached_mask(("handler", h), lambda: np.array(
            [n.runtime_handlers is None or h in n.runtime_handlers for n in table.nodes], bool))[rows]
