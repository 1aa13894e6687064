"""bench/scheduler: upstream scheduler_perf's workload shapes, end to end, against a real kubeclass API
server, with Node objects created through the API and the scheduler running as its own process
(`kubeclass scheduler --kubeconfig`), exactly as kube-scheduler runs against kube-apiserver.

Workloads (test/integration/scheduler_perf/config/performance-config.yaml):
  SchedulingBasic         5000 nodes, 1000 initial pods, 10000 measured pods
  SchedulingNodeAffinity  5000 nodes (zone1), 5000 initial, 10000 measured, required node affinity
  RuntimeClassMix         seed 001's four classes (nodeSelectors, toleration, overheads) over a matching pool
Prints pods/s as scheduler_perf measures it (Pods bound per second over the measured phase) and p50/p99
per-Pod scheduling latency (create acknowledged -> bound, observed through a watch). Asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import procs  # noqa: E402 - bench/procs.py, beside this script
from kubeclass.client import ApiError, Client, Config  # noqa: E402

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "", "labels": {}},
        "status": {"capacity": {"pods": "110", "cpu": "4", "memory": "32Gi"},
                   "allocatable": {"pods": "110", "cpu": "4", "memory": "32Gi"},
                   "conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "pod-"},
       "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10", "ports": [{"containerPort": 80}],
                                "resources": {"requests": {"cpu": "100m", "memory": "500Mi"},
                                              "limits": {"cpu": "100m", "memory": "500Mi"}}}]}}
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1", "zone2"]}]}]}}}
CLASSES = [
    {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "standard"}, "handler": "runc"},
    {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "gvisor"}, "handler": "runsc",
     "overhead": {"podFixed": {"cpu": "50m", "memory": "64Mi"}}, "scheduling": {"nodeSelector": {"runtime.kubernetes.io/gvisor": "true"}}},
    {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "kata"}, "handler": "kata-qemu",
     "overhead": {"podFixed": {"cpu": "250m", "memory": "160Mi"}},
     "scheduling": {"nodeSelector": {"runtime.kubernetes.io/kata": "true"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "high-security", "effect": "NoSchedule"}]}},
    {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "kata-fc"}, "handler": "kata-fc",
     "overhead": {"podFixed": {"cpu": "100m", "memory": "128Mi"}}, "scheduling": {"nodeSelector": {"runtime.kubernetes.io/kata-fc": "true"}}},
]


class Api:
    """The load generator's API access: kubeclass's own client (the lean pipelined HTTP client for
    creates, aiohttp for the watch), as scheduler_perf drives the apiserver through client-go."""

    def __init__(self, kubeconfig: str):
        self.client = Client(Config.from_kubeconfig(kubeconfig), user_agent="bench-scheduler")

    async def post(self, path: str, body: dict) -> dict:
        try:
            return await self.client.create(path, body)
        except ApiError as e:
            raise RuntimeError(f"{path}: {e}") from e

    async def get(self, path: str) -> dict:
        return await self.client.get(path)

    async def close(self) -> None:
        await self.client.close()


async def bounded(n: int, conc: int, make) -> None:
    sem = asyncio.Semaphore(conc)

    async def one(i):
        async with sem:
            await make(i)
    await asyncio.gather(*(one(i) for i in range(n)))


def node_obj(i: int, labels: dict, taints: list | None = None) -> dict:
    n = json.loads(json.dumps(NODE))
    n["metadata"]["name"] = f"node-{i}"
    n["metadata"]["labels"] = {"kubernetes.io/hostname": f"node-{i}", **labels}
    if taints:
        n["spec"] = {"taints": taints}
    return n


def pod_obj(workload: str, i: int) -> dict:
    p = json.loads(json.dumps(POD))
    if workload == "SchedulingNodeAffinity":
        p["spec"]["affinity"] = AFFINITY
    if workload == "RuntimeClassMix":
        p["spec"]["runtimeClassName"] = ("standard", "gvisor", "kata", "kata-fc")[i % 4]
    return p


def mix_labels(i: int) -> tuple[dict, list | None]:
    kind = i % 4
    if kind == 1:
        return {"runtime.kubernetes.io/gvisor": "true"}, None
    if kind == 2:
        return {"runtime.kubernetes.io/kata": "true"}, [{"key": "dedicated", "value": "high-security", "effect": "NoSchedule"}]
    if kind == 3:
        return {"runtime.kubernetes.io/kata-fc": "true"}, None
    return {}, None


async def run_workload(api: Api, workload: str, nodes: int, init: int, measured: int, kubeconfig: str, args) -> dict:
    ns = workload.lower()
    await api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    if workload == "RuntimeClassMix":
        for rc in CLASSES:
            try:
                await api.post("/apis/node.k8s.io/v1/runtimeclasses", rc)
            except RuntimeError:
                pass

    async def mk_node(i):
        if workload == "SchedulingNodeAffinity":
            labels, taints = {"topology.kubernetes.io/zone": "zone1"}, None
        elif workload == "RuntimeClassMix":
            labels, taints = mix_labels(i)
        else:
            labels, taints = {}, None
        await api.post("/api/v1/nodes", node_obj(i + args.node_offset, labels, taints))
    t = time.perf_counter()
    await bounded(nodes, 32, mk_node)
    node_secs = time.perf_counter() - t
    args.node_offset += nodes

    prof = ["-m", "cProfile", "-o", os.environ["KUBECLASS_PROFILE_SCHEDULER"]] if os.environ.get("KUBECLASS_PROFILE_SCHEDULER") else []
    sched_log = open(os.path.join(os.path.dirname(kubeconfig), "scheduler.log"), "wb")
    sched = subprocess.Popen([sys.executable, *prof, "-m", "kubeclass.cli", "scheduler", "--kubeconfig", kubeconfig, "--no-leader-elect"],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=sched_log)
    bound_at: dict[str, float] = {}
    created_at: dict[str, float] = {}
    done = asyncio.Event()
    want = init + measured
    watch_task = asyncio.get_running_loop().create_task(watch_bound(api, ns, bound_at, done, want))
    try:
        async def mk_pod(i):
            out = await api.post(f"/api/v1/namespaces/{ns}/pods", pod_obj(workload, i))
            created_at[out["metadata"]["name"]] = time.perf_counter()
        await bounded(init, args.clients, mk_pod)
        while len(bound_at) < init:
            await asyncio.sleep(0.05)
        initial = set(bound_at)
        cpu0 = {who: cpu_seconds(pid) for who, pid in (("server", args.server_pid), ("scheduler", sched.pid), ("client", os.getpid()))}
        cpu0["server main thread"] = cpu_seconds(args.server_pid, args.server_pid)
        t0 = time.perf_counter()
        await bounded(measured, args.clients, lambda i: mk_pod(init + i))
        created_s = time.perf_counter() - t0
        await asyncio.wait_for(done.wait(), timeout=args.timeout)
        t1 = max(bound_at.values())
        cpu = {who: (cpu_seconds(pid) - cpu0[who]) / measured * 1e3
               for who, pid in (("server", args.server_pid), ("scheduler", sched.pid), ("client", os.getpid()))}
        # the server's event loop thread: its share bounds the throughput (one core at most)
        cpu["server main thread"] = (cpu_seconds(args.server_pid, args.server_pid) - cpu0["server main thread"]) / measured * 1e3
    finally:
        watch_task.cancel()
        procs.stop(sched, 10)
        sched_log.close()
        errors = [ln for ln in open(sched_log.name, errors="replace") if '"level":"ERROR"' in ln or '"level":"WARNING"' in ln]
        if errors:
            print(f"  scheduler logged {len(errors)} warnings/errors, first: {errors[0].strip()[:300]}", flush=True)
            if os.environ.get("KUBECLASS_BENCH_LOG"):
                shutil.copy(sched_log.name, os.environ["KUBECLASS_BENCH_LOG"])
    lat = sorted(bound_at[k] - created_at[k] for k in bound_at if k not in initial and k in created_at)
    return {"workload": workload, "nodes": nodes, "init": init, "measured": measured, "node_create_s": node_secs,
            "pods_per_s": measured / (t1 - t0), "created_s": created_s, "cpu_ms": cpu, "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """user + system CPU time of a process (or one of its threads) so far (stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watch_bound(api: Api, ns: str, bound_at: dict, done: asyncio.Event, want: int) -> None:
    rv = (await api.get(f"/api/v1/namespaces/{ns}/pods?limit=1"))["metadata"]["resourceVersion"]
    async for _, obj in api.client.watch(f"/api/v1/namespaces/{ns}/pods", rv):
        if (obj.get("spec") or {}).get("nodeName") and obj["metadata"]["name"] not in bound_at:
            bound_at[obj["metadata"]["name"]] = time.perf_counter()
            if len(bound_at) >= want:
                done.set()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="SchedulingBasic,SchedulingNodeAffinity,RuntimeClassMix")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply node and pod counts (0.1 for a quick run)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent pod-creating clients (enough that creating "
                    "Pods outpaces scheduling them, so the scheduler is what is measured)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    args.node_offset = 0
    shapes = {"SchedulingBasic": (5000, 1000, 10000), "SchedulingNodeAffinity": (5000, 5000, 10000), "RuntimeClassMix": (5000, 1000, 10000)}
    print(f"kubeclass bench/scheduler: {os.cpu_count()} cores, API server + scheduler + this client on one machine")
    for w in args.workloads.split(","):
        nodes, init, measured = (max(1, int(x * args.scale)) for x in shapes[w])
        d = tempfile.mkdtemp(prefix="kubeclass-bench-sched-")
        port = 20000 + os.getpid() % 20000
        prof = ["-m", "cProfile", "-o", os.environ["KUBECLASS_PROFILE_SERVER"]] if os.environ.get("KUBECLASS_PROFILE_SERVER") else []
        server = subprocess.Popen([sys.executable, *prof, "-m", "kubeclass.cli", "up", "--no-scheduler", "--no-node", "--no-simulator", "--data-dir", d, "--port", str(port)],
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        args.server_pid = server.pid
        try:
            kc = os.path.join(d, "kubeconfig")
            for _ in range(200):
                if os.path.exists(kc):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            api = Api(kc)
            try:
                r = await run_workload(api, w, nodes, init, measured, kc, args)
            finally:
                await api.close()
            print(f"  {r['workload']:<24} {r['nodes']} nodes, {r['init']} initial + {r['measured']} measured pods: "
                  f"{r['pods_per_s']:.0f} pods/s, latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms "
                  f"(nodes created in {r['node_create_s']:.1f} s, measured pods in {r['created_s']:.1f} s)", flush=True)
            print("  " + " " * 24 + " CPU per measured pod: " + ", ".join(f"{k} {v:.2f} ms" for k, v in r["cpu_ms"].items()), flush=True)
        finally:
            procs.stop(server, 15)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
