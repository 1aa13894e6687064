"""Writes `ResourceQuota.status` for the ResourceQuota admission plugin: `charge` adds a stored object's
usage (a compare-and-swap of `used`, or the recount the plugin made when the status did not cover
`spec.hard` yet). Recounts after deletions are the resource quota controller's (kubeclass/controllers/
resourcequota.py, in `kubeclass controllers`); `refresh` recounts one namespace in process (benchmarks)."""
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

    async def charge(self, quota: dict, hard: dict, used: dict | None, delta: dict) -> None:
        """Add `delta` to the quota's current `used` (or set `used` when given) and `hard`, retried on conflicts."""
        ns, name = quota["metadata"]["namespace"], quota["metadata"]["name"]
        key = f"/registry/resourcequotas/{ns}/{name}"
        for _ in range(16):
            e = self.store.get(key)
            if e is None:
                return
            obj = e.copy()
            st = obj.get("status") or {}
            if used is None:
                cur = {r: quantity.parse(v) for r, v in (st.get("used") or {}).items()}
                zero = quantity.parse("0")
                new_used = {r: (cur.get(r, zero) + quantity.parse(delta[r]) if r in delta else cur.get(r, zero)).canonical() for r in hard}
            else:
                new_used = used
            new = {"hard": hard, "used": new_used}
            if st == new:
                return
            obj["status"] = new
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
            await self.charge(q, {k: quantity.canonical(v) for k, v in hard.items()}, {k: v.canonical() for k, v in used.items()}, {})
