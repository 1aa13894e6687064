"""Toleration helpers, as upstream's pkg/util/tolerations: superset-based merge and matching."""
from __future__ import annotations


def _norm(t: dict) -> tuple:
    return (t.get("key", ""), t.get("operator", ""), t.get("value", ""), t.get("effect", ""), t.get("tolerationSeconds"))


def is_superset(ss: dict, t: dict) -> bool:
    """Whether toleration `ss` tolerates everything `t` does."""
    if _norm(ss) == _norm(t):
        return True
    if t.get("key", "") != ss.get("key", "") and (ss.get("key", "") != "" or ss.get("operator", "") != "Exists"):
        return False
    if t.get("effect", "") != ss.get("effect", "") and ss.get("effect", "") != "":
        return False
    if ss.get("effect") == "NoExecute" and ss.get("tolerationSeconds") is not None:
        if t.get("tolerationSeconds") is None or t["tolerationSeconds"] > ss["tolerationSeconds"]:
            return False
    op = ss.get("operator", "")
    if op in ("Equal", ""):
        return t.get("operator", "") == "Equal" and t.get("value", "") == ss.get("value", "")
    return op == "Exists"


def merge(first: list[dict], second: list[dict]) -> list[dict]:
    """MergeTolerations: the pod's entries first, then the class's new ones; redundant entries dropped."""
    all_ = list(first) + list(second)
    merged: list[dict] = []
    for i, t in enumerate(all_):
        if any(is_superset(m, t) for m in merged):
            continue
        if any(_norm(t) != _norm(t2) and is_superset(t2, t) for t2 in all_[i + 1:]):
            continue
        merged.append(t)
    return merged


def tolerates_taint(tol: dict, taint: dict) -> bool:
    """Toleration.ToleratesTaint."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    if tol.get("key") and tol.get("key") != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if not tol.get("key") and op == "Equal":
        return False
    return (tol.get("value") or "") == (taint.get("value") or "")
