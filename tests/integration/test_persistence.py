"""The embedded store keeps every acknowledged write across `kill -9` and restarts; startup is fast."""
from __future__ import annotations

import json
import os
import signal
import time

from conftest import sqlite_only

RC_PATH = "/apis/node.k8s.io/v1/runtimeclasses"


def test_objects_survive_kill_9_and_restart(fresh_cluster):
    c = fresh_cluster
    acked = []
    for i in range(50):
        st, _, body = c.request("POST", RC_PATH, {"metadata": {"name": f"keep-{i}"}, "handler": "runc"})
        assert st == 201
        acked.append(body["metadata"]["uid"])
    c.ok("create", "namespace", "persist")
    c.ok("create", "serviceaccount", "robot", "-n", "persist")
    st, _, body = c.request("GET", RC_PATH)
    rv_before = int(body["metadata"]["resourceVersion"])
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    c.start()
    st, _, body = c.request("GET", RC_PATH)
    assert sorted(i["metadata"]["uid"] for i in body["items"]) == sorted(acked)
    assert int(body["metadata"]["resourceVersion"]) >= rv_before
    assert "robot" in c.ok("get", "sa", "-n", "persist")
    # revisions keep increasing after the restart
    st, _, body = c.request("POST", RC_PATH, {"metadata": {"name": "after"}, "handler": "runc"})
    assert int(body["metadata"]["resourceVersion"]) > rv_before


def test_sigterm_stops_cleanly_and_keeps_data(fresh_cluster):
    c = fresh_cluster
    c.ok("apply", "-f", "-", input="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: gvisor\nhandler: runsc\n")
    rc = c.stop(signal.SIGTERM)
    assert rc == 0, open(c.log_path).read()[-20000:]
    assert "kubeclass stopped" in open(c.log_path).read()
    c.start()
    assert json.loads(c.ok("get", "runtimeclass", "gvisor", "-o", "json"))["handler"] == "runsc"


def test_sigterm_ends_open_watches_and_stops_promptly(fresh_cluster):
    """Watches that stay open (a client that never hangs up) end with their closing chunk at shutdown: the
    listener's graceful stop has nothing left to wait for."""
    import http.client
    import ssl
    c = fresh_cluster
    ctx = ssl.create_default_context(cafile=c.ca())
    conns = []
    for path in (RC_PATH, "/api/v1/pods", "/api/v1/namespaces/default/events"):
        conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=ctx, timeout=30)
        conn.request("GET", path + "?watch=1", headers={"Authorization": f"Bearer {c.token()}"})
        r = conn.getresponse()
        assert r.status == 200
        conns.append((conn, r))
    t0 = time.monotonic()
    rc = c.stop(signal.SIGTERM)
    took = time.monotonic() - t0
    assert rc == 0, open(c.log_path).read()[-20000:]
    assert took < 8, took
    for conn, r in conns:
        r.read()            # the chunked body ends (a cut connection would raise IncompleteRead)
        conn.close()


@sqlite_only
def test_store_file_is_compacted(fresh_cluster):
    c = fresh_cluster
    c.stop()
    c.extra = ["--compact-interval", "1"]
    c.start()
    for i in range(300):
        c.request("PATCH", f"{RC_PATH}/churn", b'{"metadata":{"name":"churn"},"handler":"runc"}' if i == 0 else
                  ('{"metadata":{"annotations":{"n":"%d","pad":"%s"}}}' % (i, "x" * 2000)).encode(),
                  {"Content-Type": "application/apply-patch+yaml" if i == 0 else "application/merge-patch+json"})
    time.sleep(3)
    import sqlite3
    db = sqlite3.connect(os.path.join(c.data_dir, "kubeclass.db"))
    n_log = db.execute("SELECT count(*) FROM log").fetchone()[0]
    db.close()
    assert n_log < 300, n_log
