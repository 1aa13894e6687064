"""The read side every store backend shares, on the event loop: the current objects (by key, and per kind
bucket in key order, as lists serve them), parsed objects per prefix for admission's listers, a bounded event
history, and the watchers. A backend feeds it the committed changes in revision order (`_apply_events`):
SQLite after each group commit, etcd from one watch of the whole prefix (kube-apiserver's watch cache).
Reads never wait on the backend."""
from __future__ import annotations

import asyncio
import bisect
import collections
from typing import AsyncIterator

from . import Compacted, Entry, Event

HISTORY = 200_000
WATCH_QUEUE = 10_000                 # events a watcher may have waiting before it is closed as too slow
WATCH_QUEUE_BYTES = 16 * 1024 * 1024  # ... or bytes of objects (a watcher that never reads must not hold 100s of MB)


def _bucket(key: str) -> tuple[str, str]:
    # "/registry/pods/ns/name" -> ("/registry/pods/", "ns/name")
    i = key.index("/", key.index("/", 1) + 1)
    return key[: i + 1], key[i + 1:]


class Watcher:
    def __init__(self, store: "Cache", prefix: str):
        self.store = store
        self.prefix = prefix
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = False
        self.bytes = 0   # of the objects queued

    def push(self, ev: Event) -> None:
        if self.closed:
            return
        size = len(ev.entry.raw) if ev.entry is not None else 0
        if self.queue.qsize() >= WATCH_QUEUE or self.bytes + size > WATCH_QUEUE_BYTES:
            # too slow: end the watch, the client watches again from its last resourceVersion (or re-lists),
            # as the apiserver's watch cache does with a watcher whose buffer is full
            self.close()
            return
        self.bytes += size
        self.queue.put_nowait(ev)

    def _taken(self, ev: Event) -> Event:
        if ev is not None and ev.entry is not None:
            self.bytes -= len(ev.entry.raw)
        return ev

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._watchers.discard(self)
            self.queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def next_batch(self, timeout: float, limit: int = 256) -> list[Event] | None:
        """The events queued now (waiting up to `timeout` for the first): [] on timeout, None once the
        watch has ended. A busy watch sends many events in one write instead of one write each."""
        q = self.queue
        if q.empty():
            try:
                async with asyncio.timeout(timeout):
                    ev = self._taken(await q.get())
            except TimeoutError:
                return []
        else:
            ev = self._taken(q.get_nowait())
        if ev is None:
            return None
        out = [ev]
        while len(out) < limit and not q.empty():
            ev = self._taken(q.get_nowait())
            if ev is None:
                q.put_nowait(None)  # seen again by the next call, after these are sent
                break
            out.append(ev)
        return out

    async def _iter(self):
        while True:
            ev = self._taken(await self.queue.get())
            if ev is None:
                return
            yield ev


class Cache:
    """Mixed into a store: call _init_cache() first, then load() current entries, then _apply_events()."""

    def _init_cache(self) -> None:
        self._cache: dict[str, dict[str, Entry]] = collections.defaultdict(dict)
        self._sorted: dict[str, list[tuple[str, Entry]]] = {}
        self._objects: dict[str, list[dict]] = {}       # prefix -> parsed objects (list_objects)
        self._object_prefixes: dict[str, list[str]] = {}   # bucket -> its prefixes in _objects
        self._flat: dict[str, Entry] = {}                  # key -> entry: the same cache, for get()
        self._history: collections.deque[tuple[int, Event]] = collections.deque(maxlen=HISTORY)
        self._watchers: set[Watcher] = set()
        self.corrupt: dict[str, str] = {}
        self.cache_rev = 0
        self.compacted_rev = 0

    def items(self) -> list[tuple[str, Entry]]:
        """Every current (key, entry), in key order."""
        return sorted(self._flat.items())

    def _fill_buckets(self) -> None:
        """After _flat was filled directly (start-up): the per-kind buckets."""
        self._cache.clear()
        self._sorted.clear()
        self._objects.clear()
        self._object_prefixes.clear()
        for key, ent in self._flat.items():
            b, rest = _bucket(key)
            self._cache[b][rest] = ent

    @property
    def revision(self) -> int:
        return self.cache_rev

    def get(self, key: str) -> Entry | None:
        return self._flat.get(key)

    def list(self, prefix: str) -> tuple[list[tuple[str, Entry]], int]:
        b, sub = _bucket(prefix) if prefix.count("/") >= 3 else (prefix, "")
        bucket = self._cache.get(b)
        if not bucket:
            return [], self.cache_rev
        pairs = self._sorted.get(b)
        if pairs is None:
            # materialized once per bucket and reused until the next write to it
            pairs = self._sorted[b] = [(b + k, bucket[k]) for k in sorted(bucket)]
        if sub:
            lo = bisect.bisect_left(pairs, (b + sub,))
            hi = bisect.bisect_left(pairs, (b + sub[:-1] + chr(ord(sub[-1]) + 1),), lo)
            return pairs[lo:hi], self.cache_rev
        return pairs, self.cache_rev

    def list_objects(self, prefix: str) -> list[dict]:
        """The parsed objects under prefix (shared: callers must not mutate them), kept until the next
        write to their bucket: admission reads the same few kinds (LimitRanges, quotas, policies) on
        every request, and most of the time nothing there changed."""
        out = self._objects.get(prefix)
        if out is None:
            b = _bucket(prefix)[0] if prefix.count("/") >= 3 else prefix
            out = self._objects[prefix] = [e.obj for _, e in self.list(prefix)[0]] if self._cache.get(b) else []
            self._object_prefixes.setdefault(b, []).append(prefix)
        return out

    def watch(self, prefix: str, from_rev: int) -> Watcher:
        """Events with revision > from_rev under prefix. Raises Compacted if history is gone."""
        w = Watcher(self, prefix)
        if from_rev < self.cache_rev:
            oldest = self._history[0][0] if self._history else self.cache_rev + 1
            if from_rev < oldest - 1 or from_rev < self.compacted_rev:
                raise Compacted(from_rev, max(oldest - 1, self.compacted_rev))
            for rev, ev in self._history:
                if rev > from_rev and ev.key.startswith(prefix):
                    w.queue.put_nowait(ev)   # counted, not refused: these are the history's own objects
                    w.bytes += len(ev.entry.raw) if ev.entry is not None else 0
        self._watchers.add(w)
        return w

    def _apply_events(self, events: list[Event]) -> None:
        """Committed changes, in revision order: the cache, the history and the watchers follow."""
        for ev in events:
            b, rest = _bucket(ev.key)
            bucket = self._cache[b]
            ev.prev = bucket.get(rest)
            self._sorted.pop(b, None)
            for p in self._object_prefixes.pop(b, ()):
                self._objects.pop(p, None)
            if ev.type == "DELETED":
                bucket.pop(rest, None)
                self._flat.pop(ev.key, None)
                self.corrupt.pop(ev.key, None)
            else:
                bucket[rest] = self._flat[ev.key] = ev.entry
            self.cache_rev = ev.entry.rev
            self._history.append((ev.entry.rev, ev))
            for w in list(self._watchers):
                if ev.key.startswith(w.prefix):
                    w.push(ev)
