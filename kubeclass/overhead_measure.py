"""`kubeclass overhead measure --handler H [--pods N]`: what a runtime handler's sandbox really costs. Starts N idle
probe Pods under a RuntimeClass of that handler (an existing one, else a temporary one), reads each Pod's sandbox
usage beyond its containers from the metrics API (the node agents measure it: node/podstats.py), prints the
distribution over the Pods and the `overhead.podFixed` it recommends (p95 memory rounded up to a MiB, p95 CPU
rounded up to a millicore), next to what the class declares. The probe Pods are deleted afterwards."""
from __future__ import annotations

import asyncio
import json
import math
import secrets
import sys
import time

from .api import quantity
from .client import ApiError, Client, Config, TransportError, path_for

PROBE_LABEL = "kubeclass.io/overhead-probe"


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def recommend(memory: list[float], cpu: list[float]) -> dict:
    """podFixed from the distributions (bytes, cores): p95 memory up to a MiB, p95 CPU up to a millicore."""
    return {"cpu": f"{max(1, math.ceil(percentile(cpu, 95) * 1000 - 1e-9))}m",
            "memory": f"{max(1, math.ceil(percentile(memory, 95) / (1 << 20)))}Mi"}


def _mib(b: float) -> str:
    return f"{b / (1 << 20):.1f}Mi"


def _mcpu(c: float) -> str:
    return f"{c * 1000:.1f}m"


def render(result: dict, out) -> None:
    rc, decl = result["runtimeClass"], result.get("declared")
    out.write(f"Sandbox overhead of handler {result['handler']} (RuntimeClass {rc}{', temporary' if result['temporary'] else ''}): "
              f"{result['pods']} idle probe Pods on {', '.join(result['nodes'])}, {result['readings']} readings over "
              f"{result['seconds']:.0f}s\n")
    out.write(f"  {'':8}{'min':>10}{'p50':>10}{'p95':>10}{'max':>10}\n")
    for key, fmt in (("memory", _mib), ("cpu", _mcpu)):
        d = result["distribution"][key]
        out.write(f"  {key:8}" + "".join(f"{fmt(d[k]):>10}" for k in ("min", "p50", "p95", "max")) + "\n")
    if decl:
        out.write("  declared by RuntimeClass " + rc + ": " + ", ".join(f"{k} {decl[k]}" for k in ("cpu", "memory") if k in decl) + "\n")
    else:
        out.write(f"  declared by RuntimeClass {rc}: no overhead\n")
    rec = result["recommended"]
    out.write("Recommended (idle Pods: add what your workload's sandbox work costs under load):\n"
              f"  overhead:\n    podFixed:\n      cpu: {rec['cpu']}\n      memory: {rec['memory']}\n")


async def measure(client: Client, handler: str, pods: int, image: str, namespace: str, readings: int, interval: float,
                  timeout: float, out, log=sys.stderr) -> dict:
    rcs = (await client.list("/apis/node.k8s.io/v1/runtimeclasses"))["items"]
    rc = next((r for r in sorted(rcs, key=lambda r: r["metadata"]["name"]) if r.get("handler") == handler), None)
    run = secrets.token_hex(3)
    temporary = rc is None
    if temporary:
        rc = await client.create(path_for("node.k8s.io", "v1", "runtimeclasses"), {
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": f"kubeclass-overhead-{run}", "labels": {PROBE_LABEL: run}}, "handler": handler})
    rc_name = rc["metadata"]["name"]
    names = [f"overhead-probe-{run}-{i}" for i in range(pods)]
    pods_path = path_for("", "v1", "pods", namespace)
    try:
        for n in names:
            await client.create(pods_path, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "labels": {PROBE_LABEL: run}},
                "spec": {"runtimeClassName": rc_name, "terminationGracePeriodSeconds": 0, "restartPolicy": "Never",
                         "containers": [{"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sleep", "86400"]}]}})
        log.write(f"started {pods} probe Pods under RuntimeClass {rc_name}; waiting for them to run\n")
        deadline = time.monotonic() + timeout
        nodes: set[str] = set()
        while True:
            items = (await client.list(pods_path, labelSelector=f"{PROBE_LABEL}={run}"))["items"]
            phases = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in items}
            bad = [n for n, ph in phases.items() if ph in ("Failed", "Succeeded")]
            if bad:
                raise RuntimeError(f"probe Pod {bad[0]} ended ({phases[bad[0]]}): see kubectl describe pod -n {namespace} {bad[0]}")
            if len(items) == pods and all(ph == "Running" for ph in phases.values()):
                nodes = {p["spec"].get("nodeName", "") for p in items}
                break
            if time.monotonic() > deadline:
                waiting = sorted(n for n, ph in phases.items() if ph != "Running")
                raise RuntimeError(f"probe Pods not running after {timeout:.0f}s: {', '.join(waiting)}")
            await asyncio.sleep(1)
        mem: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        t0 = time.monotonic()
        got = 0
        while got < readings and time.monotonic() < deadline + readings * interval * 3:
            await asyncio.sleep(interval)
            try:
                pm = await client.list(f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
                                       labelSelector=f"{PROBE_LABEL}={run}")
            except ApiError:
                continue
            seen = 0
            for m in pm.get("items") or []:
                sb = (m.get("sandbox") or {}).get("usage")
                n = m["metadata"]["name"]
                if sb and n in mem:
                    mem[n].append(float(quantity.value(sb["memory"])))
                    cpu[n].append(float(quantity.value(sb["cpu"])))
                    seen += 1
            if seen:
                got += 1
                log.write(f"reading {got}/{readings}: {seen} Pods\n")
        measured = [n for n in names if mem[n]]
        if not measured:
            raise RuntimeError("no sandbox figures came from the metrics API (is the node agent measuring? "
                               "kubectl get --raw /apis/metrics.k8s.io/v1beta1/pods)")
        per_mem = [max(mem[n]) for n in measured]           # the most each sandbox held
        per_cpu = [sum(cpu[n]) / len(cpu[n]) for n in measured]   # its mean rate
        dist = {k: {"min": min(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "max": max(v)}
                for k, v in (("memory", per_mem), ("cpu", per_cpu))}
        return {"handler": handler, "runtimeClass": rc_name, "temporary": temporary, "pods": len(measured),
                "nodes": sorted(nodes), "readings": got, "seconds": time.monotonic() - t0,
                "declared": (rc.get("overhead") or {}).get("podFixed"), "distribution": dist,
                "recommended": recommend(per_mem, per_cpu),
                "samples": {n: {"memoryBytes": mem[n], "cpuCores": cpu[n]} for n in measured}}
    finally:
        for n in names:
            try:
                await client.delete(path_for("", "v1", "pods", namespace, n))
            except (ApiError, TransportError):
                pass
        if temporary:
            try:
                await client.delete(path_for("node.k8s.io", "v1", "runtimeclasses", None, rc_name))
            except (ApiError, TransportError):
                pass


async def main(args) -> int:
    client = Client(Config.from_kubeconfig(args.kubeconfig), user_agent="kubeclass-overhead")
    try:
        result = await measure(client, args.handler, args.pods, args.image, args.namespace, args.readings,
                               args.interval, args.timeout, sys.stdout)
    except (RuntimeError, ApiError, TransportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        render(result, sys.stdout)
    return 0
