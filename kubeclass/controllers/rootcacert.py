"""The root CA certificate publisher (kube-controller-manager's root-ca-cert-publisher): a ConfigMap
`kube-root-ca.crt` with the API server's CA bundle (`ca.crt`) in every namespace, kept as it should be,
so a Pod's kube-api-access volume can verify the API server."""
from __future__ import annotations

import asyncio

from ..api import serviceaccounts
from ..client import ApiError, Client, path_for
from .informers import Informers
from .workqueue import WorkQueue, run_workers


class RootCACertPublisher:
    name = "root-ca-cert-publisher"

    def __init__(self, client: Client, informers: Informers, ca_pem: str):
        self.client, self.ca = client, ca_pem
        self.namespaces = informers.get("", "v1", "namespaces")
        self.configmaps = informers.get("", "v1", "configmaps")
        self.queue = WorkQueue(self.name)
        self.namespaces.add_handlers(lambda ns: self.queue.add(ns["metadata"]["name"]), lambda old, new: self.queue.add(new["metadata"]["name"]))
        self.configmaps.add_handlers(on_update=lambda old, new: self._cm(new), on_delete=self._cm)

    def _cm(self, cm: dict) -> None:
        if cm["metadata"]["name"] == serviceaccounts.ROOT_CA_CONFIGMAP:
            self.queue.add(cm["metadata"]["namespace"])

    async def run(self) -> None:
        await asyncio.gather(self.namespaces.synced.wait(), self.configmaps.synced.wait())
        await run_workers(self.queue, self.sync, 5)

    def _want(self, ns: str) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": serviceaccounts.ROOT_CA_CONFIGMAP, "namespace": ns,
                             "annotations": {"kubernetes.io/description": serviceaccounts.ROOT_CA_DESCRIPTION}},
                "data": {"ca.crt": self.ca}}

    async def sync(self, ns: str) -> None:
        n = self.namespaces.get(None, ns)
        if n is None or n["metadata"].get("deletionTimestamp") or (n.get("status") or {}).get("phase") == "Terminating":
            return
        cur = self.configmaps.get(ns, serviceaccounts.ROOT_CA_CONFIGMAP)
        want = self._want(ns)
        try:
            if cur is None:
                await self.client.create(path_for("", "v1", "configmaps", ns), want)
            elif cur.get("data") != want["data"] or \
                    (cur["metadata"].get("annotations") or {}).get("kubernetes.io/description") != serviceaccounts.ROOT_CA_DESCRIPTION:
                md = cur["metadata"]
                body = {**want, "metadata": {**want["metadata"], "resourceVersion": md["resourceVersion"],
                                             "annotations": {**(md.get("annotations") or {}), **want["metadata"]["annotations"]}}}
                await self.client.update(path_for("", "v1", "configmaps", ns, serviceaccounts.ROOT_CA_CONFIGMAP), body)
        except ApiError as e:
            if e.status not in (409, 403, 404):
                raise
