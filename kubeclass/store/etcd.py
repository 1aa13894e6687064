"""The store contract on etcd v3 (kube-apiserver's storage: resourceVersion is etcd's revision).

Writes are etcd transactions, as upstream's etcd3 store does them: a create puts only when the key's
create_revision is 0; an update or delete with a precondition compares the key's mod_revision; an unconditional
one compares that the key exists. Objects are stored without `metadata.resourceVersion`; it is set from the
revision when they are read. Events (`/registry/events/...`) are written with a lease of one hour (upstream's
`--event-ttl`), one lease shared per minute of writes as upstream's lease manager does.

Reads are served by a watch cache (store/cache.py, as kube-apiserver's cacher): the prefix is listed once at a
pinned revision, then one etcd watch from the next revision feeds every change, in order, into the cache, its
history and the API's watchers — so several API servers on one etcd each see every write, whichever took it. A
write returns once the cache holds it (this server reads its own writes), and a GET or LIST without a
resourceVersion first asks etcd for its current revision and waits for the cache to reach it (fresh()), so reads
through any server see every write acknowledged before them, whichever server took it. When etcd has compacted past what the
cache has seen (a long disconnection), the cache is rebuilt by a new list and every watcher is closed: its client
watches again or relists, as after a 410 from upstream.

Client: etcd3aio (asyncio over grpc.aio; README, library table)."""
from __future__ import annotations

import asyncio
import logging
import time

import orjson

from . import Entry, Event, KeyExists, KeyNotFound, RevisionConflict, StoreError, StoreFull, encode
from .cache import Cache

log = logging.getLogger("kubeclass.store")

EVENT_TTL = 3600          # seconds, upstream's --event-ttl default
LEASE_REUSE = 60          # seconds during which new events share one lease (upstream's leaseManager)
PAGE = 2000               # keys per range request while the cache is filled


def endpoints_of(urls: list[str]) -> tuple[list[str], bool]:
    """etcd member URLs (http://host:port, or host:port) as the client's host:port endpoints; and whether any is https."""
    import urllib.parse
    endpoints, secure = [], False
    for u in urls:
        parsed = urllib.parse.urlsplit(u if "://" in u else "http://" + u)
        if not parsed.hostname or not parsed.port:
            raise ValueError(f"{u!r} is not an etcd URL with a host and port (http://127.0.0.1:2379)")
        endpoints.append(f"{parsed.hostname}:{parsed.port}")
        secure = secure or parsed.scheme == "https"
    return endpoints, secure


