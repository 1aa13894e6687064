"""The endpoints controller (kube-controller-manager's endpoint): the legacy core/v1 Endpoints object of every
Service with a selector, named as the Service — ready Pods' addresses, the others' as notReadyAddresses, grouped by
the ports their targetPorts resolve to. Services without a selector keep Endpoints their users write."""
from __future__ import annotations

from ..api import endpoints as ep
from ..client import ApiError, Client, path_for
from .endpointslice import services_selecting
from .informers import Informers, key_of
from .workqueue import WorkQueue, run_workers


class EndpointsController:
    name = "endpoint"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.services = informers.get("", "v1", "services")
        self.pods = informers.get("", "v1", "pods")
        self.endpoints = informers.get("", "v1", "endpoints")
        self.queue = WorkQueue(self.name)
        self.services.add_handlers(lambda s: self.queue.add(key_of(s)), lambda o, n: self.queue.add(key_of(n)),
                                   lambda s: self.queue.add(key_of(s)))
        self.pods.add_handlers(self._pod, lambda o, n: (self._pod(o), self._pod(n)), self._pod)
        self.endpoints.add_handlers(None, None, lambda e: self.queue.add(key_of(e)))

    def _pod(self, pod: dict) -> None:
        for k in services_selecting(self.services, pod):
            self.queue.add(k)

    async def run(self) -> None:
        await self.services.synced.wait()
        await self.pods.synced.wait()
        await self.endpoints.synced.wait()
        await run_workers(self.queue, self.sync, 2)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(ns, name)
        cur = self.endpoints.get(ns, name)
        path = path_for("", "v1", "endpoints", ns, name)
        try:
            if svc is None:
                if cur is not None:
                    await self.client.delete(path, {"preconditions": {"uid": cur["metadata"]["uid"]}})
                return
            if not (svc.get("spec") or {}).get("selector"):
                return
            subsets = ep.desired_subsets(svc, self.pods.list(ns))
            labels = ep.endpoints_labels(svc)
            body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels}}
            if subsets:
                body["subsets"] = subsets
            if cur is None:
                if not labels:
                    body["metadata"].pop("labels")
                await self.client.create(path_for("", "v1", "endpoints", ns), body)
            elif (cur.get("subsets") or []) != subsets or (cur["metadata"].get("labels") or {}) != labels:
                upd = {**cur, "metadata": {**cur["metadata"], "labels": labels}}
                upd.pop("subsets", None)
                if subsets:
                    upd["subsets"] = subsets
                await self.client.update(path, upd)
        except ApiError as e:
            if e.status not in (404, 409):
                raise
