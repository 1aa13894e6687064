"""The `ResourceQuota` admission plugin (upstream plugin/pkg/admission/resourcequota), last in the chain.

Pod usage includes overhead (requests always, limits where a limit is set), as upstream's pod evaluator.
As upstream, a create is checked against the quota's `status.used` (recounted from the stored Pods only
when the status does not cover the quota's current `spec.hard` yet). Creates in a namespace with quotas
are serialized from admission to the store write (`serialization_key`), so a concurrent burst can never
overshoot; the charge is written once the object is stored (a read-modify-write of `used`), so the resource
quota controller's recounts (kubeclass/controllers/resourcequota.py) can never miss it.
"""
from __future__ import annotations

from ..api import errors, quantity
from ..api.quantity import Quantity
from ..api.quota import (LEGACY_COUNTS, count_name, counted, is_charged, namespace_usage, object_usage,  # noqa: F401 - re-exported
                         pod_usage)
from . import Attributes, Lister, Plugin

COMPUTE_VALIDATION = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}


def lock_key(namespace: str) -> str:
    """The serialization key of a namespace's quota accounting, shared by admission and status refresh."""
    return f"quota/{namespace}"


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
            covered = st_hard == hard and tracked <= set(st.get("used") or {})
            new_used = None if covered else {r: (used[r] + delta[r] if r in delta else used[r]).canonical() for r in tracked}
            updates.append((q, {r: h.canonical() for r, h in hard.items()}, new_used,
                            {r: delta[r].canonical() for r in tracked if r in delta}))
        if a.dry_run or self.writer is None:
            return

        async def charge() -> None:
            # once the object is stored (the serialization lock still held): a recount by the resource quota
            # controller that listed before the write then conflicts with this one, or counted the object already
            for q, hard, new_used, charged in updates:
                await self.writer.charge(q, hard, new_used, charged)
        a.after_store.append(charge)
