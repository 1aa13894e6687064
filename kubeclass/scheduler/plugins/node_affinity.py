"""NodeAffinity: spec.nodeSelector (where RuntimeClass scheduling lands after admission) and required
node affinity terms with every operator (In, NotIn, Exists, DoesNotExist, Gt, Lt; matchFields on
metadata.name) filter; preferred terms score by weight."""
from __future__ import annotations

import numpy as np
import orjson

from ..framework import Plugin, default_normalize, default_normalize_vector, unresolvable

REASON = "node(s) didn't match Pod's node affinity/selector"


def _requirement(expr: dict, labels: dict) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        if key not in labels or len(values) != 1:
            return False
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: dict, node_labels: dict, node_name: str) -> bool:
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False   # an empty term matches nothing
    if not all(_requirement(e, node_labels) for e in exprs):
        return False
    return all(_requirement(f, {"metadata.name": node_name}) for f in fields)


def required_matches(pod: dict, node_labels: dict, node_name: str) -> bool:
    spec = pod.get("spec") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if node_labels.get(k) != v:
            return False
    req = ((((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")) or {})
    terms = req.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(term_matches(t, node_labels, node_name) for t in terms)


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
