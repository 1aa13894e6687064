"""The store contract's common steps, run against each backend (tests/unit/test_store.py: SQLite,
tests/integration/test_store_etcd.py: etcd): CAS errors, prefix isolation, read-your-writes, watch replay from
history then live, the deleted object as it was."""
from __future__ import annotations

import pytest

from kubeclass.store import Entry, KeyExists, KeyNotFound, RevisionConflict


async def common_contract(s) -> tuple[Entry, Entry, Entry]:
    """Writes three Pods (two namespaces share a prefix with a third), checks the contract on them; returns the
    first Pod's create, update and delete entries for the backend's own checks."""
    a = await s.create("/registry/pods/default/a", {"metadata": {"name": "a"}})
    await s.create("/registry/pods/default2/b", {"metadata": {"name": "b"}})
    await s.create("/registry/pods/def/c", {"metadata": {"name": "c"}})
    assert a.obj["metadata"]["resourceVersion"] == str(a.rev)
    assert s.get("/registry/pods/default/a").obj["metadata"]["resourceVersion"] == str(a.rev)   # read your write
    with pytest.raises(KeyExists):
        await s.create("/registry/pods/default/a", {})
    with pytest.raises(RevisionConflict):
        await s.update("/registry/pods/default/a", {"metadata": {"name": "a"}}, a.rev + 100)
    with pytest.raises(KeyNotFound):
        await s.update("/registry/pods/default/zzz", {"metadata": {"name": "zzz"}}, None)
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
    assert got[2].entry.obj["metadata"]["labels"] == {"x": "y"}   # the object as it was deleted
    return a, u, d