class EtcdStore(Cache):
    def __init__(self, endpoints: list[str], prefix: str = "/registry", ca: bytes | None = None,
                 cert: bytes | None = None, key: bytes | None = None):
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/")
        self.tls = {"ca_cert": ca, "cert_chain": cert, "cert_key": key} if ca or cert else {}
        self.client = None
        self._init_cache()
        self._task: asyncio.Task | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._lease: tuple[int, float] | None = None
        self._lease_lock = asyncio.Lock()
        self._rev_fetch: asyncio.Future | None = None
        self.full = False

    # ---------------------------------------------------------------- keys
    def _ek(self, key: str) -> bytes:
        """Our key (/registry/...) as etcd's (under --etcd-prefix)."""
        return (self.prefix + key[len("/registry"):] if key.startswith("/registry") else self.prefix + key).encode()

    def _ok(self, ekey: bytes) -> str:
        return "/registry" + ekey.decode()[len(self.prefix):]

    def _range_end(self) -> bytes:
        p = (self.prefix + "/").encode()
        return p[:-1] + bytes([p[-1] + 1])

    # ---------------------------------------------------------------- start / stop
    async def open(self, timeout: float = 30) -> "EtcdStore":
        from etcd3aio import Etcd3Client
        self.client = Etcd3Client(self.endpoints, **self.tls)
        await self.client.connect()
        deadline = time.monotonic() + timeout
        while True:
            try:
                rev = await self._load()
                break
            except Exception as e:  # noqa: BLE001 - etcd not up yet: grpc's errors are many
                if time.monotonic() > deadline:
                    raise StoreError(f"etcd at {', '.join(self.endpoints)} does not answer: {_why(e)}") from None
                await asyncio.sleep(0.2)
        self._task = asyncio.ensure_future(self._watch(rev))
        return self

    async def _load(self) -> int:
        """Fill the cache with the prefix's current objects, read at one revision; returns it."""
        start, end = (self.prefix + "/").encode(), self._range_end()
        rev = 0
        flat: dict[str, Entry] = {}
        while True:
            r = await self.client.kv.get(start, end, revision=rev, limit=PAGE, timeout=30)
            if not rev:
                rev = r.header.revision
            for kv in r.kvs:
                ent = _entry(kv.value, kv.mod_revision)
                if ent is not None:
                    flat[self._ok(kv.key)] = ent
            if not r.more or not r.kvs:
                break
            start = r.kvs[-1].key + b"\0"
        self._flat = flat
        self._fill_buckets()
        self.cache_rev = rev
        return rev

    async def _watch(self, rev: int) -> None:
        while True:
            try:
                async for resp in self.client.watch.watch((self.prefix + "/").encode(), self._range_end(),
                                                          start_revision=rev + 1, prev_kv=True, progress_notify=True):
                    if resp.compact_revision > 0 or resp.canceled:
                        raise _Relist(f"etcd compacted to {resp.compact_revision}")
                    events = []
                    for ev in resp.events:
                        key = self._ok(ev.kv.key)
                        if ev.type == 1:   # DELETE: the object as it was, at the deletion's revision
                            ent = _entry(ev.prev_kv.value, ev.kv.mod_revision) if ev.prev_kv and ev.prev_kv.value else None
                            if ent is None:
                                ent = Entry(orjson.dumps({"metadata": {"name": key.rsplit("/", 1)[-1],
                                                                       "resourceVersion": str(ev.kv.mod_revision)}}), ev.kv.mod_revision)
                            events.append(Event("DELETED", key, ent))
                        else:
                            ent = _entry(ev.kv.value, ev.kv.mod_revision)
                            if ent is None:
                                log.error("etcd: the object under %s (revision %d) is not JSON: left out", key, ev.kv.mod_revision)
                                continue
                            events.append(Event("ADDED" if ev.kv.create_revision == ev.kv.mod_revision else "MODIFIED", key, ent))
                        rev = ev.kv.mod_revision
                    if events:
                        self._apply_events(events)
                    elif not resp.events and not resp.created:
                        # a progress notification: nothing under the prefix up to there. Not the watch's `created`
                        # answer: its revision is etcd's current one, ahead of the events still to come from rev + 1
                        rev = max(rev, resp.header.revision)
                    self._wake(rev)
            except asyncio.CancelledError:
                raise
            except _Relist as e:
                log.warning("etcd watch: %s; relisting (watchers are closed and relist)", e)
                rev = await self._reload()
            except Exception as e:  # noqa: BLE001
                log.warning("etcd watch ended (%s); watching again from %d", _why(e), rev + 1)
                await asyncio.sleep(0.5)

    async def _reload(self) -> int:
        for w in list(self._watchers):
            w.close()
        self._history.clear()
        while True:
            try:
                rev = await self._load()
                self.compacted_rev = rev
                self._wake(rev)
                return rev
            except Exception as e:  # noqa: BLE001
                log.warning("etcd: relisting failed (%s); again", _why(e))
                await asyncio.sleep(1)

    def _wake(self, rev: int) -> None:
        if rev > self.cache_rev:
            self.cache_rev = rev
        keep = []
        for r, fut in self._waiters:
            if r <= self.cache_rev:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((r, fut))
        self._waiters = keep

    async def _caught_up(self, rev: int, timeout: float = 10) -> None:
        """Wait until the cache has applied revision rev (this server reads its own writes)."""
        if self.cache_rev >= rev:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((rev, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise StoreError(f"the watch cache did not reach revision {rev} within {timeout:g}s") from None

    async def fresh(self) -> None:
        """A consistent read (kube-apiserver 1.31+'s consistent reads from cache): learn etcd's current revision
        (a quorum read) and wait until this server's cache has applied it, so a read through this server sees
        every write acknowledged by any server before it. Concurrent readers share one etcd request."""
        fut = self._rev_fetch
        if fut is None:
            fut = self._rev_fetch = asyncio.ensure_future(self._current_revision())
            fut.add_done_callback(lambda f: setattr(self, "_rev_fetch", None))
        try:
            rev = await asyncio.shield(fut)
        except Exception as e:  # noqa: BLE001
            raise StoreError(f"etcd: {_why(e)}") from None
        await self._caught_up(rev)

    async def _current_revision(self) -> int:
        r = await self.client.kv.get((self.prefix + "/").encode(), self._range_end(), count_only=True, timeout=10)
        return r.header.revision

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for w in list(self._watchers):
            w.close()
        if self.client is not None:
            await self.client.close()

    @property
    def revision(self) -> int:
        return self.cache_rev

    # ---------------------------------------------------------------- writes
    async def _lease_for(self, key: str) -> int:
        if not key.startswith("/registry/events/"):
            return 0
        async with self._lease_lock:
            now = time.monotonic()
            if self._lease is None or now - self._lease[1] > LEASE_REUSE:
                r = await self.client.lease.grant(EVENT_TTL + LEASE_REUSE)
                self._lease = (r.ID, now)
            return self._lease[0]

    async def _txn(self, compare, success, failure=()):
        try:
            r = await self.client.kv.txn(compare, success, failure, timeout=30)
        except Exception as e:  # noqa: BLE001
            why = _why(e)
            if "space exceeded" in why:
                if not self.full:   # once per incident, as the SQLite store's full disk
                    log.error("etcd is out of space (%s): only reads and deletes work until it is compacted, defragmented "
                              "and its NOSPACE alarm disarmed (etcdctl compact / defrag / alarm disarm), or its "
                              "--quota-backend-bytes raised", why)
                self.full = True
                raise StoreFull(f"the store is out of space ({why}): compact and defragment etcd, then disarm its NOSPACE "
                                "alarm, or raise its --quota-backend-bytes") from None
            raise StoreError(f"etcd: {why}") from None
        if self.full and success and any(op.HasField("request_put") for op in success):
            self.full = False
            log.info("etcd accepts writes again")
        return r

    def _written(self, key: str, obj: dict, rev: int) -> Entry:
        """The entry of a write at rev: the cache's own (its watch built it from etcd's value already) unless the key
        moved on since; obj gets its resourceVersion, as the SQLite store gives it."""
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        ent = self._flat.get(key)
        return ent if ent is not None and ent.rev == rev else Entry(encode(obj), rev, obj)

    async def create(self, key: str, obj: dict) -> Entry:
        kv = self.client.kv
        ek = self._ek(key)
        value = _stored(obj)
        lease = await self._lease_for(key)
        r = await self._txn([kv.txn_compare_create_revision(ek, 0)], [kv.txn_op_put(ek, value, lease=lease)])
        if not r.succeeded:
            raise KeyExists(key)
        rev = r.header.revision
        await self._caught_up(rev)
        return self._written(key, obj, rev)

    async def update(self, key: str, obj: dict, expected_rev: int | None) -> Entry:
        kv = self.client.kv
        ek = self._ek(key)
        value = _stored(obj)
        lease = await self._lease_for(key)
        cmp = _mod_equals(ek, expected_rev) if expected_rev is not None else kv.txn_compare_create_revision(ek, 0, result=_GREATER)
        r = await self._txn([cmp], [kv.txn_op_put(ek, value, lease=lease)], [kv.txn_op_get(ek)])
        if not r.succeeded:
            raise self._why_not(key, r)
        rev = r.header.revision
        await self._caught_up(rev)
        return self._written(key, obj, rev)

    async def delete(self, key: str, expected_rev: int | None = None) -> Entry:
        kv = self.client.kv
        ek = self._ek(key)
        cmp = _mod_equals(ek, expected_rev) if expected_rev is not None else kv.txn_compare_create_revision(ek, 0, result=_GREATER)
        r = await self._txn([cmp], [kv.txn_op_delete(ek, prev_kv=True)], [kv.txn_op_get(ek)])
        if not r.succeeded:
            raise self._why_not(key, r)
        rev = r.header.revision
        prev = r.responses[0].response_delete_range.prev_kvs
        try:
            o = orjson.loads(prev[0].value) if prev else {}
        except ValueError:
            o = {}
        if not isinstance(o, dict):
            o = {}
        o.setdefault("metadata", {}).setdefault("name", key.rsplit("/", 1)[-1])
        await self._caught_up(rev)
        return self._written(key, o, rev)

    def _why_not(self, key: str, r) -> StoreError:
        got = r.responses[0].response_range.kvs if r.responses else []
        return RevisionConflict(key) if got else KeyNotFound(key)

    async def compact(self, rev: int) -> None:
        """etcd's history at and below rev is dropped (watches from there get 410 Gone); so is the cache's."""
        rev = min(rev, self.cache_rev)
        if rev <= self.compacted_rev:
            return
        try:
            await self.client.kv.compact(rev, timeout=60)
        except Exception as e:  # noqa: BLE001
            if "compacted" not in _why(e):
                raise StoreError(f"etcd compaction: {_why(e)}") from None
        self.compacted_rev = rev
        while self._history and self._history[0][0] <= rev:
            self._history.popleft()


class _Relist(Exception):
    pass


_GREATER = 1   # etcdserverpb.Compare.CompareResult.GREATER


def _mod_equals(ekey: bytes, rev: int):
    from etcd3aio._protobuf import Compare
    return Compare(key=ekey, target=Compare.MOD, result=Compare.EQUAL, mod_revision=rev)


def _stored(obj: dict) -> bytes:
    """The object as etcd holds it: without resourceVersion (the revision is), as kube-apiserver stores it."""
    md = obj.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        rv = md.pop("resourceVersion")
        try:
            return encode(obj)
        finally:
            md["resourceVersion"] = rv
    return encode(obj)


def _entry(value: bytes, rev: int) -> Entry | None:
    try:
        o = orjson.loads(value)
    except ValueError:
        return None
    if not isinstance(o, dict):
        return None
    o.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return Entry(encode(o), rev, o)


def _why(e: Exception) -> str:
    details = getattr(e, "details", None)
    if callable(details):
        try:
            d = details()
            if d:
                return d
        except Exception:  # noqa: BLE001
            pass
    return str(e) or type(e).__name__
