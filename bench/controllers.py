"""bench/controllers: the controller manager end to end, each component its own process as upstream runs
them: `kubeclass up --no-scheduler --no-controllers --simulated-nodes 100` (API server + the simulated
nodes, which run Pods without containers), `kubeclass scheduler` and `kubeclass controllers`.

Measures
  create      a Deployment of --replicas (1,000) Pods: seconds until all are available
  rollout     `kubectl set image`-style template change: seconds until the rollout is complete
  scale-down  replicas to 0: seconds until every Pod is gone
  job         a Job of --replicas completions, --job-parallelism at a time (simulated nodes complete a Job's
              Pods once running, KWOK's pod-complete stage): seconds until Complete
and the CPU seconds each process spent per Pod in each phase (from /proc/PID/stat). Upstream's
kube-controller-manager is bound by its client QPS (20, burst 30): about 50 s for 1,000 Pods.
Asserts nothing; prints figures."""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import procs  # noqa: E402 - bench/procs.py, beside this script
from kubeclass.client import Client, Config, path_for  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def deployment(replicas: int, image: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                     "template": {"metadata": {"labels": {"app": "bench"}},
                                  "spec": {"tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                                           "containers": [{"name": "app", "image": image,
                                                           "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}


async def wait_for(client: Client, pred, timeout: float) -> float:
    start = time.monotonic()
    path = path_for("apps", "v1", "deployments", "default", "bench")
    while time.monotonic() - start < timeout:
        d = await client.get(path)
        if pred(d):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not done after {timeout} s: {d.get('status')}")


def done(replicas: int, generation: int):
    def pred(d):
        st = d.get("status") or {}
        return st.get("observedGeneration", 0) >= generation and st.get("updatedReplicas", 0) == replicas and \
            st.get("availableReplicas", 0) == replicas and st.get("replicas", 0) == replicas
    return pred


async def pods_gone(client: Client, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        lst = await client.list(path_for("", "v1", "pods", "default"), labelSelector="app=bench", limit="1")
        if not lst["items"]:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise TimeoutError("Pods still there")


def job(completions: int, parallelism: int) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bench"},
            "spec": {"completions": completions, "parallelism": parallelism,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                                           "containers": [{"name": "work", "image": "registry.k8s.io/pause:3.10"}]}}}}


async def job_complete(client: Client, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        j = await client.get(path_for("batch", "v1", "jobs", "default", "bench"))
        if any(c.get("type") == "Complete" for c in (j.get("status") or {}).get("conditions") or []):
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise TimeoutError(f"Job not complete: {j.get('status')}")


async def run(kubeconfig: str, replicas: int, pids: dict[str, int], parallelism: int = 100) -> list[tuple[str, float, dict[str, float]]]:
    client = Client(Config.from_kubeconfig(kubeconfig), user_agent="bench-controllers")
    out = []
    try:
        async def phase(name, action, waiter):
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            await action()
            secs = await waiter()
            out.append((name, secs, {k: cpu_seconds(p) - before[k] for k, p in pids.items()}))
            print(f"  {name:<11} {secs:7.2f} s", flush=True)
        dpath = path_for("apps", "v1", "deployments", "default")
        await phase("create", lambda: client.create(dpath, deployment(replicas, "registry.k8s.io/pause:3.9")),
                    lambda: wait_for(client, done(replicas, 1), 300))
        await phase("rollout", lambda: client.patch(dpath + "/bench", {"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}}}),
                    lambda: wait_for(client, done(replicas, 2), 300))
        await phase("scale-down", lambda: client.patch(dpath + "/bench", {"spec": {"replicas": 0}}, kind="merge"),
                    lambda: pods_gone(client, 300))
        await phase("job", lambda: client.create(path_for("batch", "v1", "jobs", "default"), job(replicas, parallelism)),
                    lambda: job_complete(client, 600))
    finally:
        await client.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--job-parallelism", type=int, default=100)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="bench-controllers-")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    log = open(os.path.join(d, "up.log"), "wb")
    up = subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "up", "--data-dir", os.path.join(d, "data"), "--port", str(port),
                           "--no-node", "--no-scheduler", "--no-controllers", "--simulated-nodes", str(args.nodes)],
                          stdout=log, stderr=subprocess.STDOUT, env=env)
    kc = os.path.join(d, "data", "kubeconfig")
    others = []
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(kc) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        sched = subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "scheduler", "--kubeconfig", kc],
                                 stdout=open(os.path.join(d, "scheduler.log"), "wb"), stderr=subprocess.STDOUT, env=env)
        ctrl = subprocess.Popen([sys.executable, "-m", "kubeclass.cli", "controllers", "--kubeconfig", kc],
                                stdout=open(os.path.join(d, "controllers.log"), "wb"), stderr=subprocess.STDOUT, env=env)
        others = [sched, ctrl]
        subprocess.run(["kubectl", "--kubeconfig", kc, "wait", "--for=condition=Ready", "nodes", "--all", "--timeout=60s"],
                       check=True, capture_output=True)
        time.sleep(3)   # leases won, informers synced
        print(f"bench/controllers: Deployment of {args.replicas} on {args.nodes} simulated nodes "
              f"(server + simulator, scheduler, controllers: three processes)")
        results = asyncio.run(run(kc, args.replicas, {"server+simulator": up.pid, "scheduler": sched.pid, "controllers": ctrl.pid},
                                  args.job_parallelism))
        print()
        print(f"{'phase':<11} {'seconds':>8} {'Pods/s':>8}   CPU ms per Pod: " + "  ".join(f"{k:>16}" for k in results[0][2]))
        for name, secs, cpu in results:
            print(f"{name:<11} {secs:8.2f} {args.replicas / secs:8.0f}   {'':15}" + "  ".join(f"{1000 * v / args.replicas:16.2f}" for v in cpu.values()))
    finally:
        for p in others:
            procs.stop(p, 10)
        procs.stop(up, 15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
