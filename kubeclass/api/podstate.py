"""What the workload controllers read from a Pod (upstream's pkg/api/v1/pod and pkg/controller
controller_utils.go): active, ready, available after minReadySeconds, the order in which a
ReplicaSet deletes its surplus Pods, and ownerReferences (controller refs, adoption, release)."""
from __future__ import annotations

import datetime
import math

from .meta import parse_time

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def is_active(pod: dict) -> bool:
    """controller.FilterActivePods: not Succeeded / Failed and not being deleted."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and \
        not pod["metadata"].get("deletionTimestamp")


def ready_condition(pod: dict) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_ready(pod: dict) -> bool:
    c = ready_condition(pod)
    return c is not None and c.get("status") == "True"


def ready_since(pod: dict) -> datetime.datetime | None:
    c = ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime") or "")


def is_available(pod: dict, min_ready_seconds: int, now: datetime.datetime) -> bool:
    """podutil.IsPodAvailable: Ready, and Ready for at least minReadySeconds."""
    if not is_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = ready_since(pod)
    return since is not None and since + datetime.timedelta(seconds=min_ready_seconds) < now


def available_in(pod: dict, min_ready_seconds: int, now: datetime.datetime) -> float | None:
    """Seconds until a Ready Pod becomes available (None when not Ready)."""
    since = ready_since(pod)
    if since is None:
        return None
    return max(0.0, (since + datetime.timedelta(seconds=min_ready_seconds) - now).total_seconds())


# ---- deletion order (controller.ActivePodsWithRanks, with LogarithmicScaleDown as in 1.32)

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: dict) -> int:
    v = (pod["metadata"].get("annotations") or {}).get(POD_DELETION_COST)
    try:
        return int(v) if v is not None else 0
    except ValueError:
        return 0


def _restarts(pod: dict) -> int:
    return max([c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or []] or [0])


def _log_bucket(t: datetime.datetime | None, now: datetime.datetime) -> int:
    if t is None:
        return 0
    d = max((now - t).total_seconds(), 0.0)
    return int(math.log2(d + 1)) if d else 0


def deletion_order(pods: list[dict], related: list[dict], now: datetime.datetime) -> list[dict]:
    """Pods in the order a ReplicaSet deletes its surplus: unscheduled before scheduled, Pending before
    Unknown before Running, not ready before ready, lower pod-deletion-cost first, more related Pods on
    the same node first, ready for less time first, more restarts first, newer first."""
    on_node: dict[str, int] = {}
    for p in related:
        n = (p.get("spec") or {}).get("nodeName")
        if n and is_active(p):
            on_node[n] = on_node.get(n, 0) + 1

    def key(p: dict):
        spec, st, md = p.get("spec") or {}, p.get("status") or {}, p["metadata"]
        node = spec.get("nodeName") or ""
        ready = is_ready(p)
        created = parse_time(md.get("creationTimestamp") or "")
        return (1 if node else 0,
                _PHASE_RANK.get(st.get("phase", "Pending"), 0),
                1 if ready else 0,
                _deletion_cost(p),
                -(on_node.get(node, 0) if node else 0),
                # ready for less time first (log2 buckets of the time since Ready: LogarithmicScaleDown)
                _log_bucket(ready_since(p), now) if ready else 0,
                -_restarts(p),
                -_log_bucket(created, now) if created else 0,
                -(created.timestamp() if created else 0.0))
    return sorted(pods, key=key)


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """Sizes of the creation batches (1, 2, 4, ... capped by what is left), as controller.slowStartBatch."""
    out, remaining, size = [], count, min(count, initial)
    while size > 0:
        out.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return out


# ---- ownerReferences

def controller_ref(obj: dict) -> dict | None:
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def new_controller_ref(owner: dict, api_version: str, kind: str) -> dict:
    md = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def claim(owner: dict, obj: dict, matches: bool) -> str:
    """controller_ref_manager.ClaimObject: 'own' (ours and matching), 'adopt' (an orphan that matches,
    while the owner is not being deleted), 'release' (ours but no longer matching), '' (leave it)."""
    ref = controller_ref(obj)
    if ref is not None:
        if ref.get("uid") != owner["metadata"]["uid"]:
            return ""
        if matches:
            return "own"
        return "" if owner["metadata"].get("deletionTimestamp") else "release"
    if not matches or owner["metadata"].get("deletionTimestamp") or obj["metadata"].get("deletionTimestamp"):
        return ""
    return "adopt"


def adopt_patch(owner: dict, obj: dict, api_version: str, kind: str) -> dict:
    """The strategic merge patch that adopts `obj` (uid precondition in metadata, as upstream)."""
    return {"metadata": {"ownerReferences": [new_controller_ref(owner, api_version, kind)], "uid": obj["metadata"]["uid"]}}


def release_patch(owner: dict, obj: dict) -> dict:
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner["metadata"]["uid"]}],
                         "uid": obj["metadata"]["uid"]}}
