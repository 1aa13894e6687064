"""The resource quota controller (kube-controller-manager's resourcequota controller): recounts a
namespace's usage into `ResourceQuota.status` (`hard`, `used`) when a quota appears or changes, when
counted objects go (replenishment: Pods deleted or finished, other counted kinds deleted), and every
--resource-quota-sync-period (5 minutes, as upstream).

Race-free with the ResourceQuota admission plugin, which charges a new object only after the object is
stored (a read-modify-write of `used`): the recount reads the quota, then lists the namespace consistently,
then writes with the quota's resourceVersion, so a charge that lands in between makes the write conflict
and the recount starts again; a recount never lowers `used` below what is stored."""
from __future__ import annotations

import asyncio
import logging

from ..api import quantity, quota
from ..client import ApiError, Client, path_for
from .informers import Informers
from .workqueue import Requeue, WorkQueue, run_workers

log = logging.getLogger("kubeclass.resourcequota")
SYNC_PERIOD = 300.0


def _terminal(p: dict) -> bool:
    return (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class ResourceQuotaController:
    name = "resourcequota"

    def __init__(self, client: Client, informers: Informers, sync_period: float = SYNC_PERIOD):
        self.client = client
        self.informers = informers
        self.sync_period = sync_period
        self.quotas = informers.get("", "v1", "resourcequotas")
        self.pods = informers.get("", "v1", "pods")
        self.queue = WorkQueue(self.name)
        self._followed: set[tuple[str, str]] = set()
        self.quotas.add_handlers(self._quota, lambda old, new: self._quota_changed(old, new), self._quota)
        self.pods.add_handlers(on_update=self._pod_updated, on_delete=self._counted_gone)

    def _has_quota(self, ns: str) -> bool:
        return bool(self.quotas.list(ns))

    def _quota(self, q: dict) -> None:
        self.queue.add(q["metadata"]["namespace"])
        self._follow(q)

    def _quota_changed(self, old: dict, q: dict) -> None:
        if old.get("spec") != q.get("spec"):
            self._quota(q)

    def _follow(self, q: dict) -> None:
        """Other kinds a quota counts (count/configmaps, services, ...): their deletions replenish it."""
        for g, plural in quota.counted(set(((q.get("spec") or {}).get("hard") or {}))):
            if (g, plural) in self._followed:
                continue
            self._followed.add((g, plural))
            version = "v1"
            try:
                inf = self.informers.get(g, version, plural)
            except Exception:  # noqa: BLE001
                continue
            inf.add_handlers(on_delete=self._counted_gone)

    def _pod_updated(self, old: dict, p: dict) -> None:
        ns = p["metadata"].get("namespace", "")
        if not self._has_quota(ns):
            return
        if (_terminal(p) and not _terminal(old)) or (p["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp")):
            self.queue.add(ns)

    def _counted_gone(self, obj: dict) -> None:
        ns = obj["metadata"].get("namespace", "")
        if ns and self._has_quota(ns):
            self.queue.add(ns)

    async def run(self) -> None:
        await asyncio.gather(self.quotas.synced.wait(), self.pods.synced.wait())
        for q in self.quotas.list():
            self._follow(q)
        await asyncio.gather(run_workers(self.queue, self.sync, 3), self._resync())

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for q in self.quotas.list():
                self.queue.add(q["metadata"]["namespace"])

    async def sync(self, ns: str) -> None:
        for cached in self.quotas.list(ns):
            name = cached["metadata"]["name"]
            path = path_for("", "v1", "resourcequotas", ns, name)
            try:
                q = await self.client.get(path)          # 1. the quota, at its current resourceVersion
            except ApiError as e:
                if e.status == 404:
                    continue
                raise
            hard = (q.get("spec") or {}).get("hard") or {}
            tracked = set(hard)
            # 2. the namespace's objects, a consistent list taken after that read
            pods = (await self.client.list(path_for("", "v1", "pods", ns)))["items"] if any(
                not r.startswith("count/") or r == "count/pods" for r in tracked) else []
            others = {}
            for g, plural in quota.counted(tracked):
                try:
                    others[(g, plural)] = (await self.client.list(path_for(g, "v1", plural, ns)))["items"]
                except ApiError as e:
                    if e.status != 404:
                        raise
                    others[(g, plural)] = []
            used = quota.namespace_usage(pods, tracked, others)
            status = {"hard": {k: quantity.canonical(v) for k, v in hard.items()}, "used": {k: v.canonical() for k, v in used.items()}}
            if q.get("status") == status:
                continue
            try:                                         # 3. written only if nothing was charged meanwhile
                await self.client.update(path + "/status", {**q, "status": status})
            except ApiError as e:
                if e.status == 409:
                    raise Requeue() from e
                if e.status != 404:
                    raise
