"""SQLite backend: one file, WAL, one global revision counter, group commit on a writer thread.

Layout (as kine's): one `log` row per change, keyed by revision; the current value of a key is its
newest row, and opening the file replays the log. Compaction deletes the rows a newer row of the same
key superseded, and tombstones, at or below the compacted revision, so the file does not grow without
bound. (Until session 5 a `kv` table kept current values too: every write was two rows and twice the
bytes through SQLite; an old file is migrated when opened.) A write
is acknowledged only after its transaction commits (WAL + synchronous=NORMAL: survives kill -9 of the
process; `durable=True` selects synchronous=FULL for power loss too).

Reads never touch SQLite: the event loop keeps a cache of current values, applied strictly in
revision order after each commit, together with an in-memory event history for watches.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import uuid

import orjson

from . import Entry, Event, KeyExists, KeyNotFound, RevisionConflict, StoreDamaged, StoreFull, encode
from .cache import HISTORY, Cache  # noqa: F401 - HISTORY re-exported

log = logging.getLogger("kubeclass.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (rev INTEGER PRIMARY KEY, key TEXT NOT NULL, type INTEGER NOT NULL, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""
ADDED, MODIFIED, DELETED = 0, 1, 2
_TYPES = ("ADDED", "MODIFIED", "DELETED")


def _is_full(e: Exception) -> bool:
    return isinstance(e, sqlite3.OperationalError) and "full" in str(e) or \
        isinstance(e, OSError) and e.errno == 28   # ENOSPC


class _Batch:
    """One transaction's log rows, sent to SQLite as multi-row INSERTs at the end: every statement
    releases and re-takes the GIL around SQLite's work, and under load each re-take waits for the
    event loop thread, so one statement per row would make the writer crawl."""

    ROWS = 2000   # rows per statement (4 parameters each: far below SQLite's 32766)

    def __init__(self) -> None:
        self.log: list[tuple] = []                  # (rev, key, type, value)
        self.values: dict[int, bytes] = {}          # rev -> value written in this batch

    def value_at(self, db, rev: int) -> bytes:
        v = self.values.get(rev)
        if v is not None:
            return v
        return db.execute("SELECT value FROM log WHERE rev=?", (rev,)).fetchone()[0]

    def add(self, rev: int, key: str, typ: int, raw: bytes) -> None:
        self.log.append((rev, key, typ, raw))
        self.values[rev] = raw

    def flush(self, db) -> None:
        rows = self.log
        for i in range(0, len(rows), self.ROWS):
            chunk = rows[i:i + self.ROWS]
            db.execute("INSERT INTO log(rev, key, type, value) VALUES " + ",".join(["(?,?,?,?)"] * len(chunk)),
                       [v for row in chunk for v in row])


def _delete_revs(db, revs: list[int]) -> None:
    for i in range(0, len(revs), _Batch.ROWS):
        chunk = revs[i:i + _Batch.ROWS]
        db.execute("DELETE FROM log WHERE rev IN (" + ",".join("?" * len(chunk)) + ")", chunk)


class SQLiteStore(Cache):
    def __init__(self, path: str, durable: bool = False, identity_file: str | None = None):
        """Opens (or creates) the store. identity_file: where this data directory records its cluster's id,
        which the store records too; when they disagree (the file replaced, emptied or truncated) the store
        is not opened (StoreDamaged), rather than starting a silently empty cluster. An unreadable file, or
        one that is not a database, is StoreDamaged as well."""
        try:
            self._open(path, durable, identity_file)
        except sqlite3.DatabaseError as e:
            raise StoreDamaged(f"the store {path} cannot be read ({e}): restore it from a backup, or move it away to "
                               "start a new, empty cluster") from None

    def _open(self, path: str, durable: bool, identity_file: str | None) -> None:
        self.path = path
        self.full = False   # the last commit failed for want of space
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        # the store holds Secrets: its file is the owner's alone whatever the umask (SQLite gives the WAL and
        # shared-memory files the database file's mode)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        for extra in (path + "-wal", path + "-shm"):
            if os.path.exists(extra):
                os.chmod(extra, 0o600)
        self._db.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
        self._db.execute("PRAGMA journal_size_limit=67108864")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT v FROM meta WHERE k='rev'").fetchone()
        self._rev = row[0] if row else 0
        self._init_cache()
        row = self._db.execute("SELECT v FROM meta WHERE k='compact'").fetchone()
        self.compacted_rev = row[0] if row else 0
        if identity_file:
            self.cluster_id = self._identity(identity_file)
        # the writer's view: key -> rev
        self._wrev: dict[str, int] = {}
        # log rows that compaction may delete once at or below the compacted revision: superseded by a
        # newer row of their key, or tombstones (writer thread; rebuilt here from the log)
        self._superseded: list[int] = []
        self._migrate()
        flat = self._flat
        for rev, key, typ, value in self._db.execute("SELECT rev, key, type, value FROM log ORDER BY rev"):
            prev = self._wrev.get(key)
            if prev is not None:
                self._superseded.append(prev)
            ent = Entry(value, rev)
            if typ == DELETED:
                self._wrev.pop(key, None)
                flat.pop(key, None)
                self._superseded.append(rev)
            else:
                self._wrev[key] = rev
                flat[key] = ent
            if rev > self.compacted_rev:
                self._history.append((rev, Event(_TYPES[typ], key, ent)))
        # values that do not parse (a flipped byte on disk) are left out of reads, named in the log and in
        # `corrupt`, and can still be deleted; everything else is served
        for key, ent in list(flat.items()):
            try:
                o = orjson.loads(ent.raw)
                if not isinstance(o, dict):
                    raise ValueError("the value is not a JSON object")
            except ValueError as e:
                self.corrupt[key] = f"revision {ent.rev}: {e}"
                del flat[key]
                log.error("store %s: the object under %s (revision %d) is corrupt (%s): left out of reads until it is "
                          "deleted", self.path, key, ent.rev, e)
        self._fill_buckets()
        self.cache_rev = self._rev
        self._queue: queue.Queue = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._writer, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _identity(self, id_file: str) -> str:
        row = self._db.execute("SELECT v FROM meta WHERE k='cluster-id'").fetchone()
        stored = row[0] if row else None
        try:
            with open(id_file) as f:
                recorded = f.read().strip() or None
        except FileNotFoundError:
            recorded = None
        if stored and recorded and stored != recorded:
            raise StoreDamaged(f"the store {self.path} belongs to cluster {stored}, but this data directory to cluster "
                               f"{recorded} ({id_file}): put the right store back, or remove {id_file} to use this one")
        if recorded and not stored:
            what = "is empty" if self._rev == 0 else "has no cluster id"
            raise StoreDamaged(f"the store {self.path} {what}, but this data directory's cluster {recorded} had data "
                               f"({id_file}): the file was emptied, truncated or replaced. Restore it from a backup, or "
                               f"remove {id_file} to start a new, empty cluster")
        ident = stored or recorded or "kc-" + uuid.uuid4().hex   # not all digits: the column has integer affinity
        if not stored:
            self._db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('cluster-id', ?)", (ident,))
        if not recorded:
            fd = os.open(id_file + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(ident + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(id_file + ".tmp", id_file)
        return ident

    def _migrate(self) -> None:
        """A file from before the log-only layout: current values whose log rows were compacted away
        live only in `kv`; copy them into the log (as the rows they were) and drop `kv`."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='kv'").fetchone() is None:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT OR IGNORE INTO log(rev, key, type, value) SELECT rev, key, 1, value FROM kv")
        self._db.execute("DROP TABLE kv")
        self._db.execute("COMMIT")
        log.info("store %s: migrated to the log-only layout", self.path)

    # ---------------------------------------------------------------- writes
    def _submit(self, op: tuple) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut = loop.create_future()
        self._queue.put((op, fut))
        return fut

    async def create(self, key: str, obj: dict) -> Entry:
        return await self._submit(("create", key, obj, None))

    async def update(self, key: str, obj: dict, expected_rev: int | None) -> Entry:
        return await self._submit(("update", key, obj, expected_rev))

    async def delete(self, key: str, expected_rev: int | None = None) -> Entry:
        return await self._submit(("delete", key, None, expected_rev))

    async def compact(self, rev: int) -> None:
        """Forget history at and below `rev`: watches from there get 410 Gone; the file shrinks."""
        rev = min(rev, self.cache_rev)
        await self._submit(("compact", "", None, rev))
        while self._history and self._history[0][0] <= rev:
            self._history.popleft()

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        for w in list(self._watchers):
            w.close()
        self._db.close()

    # ---------------------------------------------------------------- writer thread
    def _writer(self) -> None:
        db = self._db
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < 512:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            results = []
            events = []
            start_rev = self._rev
            wrev_undo: dict[str, int | None] = {}
            superseded_before, superseded_len = self._superseded, len(self._superseded)   # compaction swaps the list
            w = _Batch()
            try:
                db.execute("BEGIN IMMEDIATE")
                for (op, key, obj, expected), fut in batch:
                    try:
                        res = self._apply_op(db, w, op, key, obj, expected, events, wrev_undo)
                        results.append((fut, res, None))
                    except (KeyExists, KeyNotFound, RevisionConflict, ValueError) as e:
                        results.append((fut, None, e))
                w.flush(db)
                db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('rev', ?)", (self._rev,))
                db.execute("COMMIT")
                if self.full:
                    self.full = False
                    log.info("store %s: writes commit again", self.path)
            except Exception as e:  # disk full, I/O error: nothing of this batch is acknowledged
                if _is_full(e):
                    if not self.full:   # once per incident; the first write that commits ends it
                        log.error("store %s: out of space (%s): writes fail until space is freed; reads go on", self.path, e)
                    self.full = True
                    e = StoreFull(f"the store is out of space ({e}): free space on the disk that holds {self.path}")
                else:
                    log.exception("store commit failed")
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._rev = start_rev
                del superseded_before[superseded_len:]
                self._superseded = superseded_before
                for k, v in wrev_undo.items():
                    if v is None:
                        self._wrev.pop(k, None)
                    else:
                        self._wrev[k] = v
                results = [(fut, None, e) for _, fut in batch]
                events = []
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._publish, events, results)
            if stop:
                return

    def _apply_op(self, db, w: _Batch, op, key, obj, expected, events, undo) -> Entry | None:
        cur = self._wrev.get(key)
        if op == "compact":
            keep = [r for r in self._superseded if r > expected]
            _delete_revs(db, [r for r in self._superseded if r <= expected])
            self._superseded = keep
            db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('compact', ?)", (expected,))
            db.execute("PRAGMA incremental_vacuum")
            self.compacted_rev = max(self.compacted_rev, expected)
            return None
        if op == "create":
            if cur is not None:
                raise KeyExists(key)
        else:
            if cur is None:
                raise KeyNotFound(key)
            if expected is not None and expected != cur:
                raise RevisionConflict(key)
        undo.setdefault(key, cur)
        self._rev += 1
        rev = self._rev
        if cur is not None:
            self._superseded.append(cur)
        if op == "delete":
            try:
                o = orjson.loads(w.value_at(db, cur))
                if not isinstance(o, dict):
                    raise ValueError("not an object")
            except ValueError:   # a corrupt value (see corrupt): its tombstone names it by its key alone
                o = {"metadata": {"name": key.rsplit("/", 1)[-1]}}
            o.setdefault("metadata", {})["resourceVersion"] = str(rev)
            raw = orjson.dumps(o)
            w.add(rev, key, DELETED, raw)
            self._superseded.append(rev)   # the tombstone itself goes once compacted past
            del self._wrev[key]
            ent = Entry(raw, rev, o)
            events.append(Event("DELETED", key, ent))
            return ent
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        raw = encode(obj)
        w.add(rev, key, ADDED if op == "create" else MODIFIED, raw)
        self._wrev[key] = rev
        ent = Entry(raw, rev)
        events.append(Event("ADDED" if op == "create" else "MODIFIED", key, ent))
        return ent

    # ---------------------------------------------------------------- loop side: apply in order
    def _publish(self, events: list[Event], results: list) -> None:
        self._apply_events(events)
        for fut, res, err in results:
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(res)

    def file_size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total
