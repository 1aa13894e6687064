"""Shared informers, as client-go's SharedInformerFactory: one list+watch per resource for every
controller in the process, a cache of its objects with secondary indexes, and handlers called on add,
update and delete (a relist after a dropped watch is turned into the adds, updates and deletes it implies)."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..client import Client, path_for

log = logging.getLogger("kubeclass.informers")

IndexFn = Callable[[dict], list[str]]


def key_of(obj: dict) -> str:
    md = obj["metadata"]
    return f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"]


def by_namespace(obj: dict) -> list[str]:
    return [obj["metadata"].get("namespace", "")]


def by_controller_uid(obj: dict) -> list[str]:
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller") and r.get("uid")]


class Handlers:
    def __init__(self, on_add=None, on_update=None, on_delete=None):
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete


class Informer:
    def __init__(self, client: Client, group: str, version: str, plural: str):
        self.client = client
        self.group, self.version, self.plural = group, version, plural
        self.path = path_for(group, version, plural)
        self.items: dict[str, dict] = {}
        self.synced = asyncio.Event()
        self._handlers: list[Handlers] = []
        self._indexers: dict[str, IndexFn] = {"namespace": by_namespace}
        self._indexes: dict[str, dict[str, set[str]]] = {"namespace": {}}

    # ---- registration (before run)
    def add_handlers(self, on_add=None, on_update=None, on_delete=None) -> None:
        self._handlers.append(Handlers(on_add, on_update, on_delete))

    def add_index(self, name: str, fn: IndexFn) -> None:
        if name in self._indexers:
            return
        self._indexers[name] = fn
        idx = self._indexes[name] = {}
        for k, obj in self.items.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(k)

    # ---- reads
    def get(self, namespace: str | None, name: str) -> dict | None:
        return self.items.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.items.values())
        return self.by_index("namespace", namespace)

    def by_index(self, name: str, value: str) -> list[dict]:
        return [self.items[k] for k in self._indexes[name].get(value, ())]

    # ---- the cache
    def _index(self, key: str, obj: dict | None, old: dict | None) -> None:
        for name, fn in self._indexers.items():
            idx = self._indexes[name]
            before = fn(old) if old is not None else []
            after = fn(obj) if obj is not None else []
            if before == after:
                continue
            for v in before:
                s = idx.get(v)
                if s is not None:
                    s.discard(key)
                    if not s:
                        del idx[v]
            for v in after:
                idx.setdefault(v, set()).add(key)

    def _put(self, obj: dict) -> None:
        key = key_of(obj)
        old = self.items.get(key)
        self.items[key] = obj
        self._index(key, obj, old)
        for h in self._handlers:
            try:
                if old is None:
                    h.on_add and h.on_add(obj)
                else:
                    h.on_update and h.on_update(old, obj)
            except Exception:  # noqa: BLE001 - one handler's bug must not stop the informer
                log.exception("%s handler failed", self.plural)

    def _remove(self, key: str) -> None:
        old = self.items.pop(key, None)
        if old is None:
            return
        self._index(key, None, old)
        for h in self._handlers:
            try:
                h.on_delete and h.on_delete(old)
            except Exception:  # noqa: BLE001
                log.exception("%s handler failed", self.plural)

    def _on(self, typ: str, obj: dict) -> None:
        if typ == "SYNCED":
            fresh = {key_of(o): o for o in obj.get("items") or []}
            for k in [k for k in self.items if k not in fresh]:
                self._remove(k)
            for k, o in fresh.items():
                cur = self.items.get(k)
                if cur is None or cur["metadata"].get("resourceVersion") != o["metadata"].get("resourceVersion"):
                    self._put(o)
            self.synced.set()
        elif typ == "DELETED":
            self._remove(key_of(obj))
        else:
            self._put(obj)

    async def run(self) -> None:
        await self.client.informer(self.path, self._on)


class Informers:
    """One informer per resource, shared by the controllers of one process."""

    def __init__(self, client: Client):
        self.client = client
        self._all: dict[tuple[str, str, str], Informer] = {}
        self._tasks: dict[tuple[str, str, str], asyncio.Task] = {}
        self._started = False

    def get(self, group: str, version: str, plural: str) -> Informer:
        k = (group, version, plural)
        inf = self._all.get(k)
        if inf is None:
            inf = self._all[k] = Informer(self.client, group, version, plural)
            if self._started:
                self._tasks[k] = asyncio.ensure_future(inf.run())
        return inf

    def start(self) -> None:
        self._started = True
        for k, inf in self._all.items():
            if k not in self._tasks:
                self._tasks[k] = asyncio.ensure_future(inf.run())

    def stop(self, group: str, version: str, plural: str) -> None:
        t = self._tasks.pop((group, version, plural), None)
        self._all.pop((group, version, plural), None)
        if t is not None:
            t.cancel()

    async def wait_synced(self, *informers: Informer) -> None:
        await asyncio.gather(*(i.synced.wait() for i in informers or self._all.values()))

    async def close(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
