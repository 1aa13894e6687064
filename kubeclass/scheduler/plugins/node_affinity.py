"""NodeAffinity: spec.nodeSelector (where RuntimeClass scheduling lands after admission) and required
node affinity terms with every operator (In, NotIn, Exists, DoesNotExist, Gt, Lt; matchFields on
metadata.name) filter; preferred terms score by weight."""
from __future__ import annotations

import numpy as np
import orjson

from ...api.nodeaffinity import required_matches, term_matches   # shared with the DaemonSet controller
from ..framework import Plugin, default_normalize, default_normalize_vector, unresolvable

REASON = "node(s) didn't match Pod's node affinity/selector"


class NodeAffinity(Plugin):
    name = "NodeAffinity"

    def filter(self, state, pod, node):
        if not required_matches(pod.pod, node.labels, node.name):
            return unresolvable(REASON)
        return None

    def score(self, state, pod, node):
        prefs = (((pod.pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
            "preferredDuringSchedulingIgnoredDuringExecution") or []
        return sum(int(p.get("weight", 0)) for p in prefs if term_matches(p.get("preference") or {}, node.labels, node.name))

    def normalize(self, state, pod, scores):
        default_normalize(scores)

    def filter_key(self, state, pod):
        """The Pod's nodeSelector and required terms as JSON (`null` for each it lacks), once per cycle."""
        key = state.get("affinity_key")
        if key is None:
            spec = pod.pod.get("spec") or {}
            required = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"))
            key = state["affinity_key"] = orjson.dumps([spec.get("nodeSelector") or None, required])
        return key

    def filter_vector(self, state, pod, table, rows):
        key = self.filter_key(state, pod)
        if key == b"[null,null]":
            return None   # neither a nodeSelector nor required terms: every node matches
        return table.cached_mask(("affinity", key), lambda: np.array(
            [required_matches(pod.pod, n.labels, n.name) for n in table.nodes], bool))[rows]

    def score_vector(self, state, pod, table, idx):
        prefs = (((pod.pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
            "preferredDuringSchedulingIgnoredDuringExecution") or []
        if not prefs:
            return 0
        raw = table.cached_mask(("affinity-score", orjson.dumps(prefs)), lambda: np.array(
            [self.score(state, pod, n) for n in table.nodes], np.int64))
        return default_normalize_vector(raw[idx])
