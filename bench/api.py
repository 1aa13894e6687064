"""bench/api: creates/s, gets/s, lists/s and p50/p99 latency for Pods and RuntimeClasses at 1, 16 and 64
concurrent clients over HTTPS against a real `kubeclass up` (started here on a temporary data dir).

Usage: python bench/api.py [--ops N] [--concurrency 1,16,64] [--list-size 100] [--storage sqlite,etcd]
                            [--layout one-process,split]
With several --storage values the same bench runs on each in turn (etcd: a local one-member etcd started by
`kubeclass up --storage etcd`), and the CPU each process spent per create is printed (API server, etcd).
--layout two-servers (etcd only) adds a second API server on the same etcd (`--pki-from` the first) and drives
both through haproxy (round robin), as upstream runs several kube-apiservers behind one URL.
--layout one-process (the default) measures `kubeclass up` as a user starts it: API server, controller manager,
scheduler and the local node agent in one process (the node tries to run the bench's Pods meanwhile); split
measures the API server alone in its process, with the controller manager (service accounts, namespaces) in
another and no scheduler or node, as kube-apiserver was measured for the anchor (scheduler idle).
Prints figures; asserts nothing. The client runs on the same machine and competes for the same cores.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time

import aiohttp
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from conftest import Cluster, pids_running  # noqa: E402

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "", "labels": {"app": "bench"}},
       "spec": {"runtimeClassName": "gvisor", "containers": [{"name": "app", "image": "nginx:alpine", "ports": [{"containerPort": 80}],
                                                             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}
RC = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "", "labels": {"bench": "yes"}},
      "handler": "runsc", "overhead": {"podFixed": {"cpu": "50m", "memory": "64Mi"}}}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU a process has used (its threads included)."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def etcd_pid(data_dir: str) -> int | None:
    return next(iter(pids_running("etcd", os.path.join(data_dir, "etcd"))), None)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000 if xs else 0.0


async def run_phase(session, base: str, method: str, paths, bodies, conc: int) -> tuple[float, list[float], int]:
    lat: list[float] = []
    errors = 0
    idx = 0
    n = len(paths)

    async def worker():
        nonlocal idx, errors
        while idx < n:
            i = idx
            idx += 1
            t = time.perf_counter()
            async with session.request(method, base + paths[i], data=bodies[i] if bodies else None,
                                       headers={"Content-Type": "application/json"} if bodies else None) as r:
                await r.read()
                if r.status >= 300:
                    errors += 1
            lat.append(time.perf_counter() - t)
    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    return time.perf_counter() - t0, lat, errors


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=3000)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--list-size", type=int, default=100)
    ap.add_argument("--storage", default="sqlite", help="comma-separated: sqlite, etcd")
    ap.add_argument("--layout", default="one-process", help="comma-separated: one-process, split, two-servers (etcd)")
    args = ap.parse_args()
    for layout in args.layout.split(","):
        for storage in args.storage.split(","):
            if layout.strip() == "two-servers" and storage.strip() != "etcd":
                continue   # several API servers share an etcd, not a SQLite file
            await bench(args, storage.strip(), layout.strip())


async def bench(args, storage: str, layout: str = "one-process") -> None:
    import subprocess
    d = tempfile.mkdtemp(prefix="kubeclass-bench-")
    etcd_port = Cluster(d)._etcd_port() if storage == "etcd" else 0
    extra = ["--storage", "etcd", "--etcd-port", str(etcd_port)] if storage == "etcd" else []
    if layout == "split":
        extra += ["--no-controllers", "--no-scheduler", "--no-node"]
    c = Cluster(d, extra=extra).start(timeout=60)
    first_start = c.ready_after
    c.stop()
    c.start()  # restart on the same data dir: what an operator sees after a reboot
    others: list[subprocess.Popen] = []
    stop_later: list = []
    server_pids = [c.proc.pid]
    base = c.url
    if layout in ("split", "two-servers"):
        others.append(subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "controllers", "--kubeconfig", c.kubeconfig,
                                        "--secure-port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")}))
        await asyncio.sleep(3)
    if layout == "two-servers":   # a second API server on the same etcd, both behind haproxy (round robin)
        from etcdcluster import start_haproxy
        b = Cluster(d + "-b", extra=["--storage", "etcd", "--etcd-servers", f"http://127.0.0.1:{etcd_port}", "--no-node",
                                     "--no-scheduler", "--no-controllers", "--pki-from", d]).start(timeout=60)
        lb, lb_port = start_haproxy(d, [c.port, b.port])
        stop_later += [b.stop, lb.terminate]
        server_pids.append(b.proc.pid)
        base = f"https://127.0.0.1:{lb_port}"
    try:
        sslctx = ssl.create_default_context(cafile=c.ca())
        conn = aiohttp.TCPConnector(ssl=sslctx, limit=0)
        async with aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {c.token()}"}) as s:
            print(f"kubeclass bench/api on {storage} ({layout}): {os.cpu_count()} cores, server and client on the same machine, HTTPS, "
                  f"{args.ops} ops per row (lists: {args.ops // 10} of {args.list_size} objects)")
            etcd = etcd_pid(d) if storage == "etcd" else None
            print(f"startup to /readyz: first start {first_start:.2f}s (CA, certificates, store), restart {c.ready_after:.2f}s")
            print(f"{'resource':<13}{'verb':<8}{'clients':>8}{'ops/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
            gv = orjson.loads(orjson.dumps(RC))
            gv["metadata"] = {"name": "gvisor"}
            async with s.post(base + "/apis/node.k8s.io/v1/runtimeclasses", data=orjson.dumps(gv),
                              headers={"Content-Type": "application/json"}) as r:
                await r.read()  # the class the benchmark's Pods name, so admission admits them
            for conc in [int(x) for x in args.concurrency.split(",")]:
                ns = f"bench-{conc}"
                async with s.post(base + "/api/v1/namespaces", data=orjson.dumps({"metadata": {"name": ns}}),
                                  headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                for res, tmpl, coll in (("pods", POD, f"/api/v1/namespaces/{ns}/pods"),
                                        ("runtimeclass", RC, "/apis/node.k8s.io/v1/runtimeclasses")):
                    names = [f"{res[:3]}-{conc}-{i}" for i in range(args.ops)]
                    bodies = []
                    for nme in names:
                        o = orjson.loads(orjson.dumps(tmpl))
                        o["metadata"]["name"] = nme
                        bodies.append(orjson.dumps(o))
                    for verb, method, paths, b in (("create", "POST", [coll] * args.ops, bodies),
                                                   ("get", "GET", [f"{coll}/{n}" for n in names], None)):
                        cpu0 = (sum(cpu_seconds(p) for p in server_pids), cpu_seconds(etcd))
                        dt, lat, err = await run_phase(s, base, method, paths, b, conc)
                        cpu = ""
                        if verb == "create":
                            servers = "API servers (both)" if len(server_pids) > 1 else "API server"
                            cpu = (f"   CPU per create: {servers} "
                                   f"{(sum(cpu_seconds(p) for p in server_pids) - cpu0[0]) / len(lat) * 1e3:.2f} ms")
                            if etcd:
                                cpu += f", etcd {(cpu_seconds(etcd) - cpu0[1]) / len(lat) * 1e3:.2f} ms"
                        print(f"{res:<13}{verb:<8}{conc:>8}{len(lat) / dt:>10.0f}{pct(lat, 50):>9.2f}{pct(lat, 99):>9.2f}{err:>8}{cpu}", flush=True)
                    # list: a collection of list-size objects
                    lst_ns = f"{ns}-list"
                    if res == "pods":
                        async with s.post(base + "/api/v1/namespaces", data=orjson.dumps({"metadata": {"name": lst_ns}}),
                                          headers={"Content-Type": "application/json"}) as r:
                            await r.read()
                        lcoll = f"/api/v1/namespaces/{lst_ns}/pods"
                        for i in range(args.list_size):
                            o = orjson.loads(bodies[0])
                            o["metadata"]["name"] = f"l-{i}"
                            async with s.post(base + lcoll, data=orjson.dumps(o), headers={"Content-Type": "application/json"}) as r:
                                await r.read()
                        lpaths = [lcoll] * (args.ops // 10)
                    else:
                        lpaths = [f"{coll}?labelSelector=bench%3Dyes&limit={args.list_size}"] * (args.ops // 10)
                    dt, lat, err = await run_phase(s, base, "GET", lpaths, None, conc)
                    print(f"{res:<13}{'list':<8}{conc:>8}{len(lat) / dt:>10.0f}{pct(lat, 50):>9.2f}{pct(lat, 99):>9.2f}{err:>8}", flush=True)
                    if res == "runtimeclass":
                        async with s.delete(base + coll + "?labelSelector=bench%3Dyes") as r:
                            await r.read()
    finally:
        for f in stop_later:
            f()
        for p in others:
            p.terminate()
            p.wait(10)
        c.stop()


if __name__ == "__main__":
    asyncio.run(main())
