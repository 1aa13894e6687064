"""TaintToleration: NoSchedule and NoExecute taints must be tolerated (Filter); untolerated
PreferNoSchedule taints lower the score (Score, reversed normalisation). Message as 1.32 prints it:
`node(s) had untolerated taint {key: value}`."""
from __future__ import annotations

import numpy as np
import orjson

from ...api.tolerations import tolerates_taint as tolerates
from ..framework import MAX_NODE_SCORE, Plugin, default_normalize, default_normalize_vector, unresolvable


def first_untolerated(taints: list[dict], tolerations: list[dict], effects: tuple[str, ...]) -> dict | None:
    for t in taints:
        if t.get("effect") not in effects:
            continue
        if not any(tolerates(tol, t) for tol in tolerations):
            return t
    return None


class TaintToleration(Plugin):
    name = "TaintToleration"

    def filter(self, state, pod, node):
        if not node.taints:
            return None
        tols = (pod.pod.get("spec") or {}).get("tolerations") or []
        t = first_untolerated(node.taints, tols, ("NoSchedule", "NoExecute"))
        if t is None:
            return None
        return unresolvable(f"node(s) had untolerated taint {{{t.get('key', '')}: {t.get('value', '')}}}")

    def score(self, state, pod, node):
        if not node.taints:
            return 0
        tols = [t for t in (pod.pod.get("spec") or {}).get("tolerations") or [] if t.get("effect") in (None, "", "PreferNoSchedule")]
        return sum(1 for t in node.taints if t.get("effect") == "PreferNoSchedule" and not any(tolerates(x, t) for x in tols))

    def normalize(self, state, pod, scores):
        default_normalize(scores, reverse=True)

    def filter_key(self, state, pod):
        """The Pod's tolerations as JSON: what the cached masks and scores of alike Pods are keyed by
        (computed once per cycle, in the cycle state)."""
        key = state.get("tolerations_key")
        if key is None:
            key = state["tolerations_key"] = orjson.dumps((pod.pod.get("spec") or {}).get("tolerations") or [])
        return key

    def filter_vector(self, state, pod, table, rows):
        tols = (pod.pod.get("spec") or {}).get("tolerations") or []
        return table.cached_mask(("taints", self.filter_key(state, pod)), lambda: np.array(
            [not n.taints or first_untolerated(n.taints, tols, ("NoSchedule", "NoExecute")) is None for n in table.nodes], bool))[rows]

    def score_vector(self, state, pod, table, idx):
        key = self.filter_key(state, pod)
        counts = table.cached_mask(("taint-score", key), lambda: np.array([self.score(state, pod, n) for n in table.nodes], np.int64))
        if not table.cached_mask(("taint-score-any", key), counts.any):
            return MAX_NODE_SCORE   # no untolerated PreferNoSchedule taint anywhere: the same for every node
        return default_normalize_vector(counts[idx], reverse=True)
