"""Node lifecycle, as kube-controller-manager's node lifecycle and taint eviction controllers decide it (pure
logic; the loop is kubeclass/controllers/node_lifecycle.py):

- a Node whose kubelet has not renewed its Lease nor posted its status within the grace period (40 s,
  --node-monitor-grace-period) gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions set
  to Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node status.");
- a Node whose Ready condition is Unknown carries the `node.kubernetes.io/unreachable` taints, one whose
  Ready is False the `node.kubernetes.io/not-ready` taints (NoSchedule and NoExecute each), and neither
  once it is Ready again;
- a Pod on a Node with NoExecute taints is evicted (deleted) at once when it does not tolerate one of them,
  else when the shortest `tolerationSeconds` of its matching tolerations has passed since the taint was
  added (the DefaultTolerationSeconds admission plugin gives every Pod 300 s), never when they tolerate it
  for ever.
"""
from __future__ import annotations

import datetime

from .tolerations import tolerates_taint

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def parse(ts: str | None) -> datetime.datetime | None:
    if not ts:
        return None
    try:
        return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def fmt(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_heartbeat(node: dict, lease: dict | None, first_seen: datetime.datetime) -> datetime.datetime:
    """The latest sign of life: the Lease's renewTime, the Ready condition's heartbeat, or when the controller
    first saw the Node (a Node is given the grace period from then, as upstream's probe timestamps)."""
    times = [first_seen]
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and (t := parse(c.get("lastHeartbeatTime"))):
            times.append(t)
    if lease and (t := parse(((lease.get("spec") or {}).get("renewTime")))):
        times.append(t)
    return max(times)


def unknown_conditions(node: dict, now: datetime.datetime) -> list[dict] | None:
    """The conditions of a Node that stopped reporting, or None when they already say so."""
    old = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    out, changed = [], False
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") not in CONDITIONS:
            out.append(c)
    for typ in CONDITIONS:
        c = old.get(typ)
        if c is None:
            out.append({"type": typ, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.", "lastHeartbeatTime": fmt(now),
                        "lastTransitionTime": fmt(now)})
            changed = True
        elif c.get("status") != "Unknown":
            out.append({**c, "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
                        "lastTransitionTime": fmt(now)})
            changed = True
        else:
            out.append(c)
    return out if changed else None


def ready_status(node: dict) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"


def desired_taints(node: dict, now: datetime.datetime) -> list[dict] | None:
    """The Node's taints with the lifecycle ones as its Ready condition wants them, or None when they are so."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    ready = ready_status(node)
    want = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(ready)
    keep = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY) or t.get("key") == want]
    have = {(t.get("key"), t.get("effect")) for t in keep}
    add = []
    if want:
        for effect in ("NoSchedule", "NoExecute"):
            if (want, effect) not in have:
                add.append({"key": want, "effect": effect, **({"timeAdded": fmt(now)} if effect == "NoExecute" else {})})
    new = keep + add
    return None if new == taints else new


def eviction_time(pod: dict, taints: list[dict]) -> datetime.datetime | None | bool:
    """When a Pod on a node with these taints is evicted, as upstream's taint eviction: True (now) when a
    NoExecute taint is not tolerated; else the shortest tolerationSeconds among the tolerations used (0 or
    less: now) after the taints were added; None (never) when none of those tolerations has a limit."""
    noexec = [t for t in taints if t.get("effect") == "NoExecute"]
    if not noexec:
        return None
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]
    used = []
    for taint in noexec:
        matching = [t for t in tolerations if tolerates_taint(t, taint)]
        if not matching:
            return True
        used += matching
    secs = [t["tolerationSeconds"] for t in used if isinstance(t.get("tolerationSeconds"), int)]
    if not secs:
        return None
    if min(secs) <= 0:
        return True
    added = [a for t in noexec if (a := parse(t.get("timeAdded")))] or [datetime.datetime.now(datetime.timezone.utc)]
    return min(added) + datetime.timedelta(seconds=min(secs))
