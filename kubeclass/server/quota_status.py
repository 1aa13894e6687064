"""Keeps `ResourceQuota.status` current when usage drops or limits change (upstream's resourcequota
controller): follows the store's watch for pod deletions and phase changes and for quota spec changes,
and rewrites `status.hard` / `status.used` of the namespace's quotas. Usage only grows through the
ResourceQuota admission plugin, which writes status itself (through `set_quota_status`).

It runs inside the API server process on the store's watch; when `kubeclass controllers` exists as its
own command this moves there and talks through the API like the other controllers."""
from __future__ import annotations

import asyncio
import logging

from ..admission.resourcequota import counted, lock_key, namespace_usage
from ..api import quantity, registry
from ..store import KeyNotFound, RevisionConflict

log = logging.getLogger("kubeclass.quota")


class QuotaStatus:
    def __init__(self, store, locks: dict[str, asyncio.Lock]):
        self.store = store
        self.locks = locks  # shared with the REST layer's admission serialization
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    async def set_quota_status(self, quota: dict, hard: dict, used: dict) -> None:
        ns, name = quota["metadata"]["namespace"], quota["metadata"]["name"]
        key = f"/registry/resourcequotas/{ns}/{name}"
        for _ in range(8):
            e = self.store.get(key)
            if e is None:
                return
            obj = e.copy()
            if obj.get("status") == {"hard": hard, "used": used}:
                return
            obj["status"] = {"hard": hard, "used": used}
            try:
                await self.store.update(key, obj, e.rev)
                return
            except RevisionConflict:
                continue
            except KeyNotFound:
                return

    async def refresh(self, ns: str) -> None:
        async with self.locks.setdefault(lock_key(ns), asyncio.Lock()):
            await self._refresh(ns)

    async def _refresh(self, ns: str) -> None:
        quotas = [e.obj for _, e in self.store.list(f"/registry/resourcequotas/{ns}/")[0]]
        if not quotas:
            return
        pods = [e.obj for _, e in self.store.list(f"/registry/pods/{ns}/")[0]]
        for q in quotas:
            hard = (q.get("spec") or {}).get("hard") or {}
            others = {}
            for group, plural in counted(set(hard)):
                res = registry.STORAGE.get((group, plural))
                others[(group, plural)] = [e.obj for _, e in self.store.list(res.key_prefix(ns))[0]] if res else []
            used = namespace_usage(pods, set(hard), others)
            await self.set_quota_status(q, {k: quantity.canonical(v) for k, v in hard.items()},
                                        {k: v.canonical() for k, v in used.items()})

    async def run(self) -> None:
        w = self.store.watch("/registry/", self.store.revision)
        for _, e in self.store.list("/registry/resourcequotas/")[0]:
            self._dirty.add(e.obj["metadata"]["namespace"])
        asyncio.get_running_loop().create_task(self._worker())
        self._wake.set()
        async for ev in w:
            key = ev.key
            if key.startswith("/registry/pods/"):
                if not self._has_quota(key.split("/", 4)[3]):
                    continue   # no quota counts this namespace's pods (a quota added later recounts them)
                prev = ev.prev.obj if ev.prev is not None else None
                cur = ev.entry.obj
                terminal = (cur.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                was_terminal = prev is not None and (prev.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                if ev.type == "DELETED" or (terminal and not was_terminal) or cur["metadata"].get("deletionTimestamp"):
                    self._dirty.add(key.split("/")[3])
                    self._wake.set()
            elif key.startswith("/registry/resourcequotas/"):
                prev = ev.prev.obj if ev.prev is not None else None
                if ev.type == "ADDED" or ev.type == "DELETED" or (prev is not None and prev.get("spec") != ev.entry.obj.get("spec")):
                    self._dirty.add(key.split("/")[3])
                    self._wake.set()
            elif ev.type == "DELETED":
                ns = ev.entry.obj.get("metadata", {}).get("namespace")
                if ns and self._has_quota(ns):
                    self._dirty.add(ns)   # an object a quota may count is gone
                    self._wake.set()

    def _has_quota(self, ns: str) -> bool:
        return bool(self.store.list_objects(f"/registry/resourcequotas/{ns}/"))

    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.05)  # coalesce bursts of deletions
            while self._dirty:
                ns = self._dirty.pop()
                try:
                    await self.refresh(ns)
                except Exception:
                    log.exception("quota status refresh failed for namespace %s", ns)
