"""Quota usage, pure (upstream's quota evaluators): what one Pod or object counts against a ResourceQuota
(Pod requests and limits with overhead, object counts `count/<resource>[.<group>]` and the legacy names),
and a namespace's total. Shared by the ResourceQuota admission plugin, which charges new objects, and the
resource quota controller, which recounts."""
from __future__ import annotations

import datetime

from . import quantity
from .podresources import pod_limits, pod_requests
from .quantity import Quantity

def pod_usage(pod: dict) -> dict[str, Quantity]:
    """Quota usage of one pod (upstream PodUsageFunc)."""
    one = quantity.parse("1")
    usage: dict[str, Quantity] = {"pods": one, "count/pods": one}
    req, lim = pod_requests(pod), pod_limits(pod)
    for r in ("cpu", "memory", "ephemeral-storage"):
        if r in req:
            usage[r] = req[r]
            usage[f"requests.{r}"] = req[r]
        if r in lim:
            usage[f"limits.{r}"] = lim[r]
    for r, q in req.items():
        if r.startswith("hugepages-"):
            usage[f"requests.{r}"] = q
    return usage


def is_charged(pod: dict, now: datetime.datetime | None = None) -> bool:
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    md = pod.get("metadata") or {}
    if md.get("deletionTimestamp") and md.get("deletionGracePeriodSeconds") is not None:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        try:
            dt = datetime.datetime.strptime(md["deletionTimestamp"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            return True
        if now > dt + datetime.timedelta(seconds=md["deletionGracePeriodSeconds"]):
            return False
    return True


# quota names that count objects without the `count/` prefix (upstream's legacy object-count names)
LEGACY_COUNTS = {"services", "secrets", "configmaps", "persistentvolumeclaims", "replicationcontrollers", "resourcequotas"}


def count_name(group: str, plural: str) -> str:
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def counted(tracked: set[str]) -> set[tuple[str, str]]:
    """(group, plural) of every resource other than pods whose objects the tracked names count."""
    out = set()
    for r in tracked:
        if r.startswith("count/"):
            plural, _, group = r[len("count/"):].partition(".")
            if (group, plural) != ("", "pods"):
                out.add((group, plural))
        elif r in LEGACY_COUNTS:
            out.add(("", r))
    return out


def object_usage(group: str, plural: str, obj: dict) -> dict[str, Quantity]:
    """Quota usage of one object: Pods by resources (with overhead), everything else by count."""
    if group == "" and plural == "pods":
        return pod_usage(obj) if is_charged(obj) else {}
    one = quantity.parse("1")
    usage = {count_name(group, plural): one}
    if group == "" and plural in LEGACY_COUNTS:
        usage[plural] = one
    return usage


def namespace_usage(pods: list[dict], tracked: set[str], others: dict[tuple[str, str], list[dict]] | None = None) -> dict[str, Quantity]:
    """Usage of a namespace: its Pods, plus the objects of `others` ((group, plural) -> objects)."""
    total: dict[str, Quantity] = {r: quantity.parse("0") for r in tracked}
    for p in pods:
        if not is_charged(p):
            continue
        for r, q in pod_usage(p).items():
            if r in total:
                total[r] = total[r] + q
    for (group, plural), objs in (others or {}).items():
        for o in objs:
            for r, q in object_usage(group, plural, o).items():
                if r in total:
                    total[r] = total[r] + q
    return total
