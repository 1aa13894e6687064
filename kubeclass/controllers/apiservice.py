"""The APIService availability controller (kube-aggregator's): a non-local APIService is Available when its
Service exists and has a ready endpoint on the referenced port; ServiceNotFound / ServicePortError /
MissingEndpoints otherwise, with upstream's messages. Local APIServices are always available."""
from __future__ import annotations

from ..api import apiservices
from ..client import ApiError, Client, path_for
from .informers import Informers, key_of
from .workqueue import WorkQueue, run_workers


class APIServiceAvailability:
    name = "apiservice-availability"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.apiservices = informers.get("apiregistration.k8s.io", "v1", "apiservices")
        self.services = informers.get("", "v1", "services")
        self.slices = informers.get("discovery.k8s.io", "v1", "endpointslices")
        self.queue = WorkQueue(self.name)
        self.apiservices.add_handlers(self._enqueue, lambda o, n: self._enqueue(n), None)
        for inf in (self.services, self.slices):
            inf.add_handlers(lambda o: self._all(), lambda o, n: self._all(), lambda o: self._all())

    def _enqueue(self, a: dict) -> None:
        if (a.get("spec") or {}).get("service"):
            self.queue.add(key_of(a))

    def _all(self) -> None:
        for a in self.apiservices.list():
            self._enqueue(a)

    def _ready(self, svc_key: str, port_name: str) -> bool:
        ns, _, name = svc_key.partition("/")
        for s in self.slices.list(ns):
            if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            if not any((p.get("name") or "") == port_name for p in s.get("ports") or []):
                continue
            if any((e.get("conditions") or {}).get("ready", True) for e in s.get("endpoints") or []):
                return True
        return False

    async def run(self) -> None:
        for inf in (self.apiservices, self.services, self.slices):
            await inf.synced.wait()
        self._all()
        await run_workers(self.queue, self.sync, 1)

    async def sync(self, key: str) -> None:
        a = self.apiservices.get(None, key)
        if a is None or not (a.get("spec") or {}).get("service"):
            return
        services = {key_of(s): s for s in self.services.list()}
        ok, reason, message = apiservices.availability(a, services, self._ready)
        cur = apiservices.condition(a)
        if cur is not None and (cur.get("status") == ("True" if ok else "False")) and cur.get("reason") == reason \
                and cur.get("message") == message:
            return
        since = cur.get("lastTransitionTime") if cur is not None and cur.get("status") == ("True" if ok else "False") else None
        body = {**a, "status": {**(a.get("status") or {}), "conditions": [apiservices.available(ok, reason, message, since)]}}
        try:
            await self.client.update(path_for("apiregistration.k8s.io", "v1", "apiservices", None, key, "status"), body)
        except ApiError as e:
            if e.status not in (404, 409):
                raise
