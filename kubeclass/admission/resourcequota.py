"""The `ResourceQuota` admission plugin (upstream plugin/pkg/admission/resourcequota), last in the chain.

Pod usage includes overhead (requests always, limits where a limit is set), as upstream's pod evaluator.
As upstream, a create is charged against the quota's `status.used` (recounted from the stored Pods only
when the status does not cover the quota's current `spec.hard` yet) and the new usage is written back.
Pod creates in a namespace with quotas are serialized from admission to the store write
(`serialization_key`), and the status refresher recounts under the same lock, so a concurrent burst can
never overshoot and a recount never misses a Pod that was charged but not yet stored.
"""
from __future__ import annotations

import datetime

from ..api import errors, quantity
from ..api.podresources import pod_limits, pod_requests
from ..api.quantity import Quantity
from . import Attributes, Lister, Plugin

COMPUTE_VALIDATION = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}


def lock_key(namespace: str) -> str:
    """The serialization key of a namespace's quota accounting, shared by admission and status refresh."""
    return f"quota/{namespace}"


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


def pretty(rl: dict[str, Quantity]) -> str:
    return ",".join(f"{k}={rl[k].canonical()}" for k in sorted(rl))


def _missing_constraints(pod: dict, tracked: set[str]) -> str | None:
    required = tracked & COMPUTE_VALIDATION
    if not required:
        return None
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        have = set()
        for r in (res.get("requests") or {}):
            have |= {r, f"requests.{r}"}
        for r in (res.get("limits") or {}):
            have.add(f"limits.{r}")
        for r in required - have:
            missing.setdefault(r, set()).add(c.get("name", ""))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


class ResourceQuota(Plugin):
    name = "ResourceQuota"

    def __init__(self, writer=None):
        self.writer = writer

    def _quotas(self, a: Attributes, lister: Lister) -> list[dict]:
        if a.operation != "CREATE" or a.subresource or not a.namespace:
            return []
        return sorted(lister.list("", "resourcequotas", a.namespace), key=lambda q: q["metadata"]["name"])

    def serialization_key(self, a: Attributes, lister: Lister) -> str | None:
        quotas = self._quotas(a, lister)
        if not quotas:
            return None
        if a.group == "" and a.resource == "pods":
            return lock_key(a.namespace)
        names = object_usage(a.group, a.resource, a.object)
        if any(r in ((q.get("spec") or {}).get("hard") or {}) for q in quotas for r in names):
            return lock_key(a.namespace)
        return None

    async def validate(self, a: Attributes, lister: Lister) -> None:
        quotas = self._quotas(a, lister)
        if not quotas:
            return
        is_pod = a.group == "" and a.resource == "pods"
        delta = object_usage(a.group, a.resource, a.object)
        if not is_pod and not any(r in ((q.get("spec") or {}).get("hard") or {}) for q in quotas for r in delta):
            return  # no quota counts this kind
        pods: list[dict] | None = None
        updates = []
        for q in quotas:
            hard = {k: quantity.parse(v) for k, v in ((q.get("spec") or {}).get("hard") or {}).items()}
            tracked = set(hard)
            why = _missing_constraints(a.object, tracked) if is_pod else None
            if why:
                raise errors.forbidden_status("pods", "", a.display_name(), f"failed quota: {q['metadata']['name']}: {why}")
            st = q.get("status") or {}
            st_hard = {k: quantity.parse(v) for k, v in (st.get("hard") or {}).items()}
            if st_hard == hard and tracked <= set(st.get("used") or {}):
                used = {r: quantity.parse(st["used"][r]) for r in tracked}
            else:
                name = a.object["metadata"].get("name")
                if pods is None:
                    pods = [p for p in lister.list("", "pods", a.namespace) if not (is_pod and p["metadata"].get("name") == name)]
                others = {(g, pl): [o for o in lister.list(g, pl, a.namespace)
                                    if not ((g, pl) == (a.group, a.resource) and o["metadata"].get("name") == name)]
                          for g, pl in counted(tracked)}
                used = namespace_usage(pods, tracked, others)
            over = [r for r in tracked if r in delta and hard[r] < used[r] + delta[r]]
            if over:
                raise errors.forbidden_status(a.resource, a.group, a.display_name(),
                                              f"exceeded quota: {q['metadata']['name']}, requested: {pretty({r: delta[r] for r in over})}, "
                                              f"used: {pretty({r: used[r] for r in over})}, limited: {pretty({r: hard[r] for r in over})}")
            new_used = {r: (used[r] + delta[r] if r in delta else used[r]) for r in tracked}
            updates.append((q, hard, new_used))
        if a.dry_run or self.writer is None:
            return
        for q, hard, new_used in updates:
            await self.writer.set_quota_status(q, {r: h.canonical() for r, h in hard.items()},
                                               {r: u.canonical() for r, u in new_used.items()})
