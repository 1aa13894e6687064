"""Whether a Pod's nodeSelector and required node affinity select a node (upstream's
component-helpers nodeaffinity): used by the scheduler's NodeAffinity plugin and the DaemonSet controller."""
from __future__ import annotations


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
