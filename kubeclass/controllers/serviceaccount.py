"""The service account controller (kube-controller-manager's serviceaccount-controller): every active
namespace has a `default` ServiceAccount; one deleted is made again."""
from __future__ import annotations

import asyncio

from ..client import ApiError, Client, path_for
from .informers import Informers
from .workqueue import WorkQueue, run_workers

NAMES = ("default",)


class ServiceAccountController:
    name = "serviceaccount"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.namespaces = informers.get("", "v1", "namespaces")
        self.accounts = informers.get("", "v1", "serviceaccounts")
        self.queue = WorkQueue(self.name)
        self.namespaces.add_handlers(self._ns, lambda old, new: self._ns(new))
        self.accounts.add_handlers(on_delete=lambda sa: self.queue.add(sa["metadata"]["namespace"]))

    def _ns(self, ns: dict) -> None:
        self.queue.add(ns["metadata"]["name"])

    async def run(self) -> None:
        await asyncio.gather(self.namespaces.synced.wait(), self.accounts.synced.wait())
        await run_workers(self.queue, self.sync, 5)

    async def sync(self, ns: str) -> None:
        n = self.namespaces.get(None, ns)
        if n is None or n["metadata"].get("deletionTimestamp") or (n.get("status") or {}).get("phase") == "Terminating":
            return
        for name in NAMES:
            if self.accounts.get(ns, name) is not None:
                continue
            try:
                await self.client.create(path_for("", "v1", "serviceaccounts", ns),
                                         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
            except ApiError as e:
                if e.status not in (409, 403, 404):   # exists already, or the namespace is going away
                    raise
