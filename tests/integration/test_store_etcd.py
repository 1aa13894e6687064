"""The store contract on a real etcd (one member started by the test): CAS through etcd transactions,
resourceVersion = etcd's revision, the watch cache (list at a revision, then one watch feeding the cache, its
history and the watchers), a second store on the same etcd seeing the first one's writes, event leases,
compaction and 410."""
from __future__ import annotations

import asyncio

import pytest

from etcdcluster import EtcdCluster
from kubeclass.store import Compacted
from kubeclass.store.etcd import EtcdStore
from storecontract import common_contract


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    c = EtcdCluster(str(tmp_path_factory.mktemp("etcd"))).start()
    yield c
    c.stop()


def run(coro):
    return asyncio.run(coro)


def test_contract(etcd):
    async def main():
        s = await EtcdStore(etcd.endpoints, prefix="/t1").open()
        a, u, _ = await common_contract(s)
        # a second API server's store on the same etcd: it lists what the first wrote, and sees its writes live
        s2 = await EtcdStore(etcd.endpoints, prefix="/t1").open()
        assert len(s2.list("/registry/pods/")[0]) == 2 and s2.revision == s.revision
        w2 = s2.watch("/registry/pods/", s2.revision)
        n = await s.create("/registry/pods/default/n", {"metadata": {"name": "n"}})
        ev = (await w2.next_batch(5))[0]
        assert (ev.type, ev.key, ev.entry.rev) == ("ADDED", "/registry/pods/default/n", n.rev)
        assert s2.get("/registry/pods/default/n").raw == n.raw   # the same bytes whichever server serves it
        await s.compact(u.rev)
        with pytest.raises(Compacted):
            s.watch("/registry/pods/", a.rev)
        await s2.close()
        await s.close()
        s3 = await EtcdStore(etcd.endpoints, prefix="/t1").open()   # a restart lists the same objects
        assert sorted(k for k, _ in s3.list("/registry/pods/")[0]) == ["/registry/pods/def/c", "/registry/pods/default/n",
                                                                         "/registry/pods/default2/b"]
        await s3.close()
    run(main())


def test_concurrent_creates_and_event_leases(etcd):
    async def main():
        s = await EtcdStore(etcd.endpoints, prefix="/t2").open()
        res = await asyncio.gather(*[s.create(f"/registry/configmaps/d/k{i}", {"metadata": {"name": f"k{i}"}}) for i in range(300)],
                                   return_exceptions=True)
        assert not [r for r in res if isinstance(r, Exception)]
        assert len({r.rev for r in res}) == 300 and len(s.list("/registry/configmaps/")[0]) == 300
        await s.create("/registry/events/d/e1", {"metadata": {"name": "e1"}})
        await s.create("/registry/events/d/e2", {"metadata": {"name": "e2"}})
        leases = await s.client.lease.leases()
        ttl = await s.client.lease.time_to_live(leases.leases[0].ID, keys=True)
        assert 3600 <= ttl.grantedTTL <= 3660 and len(ttl.keys) == 2   # one lease per minute of events, as upstream
        await s.close()
    run(main())


def test_a_sqlite_cluster_moves_to_etcd_with_store_copy(etcd, tmp_path):
    """kubeclass store copy: a stopped SQLite cluster's objects into an empty etcd prefix; the cluster started on
    etcd serves them (new resourceVersions), and copying into a non-empty store is refused."""
    import json
    import subprocess
    import sys
    from conftest import ROOT, Cluster
    data = str(tmp_path / "data")
    c = Cluster(data, extra=["--storage", "sqlite", "--no-node"]).start()
    try:
        c.ok("create", "namespace", "moving")
        c.ok("create", "configmap", "settings", "-n", "moving", "--from-literal=a=b")
        c.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n")
        before = json.loads(c.ok("get", "configmap", "settings", "-n", "moving", "-o", "json"))
    finally:
        c.stop()
    url = f"http://{etcd.endpoints[0]}"

    def copy():
        return subprocess.run([sys.executable, "-m", "kubeclass.cli", "store", "copy", "--from", f"sqlite:{data}", "--to",
                               f"etcd:{url}", "--etcd-prefix", "/moved"], capture_output=True, text=True, cwd=ROOT)
    out = copy()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("resourceVersions changed: watchers and informers relist")
    again = copy()
    assert again.returncode == 1 and again.stderr.strip() == "error: the target store is not empty: copy into a new, empty store"
    e = Cluster(data, extra=["--storage", "etcd", "--etcd-servers", url, "--etcd-prefix", "/moved", "--no-node"]).start()
    try:
        after = json.loads(e.ok("get", "configmap", "settings", "-n", "moving", "-o", "json"))
        assert after["data"] == {"a": "b"} and after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["resourceVersion"] != "" and "gvisor" in e.ok("get", "runtimeclass")
    finally:
        e.stop()


def test_fresh_waits_for_the_cache_to_reach_etcds_revision(etcd):
    """Two stores (two API servers) on one etcd: right after a write through the first, the second's cache may
    not hold it yet; after fresh() (what a GET or LIST without resourceVersion awaits) it always does."""
    async def main():
        s1 = await EtcdStore(etcd.endpoints, prefix="/t4").open()
        s2 = await EtcdStore(etcd.endpoints, prefix="/t4").open()
        for i in range(20):
            key = f"/registry/configmaps/d/f{i}"
            await s1.create(key, {"metadata": {"name": f"f{i}"}})
            # the second server's watch may not have delivered it yet (often it has not, but that is a race)
            await s2.fresh()
            assert s2.get(key) is not None
        await s1.close()
        await s2.close()
    run(main())


def test_the_watchs_created_answer_does_not_count_as_progress(etcd):
    """A watch opened after writes: etcd's `created` answer carries its current revision before the events from
    start_revision arrive; the cache must not count itself caught up to that revision until it has applied them
    (else a consistent read could miss a write another server acknowledged)."""
    async def main():
        s1 = await EtcdStore(etcd.endpoints, prefix="/t5").open()
        s2 = EtcdStore(etcd.endpoints, prefix="/t5")
        from etcd3aio import Etcd3Client
        s2.client = Etcd3Client(s2.endpoints)
        await s2.client.connect()
        rev = await s2._load()   # s2's list, then writes it has not seen, then its watch
        keys = [f"/registry/configmaps/d/late{i}" for i in range(10)]
        for k in keys:
            last = await s1.create(k, {"metadata": {"name": k.rsplit("/", 1)[-1]}})
        s2._task = asyncio.ensure_future(s2._watch(rev))
        await s2._caught_up(last.rev)
        assert [k for k in keys if s2.get(k) is None] == []   # nothing missing at the moment it says caught up
        await s1.close()
        await s2.close()
    run(main())
