"""The node's view of Services and EndpointSlices (one list+watch of each), shared by the service proxy and the
cluster DNS server: both read its caches and are told which Service changed."""
from __future__ import annotations

import asyncio
from typing import Callable

from ..client import Client, path_for


def slice_service(s: dict) -> str | None:
    svc = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
    return f"{s['metadata']['namespace']}/{svc}" if svc else None


class ServiceWatch:
    def __init__(self, client: Client):
        self.client = client
        self.services: dict[str, dict] = {}              # "ns/name" -> Service
        self.slices: dict[str, dict[str, dict]] = {}     # "ns/name" of the Service -> slice name -> EndpointSlice
        self.synced = asyncio.Event()
        self._synced = {"services": False, "slices": False}
        self.listeners: list[Callable[[set[str]], None]] = []   # called with the keys that changed (all, at a relist)

    def listen(self, fn: Callable[[set[str]], None]) -> None:
        self.listeners.append(fn)

    def _changed(self, keys: set[str]) -> None:
        if all(self._synced.values()):
            self.synced.set()
            for fn in self.listeners:
                fn(keys)

    def on_service(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            old = set(self.services)
            self.services = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in obj.get("items", [])}
            self._synced["services"] = True
            self._changed(old | set(self.services))
            return
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        if typ == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = obj
        self._changed({key})

    def on_slice(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            old = set(self.slices)
            self.slices = {}
            for s in obj.get("items", []):
                key = slice_service(s)
                if key is not None:
                    self.slices.setdefault(key, {})[s["metadata"]["name"]] = s
            self._synced["slices"] = True
            self._changed(old | set(self.slices))
            return
        key = slice_service(obj)
        if key is None:
            return
        if typ == "DELETED":
            self.slices.get(key, {}).pop(obj["metadata"]["name"], None)
        else:
            self.slices.setdefault(key, {})[obj["metadata"]["name"]] = obj
        self._changed({key})

    def service_slices(self, key: str) -> list[dict]:
        return list(self.slices.get(key, {}).values())

    async def run(self) -> None:
        await asyncio.gather(self.client.informer(path_for("", "v1", "services"), self.on_service),
                             self.client.informer(path_for("discovery.k8s.io", "v1", "endpointslices"), self.on_slice))
