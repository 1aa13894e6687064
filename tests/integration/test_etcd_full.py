"""An etcd that runs out of space (issue 15's damage tests): a member with a small --quota-backend-bytes under a
kubeclass server; writes past the quota are refused with a 500 that says what happened and what to do, logged once,
no traceback; reads go on; deletes still work (etcd's NOSPACE maintenance mode); once the operator compacts,
defragments and disarms the alarm, writes are accepted again and nothing acknowledged before was lost."""
from __future__ import annotations

import asyncio
import os

import pytest

from conftest import STORAGE, Cluster, wait_for
from etcdcluster import EtcdCluster

# it brings its own etcd: once (in the suite's first pass) is enough
pytestmark = pytest.mark.skipif(STORAGE != "sqlite", reason="runs once, in the suite's first pass")


def test_etcd_out_of_space_refuses_writes_keeps_reads_and_recovers(tmp_path):
    etcd = EtcdCluster(str(tmp_path / "etcd"), extra=["--quota-backend-bytes", str(16 << 20)]).start()
    c = Cluster(str(tmp_path / "data"), extra=["--storage", "etcd", "--etcd-servers", f"http://{etcd.endpoints[0]}",
                                              "--no-node", "--no-scheduler"]).start(timeout=60)
    try:
        blob = tmp_path / "blob"
        blob.write_bytes(os.urandom(700 * 1024).hex()[: 900 * 1024].encode())   # ~900 KB of text per ConfigMap
        made, refusal = [], None
        for i in range(80):
            cp = c.kubectl("create", "configmap", f"big-{i}", f"--from-file=blob={blob}")
            if cp.returncode != 0:
                refusal = cp.stderr
                break
            made.append(f"big-{i}")
        assert refusal is not None and len(made) >= 3, (len(made), refusal)
        assert "the store is out of space" in refusal and "NOSPACE" in refusal and "Internal error occurred" in refusal, refusal
        # the same again: still a clear refusal, and the log says it once
        cp = c.kubectl("create", "configmap", "one-more", "--from-literal=a=b")
        assert cp.returncode != 0 and "out of space" in cp.stderr
        log = open(c.log_path).read()
        assert log.count("etcd is out of space") == 1 and "Traceback" not in log
        # reads go on
        names = c.ok("get", "configmaps", "-o", "name").split()
        assert {f"configmap/{n}" for n in made} <= set(names)
        assert len(c.ok("get", "configmap", made[0], "-o", "jsonpath={.data.blob}")) == len(blob.read_bytes())
        # deletes work in etcd's maintenance mode
        c.ok("delete", "configmap", *made[1:])

        async def recover():   # what the operator does: etcdctl compact, defrag, alarm disarm
            from etcd3aio import Etcd3Client
            cl = Etcd3Client([etcd.endpoints[0]])
            await cl.connect()
            st = await cl.maintenance.status()
            await cl.kv.compact(st.header.revision)
            await cl.maintenance.defragment(timeout=60)
            for a in (await cl.maintenance.alarms()).alarms:   # etcdctl alarm disarm: each raised alarm
                await cl.maintenance.alarm_deactivate(a.alarm, member_id=a.memberID)
            await cl.close()
        asyncio.run(recover())
        wait_for(lambda: c.kubectl("create", "configmap", "after", "--from-literal=a=b").returncode == 0, timeout=30)
        assert c.ok("get", "configmap", made[0], "-o", "name") == f"configmap/{made[0]}\n"
        assert "etcd accepts writes again" in open(c.log_path).read()
    finally:
        c.stop()
        etcd.stop()
