"""Losing one etcd member and one API server loses nothing and stops nothing (issue 15): three etcd members, two API
servers behind haproxy, 16 writers creating ConfigMaps through the balancer; one etcd member and then one API server
are killed with SIGKILL mid-stream. Every acknowledged write is there afterwards, a watch on the surviving server
saw every one of them (no gap), and the killed member and server rejoin when restarted."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time


from conftest import Cluster, wait_for
from etcdcluster import EtcdCluster, start_haproxy


def test_kill_an_etcd_member_and_an_api_server_under_writes(tmp_path):
    etcd = EtcdCluster(str(tmp_path / "etcd"), members=3).start(timeout=60)
    urls = ",".join(f"http://{e}" for e in etcd.endpoints)
    flags = ["--storage", "etcd", "--etcd-servers", urls]
    a = Cluster(str(tmp_path / "a"), extra=flags + ["--no-node"]).start(timeout=60)
    b = Cluster(str(tmp_path / "b"), extra=flags + ["--no-node", "--no-scheduler", "--no-controllers",
                                                    "--pki-from", a.data_dir]).start(timeout=60)
    lb, lb_port = start_haproxy(str(tmp_path), [a.port, b.port], check="inter 300ms fall 1")
    watch = None
    try:
        token = a.token()
        watch = subprocess.Popen(["kubectl", "--kubeconfig", a.kubeconfig, "get", "configmaps", "-n", "default", "-w",
                                  "--watch-only", "-o", "name"], stdout=subprocess.PIPE, text=True)
        seen: set[str] = set()
        threading.Thread(target=lambda: [seen.add(ln.strip()) for ln in watch.stdout], daemon=True).start()
        time.sleep(1.5)
        acked: set[str] = set()
        errors = [0]
        stop = threading.Event()
        lock = threading.Lock()

        def writer(w: int) -> None:
            import http.client
            import ssl
            ctx = ssl.create_default_context(cafile=a.ca())
            i = 0
            while not stop.is_set():
                name = f"c-{w}-{i}"
                i += 1
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", lb_port, context=ctx, timeout=10)
                    conn.request("POST", "/api/v1/namespaces/default/configmaps", json.dumps({"metadata": {"name": name}}),
                                 {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    conn.close()
                    if r.status == 201:
                        with lock:
                            acked.add(name)
                    else:
                        errors[0] += 1
                except OSError:
                    errors[0] += 1
        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(16)]
        for t in threads:
            t.start()
        time.sleep(3)
        before_kill = len(acked)
        victim = etcd.members[2]
        t0 = time.monotonic()
        victim.kill(signal.SIGKILL)
        wait_for(lambda: len(acked) >= before_kill + 100, 60, what="100 more writes after an etcd member was killed")
        etcd_recovery = time.monotonic() - t0
        after_etcd = len(acked)
        t0 = time.monotonic()
        b.stop(signal.SIGKILL)
        wait_for(lambda: len(acked) >= after_etcd + 100, 60, what="100 more writes after an API server was killed")
        server_recovery = time.monotonic() - t0
        stop.set()
        for t in threads:
            t.join(15)
        print(f"acknowledged creates: {before_kill} in the first 3 s; 100 more took {etcd_recovery:.1f} s after an etcd "
              f"member was killed and {server_recovery:.1f} s after an API server was killed; {len(acked)} in all, "
              f"{errors[0]} requests failed (in flight on the killed server, or sent to it before haproxy saw it gone)")
        stored = {i["metadata"]["name"] for i in json.loads(a.ok("get", "configmaps", "-o", "json"))["items"]}
        assert acked <= stored, f"{len(acked - stored)} acknowledged writes lost"
        wait_for(lambda: {f"configmap/{n}" for n in acked} <= seen, 20, what="the watch on server A seeing every write")
        # they rejoin
        victim.start()
        wait_for(victim.healthy, 30, what="the killed etcd member healthy again")
        b.start(timeout=60)
        assert json.loads(b.ok("get", "configmap", sorted(acked)[0], "-o", "json"))["metadata"]["name"] == sorted(acked)[0]
    finally:
        if watch is not None:
            watch.terminate()
        lb.terminate()
        b.stop()
        a.stop()
        etcd.stop()
