"""The SQLite store contract on a real file: CAS, prefix isolation, watch order and history, compaction, reopen."""
from __future__ import annotations

import asyncio

import pytest

from kubeclass.store import Compacted, KeyExists, KeyNotFound, RevisionConflict
from kubeclass.store.sqlite import SQLiteStore


def run(coro):
    return asyncio.run(coro)


def test_contract(tmp_path):
    async def main():
        s = SQLiteStore(str(tmp_path / "db"))
        a = await s.create("/registry/pods/default/a", {"metadata": {"name": "a"}})
        await s.create("/registry/pods/default2/b", {"metadata": {"name": "b"}})
        await s.create("/registry/pods/def/c", {"metadata": {"name": "c"}})
        assert a.obj["metadata"]["resourceVersion"] == str(a.rev)
        with pytest.raises(KeyExists):
            await s.create("/registry/pods/default/a", {})
        with pytest.raises(RevisionConflict):
            await s.update("/registry/pods/default/a", {"metadata": {"name": "a"}}, a.rev + 100)
        with pytest.raises(KeyNotFound):
            await s.delete("/registry/pods/default/zzz")
        assert [k for k, _ in s.list("/registry/pods/default/")[0]] == ["/registry/pods/default/a"]
        assert len(s.list("/registry/pods/")[0]) == 3
        w = s.watch("/registry/pods/default/", a.rev - 1)   # replay from history, then live
        u = await s.update("/registry/pods/default/a", {"metadata": {"name": "a", "labels": {"x": "y"}}}, a.rev)
        d = await s.delete("/registry/pods/default/a", u.rev)
        got = [w.queue.get_nowait() for _ in range(3)]
        assert [(e.type, e.entry.rev) for e in got] == [("ADDED", a.rev), ("MODIFIED", u.rev), ("DELETED", d.rev)]
        assert d.rev > u.rev and d.obj["metadata"]["resourceVersion"] == str(d.rev)
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
