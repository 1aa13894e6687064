"""The EndpointSlice controller (kube-controller-manager's endpointslice): for every Service with a selector, the
EndpointSlices (`kubernetes.io/service-name`, managed by endpointslice-controller.k8s.io, owned by the Service) that
list the Pods it selects — ready, serving and terminating conditions, the port each named targetPort resolves to,
at most 100 endpoints a slice. What they should hold is computed in kubeclass/api/endpoints.py; this loop writes
only the differences."""
from __future__ import annotations

from ..api import endpoints as ep
from ..api.podstate import new_controller_ref
from ..client import ApiError, Client, path_for
from .informers import Informers, key_of
from .workqueue import WorkQueue, run_workers


def _service_key(s: dict) -> list[str]:
    labels = s["metadata"].get("labels") or {}
    if labels.get(ep.MANAGED_BY_LABEL) != ep.MANAGED_BY or ep.SERVICE_NAME_LABEL not in labels:
        return []
    return [f"{s['metadata'].get('namespace', '')}/{labels[ep.SERVICE_NAME_LABEL]}"]


def services_selecting(services, pod: dict) -> list[str]:
    """Keys of the Services in the Pod's namespace that select it."""
    return [key_of(s) for s in services.list(pod["metadata"].get("namespace")) if ep.selects(s, pod)]


class EndpointSliceController:
    name = "endpointslice"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.services = informers.get("", "v1", "services")
        self.pods = informers.get("", "v1", "pods")
        self.slices = informers.get("discovery.k8s.io", "v1", "endpointslices")
        self.slices.add_index("service", _service_key)
        self.queue = WorkQueue(self.name)
        self.services.add_handlers(lambda s: self.queue.add(key_of(s)), lambda o, n: self.queue.add(key_of(n)),
                                   lambda s: self.queue.add(key_of(s)))
        self.pods.add_handlers(self._pod, lambda o, n: (self._pod(o), self._pod(n)), self._pod)
        self.slices.add_handlers(None, lambda o, n: self._slice(n), self._slice)

    def _pod(self, pod: dict) -> None:
        for k in services_selecting(self.services, pod):
            self.queue.add(k)

    def _slice(self, s: dict) -> None:
        for k in _service_key(s):
            self.queue.add(k)   # a slice changed or removed by someone else is put back

    async def run(self) -> None:
        await self.services.synced.wait()
        await self.pods.synced.wait()
        await self.slices.synced.wait()
        await run_workers(self.queue, self.sync, 2)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(ns, name)
        have = self.slices.by_index("service", key)
        path = path_for("discovery.k8s.io", "v1", "endpointslices", ns)
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            for s in have:
                await self._delete(ns, s)
            return
        want = ep.desired_slices(svc, self.pods.list(ns))
        labels = ep.slice_labels(svc)
        unused = list(have)
        for d in want:
            match = next((s for s in unused if (s.get("ports") or []) == d["ports"]), None)
            if match is not None:
                unused.remove(match)
                if (match.get("endpoints") or []) != d["endpoints"] or (match["metadata"].get("labels") or {}) != labels:
                    upd = {**match, "endpoints": d["endpoints"], "metadata": {**match["metadata"], "labels": labels}}
                    await self._write(self.client.update(path_for("discovery.k8s.io", "v1", "endpointslices", ns, match["metadata"]["name"]), upd))
                continue
            obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"generateName": f"{name[:57]}-", "namespace": ns, "labels": labels,
                                "ownerReferences": [new_controller_ref(svc, "v1", "Service")]},
                   "addressType": "IPv4", "endpoints": d["endpoints"], "ports": d["ports"]}
            await self._write(self.client.create(path, obj))
        for s in unused:
            await self._delete(ns, s)

    async def _write(self, coro) -> None:
        try:
            await coro
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    async def _delete(self, ns: str, s: dict) -> None:
        await self._write(self.client.delete(path_for("discovery.k8s.io", "v1", "endpointslices", ns, s["metadata"]["name"]),
                                             {"preconditions": {"uid": s["metadata"]["uid"]}}))
