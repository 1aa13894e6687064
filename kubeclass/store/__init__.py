"""The storage contract every backend implements (kine-sized: revisioned keys, CAS, range, watch, compact).

Values are API objects (dicts). The store owns `metadata.resourceVersion`: it is the object's
modification revision, set on every write. Revisions come from one global, increasing counter.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import AsyncIterator, Protocol

import orjson


def encode(obj: dict) -> bytes:
    """An object's stored bytes, `kind` and `apiVersion` first when it has them: a list response drops them from
    each built-in item (as upstream) by slicing the bytes instead of decoding them."""
    if "kind" in obj and "apiVersion" in obj and list(itertools.islice(obj, 2)) != ["kind", "apiVersion"]:
        obj = {"kind": obj["kind"], "apiVersion": obj["apiVersion"],
               **{k: v for k, v in obj.items() if k != "kind" and k != "apiVersion"}}
    return orjson.dumps(obj)


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    pass


class KeyNotFound(StoreError):
    pass


class RevisionConflict(StoreError):
    pass


class StoreFull(StoreError):
    """The disk (or the store's quota) is full: writes fail, reads go on."""


class StoreDamaged(StoreError):
    """The store cannot be opened as this cluster's: unreadable, not a database, or another cluster's (or
    emptied). Start-up stops with its message."""


class Compacted(StoreError):
    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(slots=True)
class Entry:
    """A stored object: its JSON bytes (resourceVersion embedded) and revision; `obj` parsed lazily."""
    raw: bytes
    rev: int
    _obj: dict | None = None

    @property
    def obj(self) -> dict:
        """Parsed object, shared: callers must not mutate it (use `copy()`)."""
        if self._obj is None:
            import orjson
            self._obj = orjson.loads(self.raw)
        return self._obj

    def copy(self) -> dict:
        import orjson
        return orjson.loads(self.raw)


@dataclass(slots=True)
class Event:
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    entry: Entry
    prev: Entry | None = None


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...
    async def next_batch(self, timeout: float, limit: int = 256) -> list[Event] | None: ...
    def close(self) -> None: ...


class Store(Protocol):
    @property
    def revision(self) -> int: ...
    async def create(self, key: str, obj: dict) -> Entry: ...
    async def update(self, key: str, obj: dict, expected_rev: int | None) -> Entry: ...
    async def delete(self, key: str, expected_rev: int | None = None) -> Entry: ...
    def get(self, key: str) -> Entry | None: ...
    def list(self, prefix: str) -> tuple[list[tuple[str, Entry]], int]: ...
    def list_objects(self, prefix: str) -> list[dict]: ...
    def watch(self, prefix: str, from_rev: int) -> Watch: ...
    async def compact(self, rev: int) -> None: ...
    async def close(self) -> None: ...
