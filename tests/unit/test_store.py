"""The SQLite store contract on a real file: CAS, prefix isolation, watch order and history, compaction, reopen."""
from __future__ import annotations

import asyncio

import pytest

from kubeclass.store import Compacted
from kubeclass.store.sqlite import SQLiteStore
from storecontract import common_contract


def run(coro):
    return asyncio.run(coro)


def test_contract(tmp_path):
    async def main():
        s = SQLiteStore(str(tmp_path / "db"))
        a, u, _ = await common_contract(s)
        await s.compact(u.rev)
        with pytest.raises(Compacted):
            s.watch("/registry/pods/", a.rev)
        rev = s.revision
        await s.close()
        s2 = SQLiteStore(str(tmp_path / "db"))
        assert s2.revision == rev and len(s2.list("/registry/pods/")[0]) == 2
        e = await s2.create("/registry/pods/default/n", {"metadata": {"name": "n"}})
        assert e.rev == rev + 1
        await s2.close()
    run(main())


def test_concurrent_creates_group_commit(tmp_path):
    async def main():
        s = SQLiteStore(str(tmp_path / "db"))
        res = await asyncio.gather(*[s.create(f"/registry/x/k{i}", {"metadata": {"name": f"k{i}"}}) for i in range(2000)],
                                   return_exceptions=True)
        assert not [r for r in res if isinstance(r, Exception)]
        assert sorted(r.rev for r in res) == list(range(1, 2001))
        await s.close()
    run(main())


def test_one_batch_writing_a_key_several_times(tmp_path):
    """Ops on the same key queued together land in one transaction (multi-row statements at its end):
    create, update, delete and create again; a delete right after an update stores the updated value;
    the file reopens to the last state and the full history."""
    async def main():
        s = SQLiteStore(str(tmp_path / "db"))
        k = "/registry/pods/ns/a"
        first = s.create(k, {"metadata": {"name": "a"}, "v": 1})
        upd = s.update(k, {"metadata": {"name": "a"}, "v": 2}, None)
        dele = s.delete(k)
        again = s.create(k, {"metadata": {"name": "a"}, "v": 3})
        other = [s.create(f"/registry/pods/ns/o{i}", {"metadata": {"name": f"o{i}"}}) for i in range(2500)]
        gone = s.create("/registry/pods/ns/gone", {"metadata": {"name": "gone"}})
        gone_del = s.delete("/registry/pods/ns/gone")
        res = await asyncio.gather(first, upd, dele, again, gone, gone_del, *other)
        assert [r.rev for r in res[:4]] == [1, 2, 3, 4]
        assert res[2].obj["v"] == 2 and res[2].obj["metadata"]["resourceVersion"] == "3"
        assert s.get(k).obj["v"] == 3
        rev = s.revision
        await s.close()
        s2 = SQLiteStore(str(tmp_path / "db"))
        assert s2.revision == rev
        assert s2.get(k).obj["v"] == 3 and s2.get("/registry/pods/ns/gone") is None
        assert len(s2.list("/registry/pods/ns/")[0]) == 2501
        w = s2.watch(k, 0)
        assert [(e.type, e.entry.rev) for e in (w.queue.get_nowait() for _ in range(4))] == \
            [("ADDED", 1), ("MODIFIED", 2), ("DELETED", 3), ("ADDED", 4)]
        await s2.close()
    run(main())


def test_compaction_keeps_only_current_rows_and_reopens(tmp_path):
    """Log-only layout: compaction deletes superseded rows and tombstones at or below its revision,
    never a key's current row; the reopened file replays to the same state."""
    import sqlite3

    async def main():
        s = SQLiteStore(str(tmp_path / "db"))
        a = await s.create("/registry/x/a", {"metadata": {"name": "a"}, "v": 1})
        a = await s.update("/registry/x/a", {"metadata": {"name": "a"}, "v": 2}, a.rev)
        b = await s.create("/registry/x/b", {"metadata": {"name": "b"}})
        await s.delete("/registry/x/b", b.rev)
        c = await s.create("/registry/x/c", {"metadata": {"name": "c"}})
        await s.compact(s.revision - 1)          # c's row is above the compacted revision
        c2 = await s.update("/registry/x/c", {"metadata": {"name": "c"}, "v": 9}, c.rev)
        rows = sqlite3.connect(str(tmp_path / "db")).execute("SELECT rev, key FROM log ORDER BY rev").fetchall()
        assert rows == [(a.rev, "/registry/x/a"), (c.rev, "/registry/x/c"), (c2.rev, "/registry/x/c")]
        await s.compact(s.revision)
        rows = sqlite3.connect(str(tmp_path / "db")).execute("SELECT rev FROM log ORDER BY rev").fetchall()
        assert rows == [(a.rev,), (c2.rev,)]
        await s.close()
        s2 = SQLiteStore(str(tmp_path / "db"))
        assert s2.get("/registry/x/a").obj["v"] == 2 and s2.get("/registry/x/b") is None
        assert s2.get("/registry/x/c").obj["v"] == 9 and s2.revision == c2.rev
        await s2.close()
    run(main())


def test_a_file_with_the_old_kv_table_is_migrated(tmp_path):
    import sqlite3
    path = str(tmp_path / "db")
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE kv (key TEXT PRIMARY KEY, rev INTEGER NOT NULL, value BLOB NOT NULL);
        CREATE TABLE log (rev INTEGER PRIMARY KEY, key TEXT NOT NULL, type INTEGER NOT NULL, value BLOB NOT NULL);
        CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
        INSERT INTO meta VALUES ('rev', 7), ('compact', 5);
        INSERT INTO kv VALUES ('/registry/x/old', 3, '{"metadata":{"name":"old","resourceVersion":"3"}}');
        INSERT INTO kv VALUES ('/registry/x/new', 7, '{"metadata":{"name":"new","resourceVersion":"7"}}');
        INSERT INTO log VALUES (7, '/registry/x/new', 1, '{"metadata":{"name":"new","resourceVersion":"7"}}');
    """)
    db.commit()
    db.close()

    async def main():
        s = SQLiteStore(path)
        assert s.revision == 7
        assert s.get("/registry/x/old").rev == 3 and s.get("/registry/x/new").rev == 7
        e = await s.create("/registry/x/more", {"metadata": {"name": "more"}})
        assert e.rev == 8
        await s.close()
    run(main())
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "kv" not in tables


def test_a_watcher_that_does_not_read_is_closed_before_it_holds_much(tmp_path):
    """A watch consumer that never reads must not make the server hold every later object: past
    WATCH_QUEUE_BYTES of objects queued for it, the watch ends (the client watches again from its last
    resourceVersion, as with upstream's watch cache)."""
    from kubeclass.store import cache

    async def main():
        s = SQLiteStore(str(tmp_path / "db"))
        stuck = s.watch("/registry/configmaps/", s.revision)
        reader = s.watch("/registry/configmaps/", s.revision)
        big = "x" * (1 << 20)
        for i in range(20):                      # 20 MiB of objects, more than the 16 MiB a watcher may hold
            await s.create(f"/registry/configmaps/default/c{i}", {"metadata": {"name": f"c{i}"}, "data": {"a": big}})
            if i < 19:
                assert len(await reader.next_batch(1)) == 1
        assert stuck.closed and stuck.bytes <= cache.WATCH_QUEUE_BYTES
        assert not reader.closed
        batches = []
        while (b := await stuck.next_batch(0.1)) is not None:
            batches += b
        assert 0 < len(batches) < 20 and stuck.bytes == 0
        await s.close()
    asyncio.run(main())
