"""`kubeclass store copy --from sqlite:DIR --to etcd:URL[,URL...]` (or the other way): every object of a cluster's
store written into another, empty, store — how an existing cluster moves from the embedded SQLite file to etcd.

Run it with the cluster stopped. The objects keep everything but their resourceVersions: the target store numbers
its revisions itself (etcd's revision, or SQLite's counter), so every resourceVersion changes. Clients that kept
one (watches, informers, `kubectl get -w`) must relist: the API server answers a watch from an old resourceVersion
with 410 Gone / `Too large resource version`, as after an etcd restore, and client-go's reflectors then relist."""
from __future__ import annotations

import os

from . import StoreError

PREFIX = "/registry/"


def parse(spec: str) -> tuple[str, str]:
    kind, _, where = spec.partition(":")
    if kind not in ("sqlite", "etcd") or not where:
        raise ValueError(f"{spec!r}: give sqlite:DATA_DIR or etcd:URL[,URL...]")
    return kind, where


async def open_store(spec: str, etcd_prefix: str = "/registry", create: bool = False):
    """The store a spec names; create: a SQLite data directory and its store file may be new (a copy's target)."""
    kind, where = parse(spec)
    if kind == "sqlite":
        from .sqlite import SQLiteStore
        if create:
            os.makedirs(where, mode=0o700, exist_ok=True)
        path = os.path.join(where, "kubeclass.db") if os.path.isdir(where) else where
        if not create and not os.path.exists(path):
            raise ValueError(f"no store at {path}")
        return SQLiteStore(path)
    from .etcd import EtcdStore, endpoints_of
    endpoints, _ = endpoints_of(where.split(","))
    return await EtcdStore(endpoints, etcd_prefix).open(timeout=10)


async def copy(source, target, progress=None) -> int:
    """Copy every object; the target must hold none. Returns how many were copied."""
    if target.items():
        raise StoreError("the target store is not empty: copy into a new, empty store")
    n = 0
    for key, ent in source.items():
        if not key.startswith(PREFIX):
            continue
        obj = ent.copy()
        (obj.get("metadata") or {}).pop("resourceVersion", None)
        await target.create(key, obj)
        n += 1
        if progress is not None and n % 1000 == 0:
            progress(n)
    return n
