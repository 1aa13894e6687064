"""A damaged store (issue 13, item 9): a truncated or foreign file is not a silently empty cluster, an
unreadable one is one clear line, a corrupt value can still be deleted, a full disk says so once."""
from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from conftest import Cluster, free_port, sqlite_only

CP = ["--no-scheduler", "--no-node"]


def start_fails(data: str) -> str:
    c = Cluster(data, port=free_port(), extra=CP)
    with pytest.raises(RuntimeError) as e:
        c.start()
    return str(e.value)


def copy_store(src: str, dst: str) -> None:
    """dst becomes a consistent copy of the store src (its WAL included, through SQLite's backup API), with no
    -wal / -shm of its own left beside it to be replayed onto it."""
    for extra in (dst + "-wal", dst + "-shm"):
        if os.path.exists(extra):
            os.unlink(extra)
    if os.path.exists(dst):
        os.unlink(dst)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    b.close()
    a.close()


@sqlite_only
def test_a_truncated_or_foreign_store_does_not_start_an_empty_cluster(tmp_path):
    data = str(tmp_path / "data")
    c = Cluster(data, port=free_port(), extra=CP).start()
    c.ok("create", "configmap", "precious", "--from-literal=a=b")
    c.stop()
    db = os.path.join(data, "kubeclass.db")
    saved = str(tmp_path / "saved.db")
    copy_store(db, saved)
    os.truncate(db, 0)
    for extra in (db + "-wal", db + "-shm"):
        if os.path.exists(extra):
            os.unlink(extra)
    out = start_fails(data)
    assert "the file was emptied, truncated or replaced" in out and "Traceback" not in out, out
    # another cluster's store
    other = str(tmp_path / "other")
    Cluster(other, port=free_port(), extra=CP).start().stop()
    copy_store(os.path.join(other, "kubeclass.db"), db)
    out = start_fails(data)
    assert "belongs to cluster" in out and "Traceback" not in out, out
    # not a database at all: one clear line
    for extra in (db + "-wal", db + "-shm"):
        if os.path.exists(extra):
            os.unlink(extra)
    with open(db, "wb") as f:
        f.write(os.urandom(8192))
    out = start_fails(data)
    assert "cannot be read (file is not a database)" in out and "Traceback" not in out, out
    # the right file back: everything is there
    copy_store(saved, db)
    c = Cluster(data, port=free_port(), extra=CP).start()
    try:
        assert c.ok("get", "configmap", "precious", "-o", "jsonpath={.data.a}") == "b"
    finally:
        c.stop()


@sqlite_only
def test_a_corrupt_value_is_named_and_can_be_deleted(tmp_path):
    data = str(tmp_path / "data")
    c = Cluster(data, port=free_port(), extra=CP).start()
    c.ok("create", "configmap", "flipped", "--from-literal=a=b")
    c.ok("create", "configmap", "intact", "--from-literal=a=b")
    c.stop()
    db = sqlite3.connect(os.path.join(data, "kubeclass.db"))
    rev, value = db.execute("SELECT rev, value FROM log WHERE key = '/registry/configmaps/default/flipped' ORDER BY rev DESC").fetchone()
    db.execute("UPDATE log SET value = ? WHERE rev = ?", (bytes(value).replace(b'"data":', b'"data"\x01'), rev))
    db.commit()
    db.close()
    c = Cluster(data, port=free_port(), extra=CP).start()
    try:
        cp = c.kubectl("get", "configmap", "flipped")
        assert cp.returncode == 1 and "the stored object under /registry/configmaps/default/flipped is corrupt" in cp.stderr
        assert "intact" in c.ok("get", "configmaps")                       # a list still works
        assert c.ok("delete", "configmap", "flipped").strip() == 'configmap "flipped" deleted'
        assert c.kubectl("get", "configmap", "flipped").returncode == 1
        assert c.ok("get", "configmap", "intact", "-o", "jsonpath={.data.a}") == "b"
        with open(c.log_path) as f:
            log = f.read()
        assert "/registry/configmaps/default/flipped (revision" in log and "is corrupt" in log
    finally:
        c.stop()


@sqlite_only
def test_a_full_disk_is_reported_once_and_reads_go_on(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(data)], check=True)
    c = Cluster(str(data), port=free_port(), extra=CP)
    c.log_path = str(tmp_path / "server.log")
    try:
        c.start()
        big = "x" * 400_000
        failures = []
        for i in range(40):
            code, _, out = c.request("POST", "/api/v1/namespaces/default/configmaps",
                                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"fill{i}"}, "data": {"a": big}})
            if code != 201:
                failures.append((code, out))
        assert failures, "the 6 MiB disk never filled"
        assert all(code == 500 and "the store is out of space" in out["message"] for code, out in failures), failures[0]
        assert c.request("GET", "/api/v1/namespaces/default/configmaps/fill0")[0] == 200   # reads go on
        with open(c.log_path) as f:
            log = f.read()
        # the store says so once per incident (components whose writes fail meanwhile log their own retries)
        store_lines = [ln for ln in log.splitlines() if '"logger":"kubeclass.store"' in ln and "out of space" in ln]
        assert len(store_lines) == 1 and "Traceback" not in log, store_lines
    finally:
        c.stop()
        subprocess.run(["umount", "-l", str(data)], capture_output=True)
