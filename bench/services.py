"""bench/services: the node's service proxy and cluster DNS at scale.

A cluster with the real node: N Services (default 1,000), each with an EndpointSlice of 10 endpoints (written
directly: endpoints on addresses no Pod holds, which the proxy programs exactly as a Pod's), then
- the time from a change (a new Service and its slice; an endpoint added to an existing slice) to the rule being
  in the node's nft table (seen through `nft monitor`: the kernel's own report of the change), p50 / p99 over the runs;
- how long the proxy's initial full programming of the N Services took (from the first Service to the last one's
  rules present);
- DNS queries/s and p50 / p99 latency of `<svc>.<ns>.svc.cluster.local` lookups sent from inside a runc Pod's
  network namespace (the Pod's own path to the kube-dns address) by a client in this process.
Anchors printed beside: kube-proxy's iptables mode took minutes to sync 10,000s of Services, its nftables mode
(KEP-3866) programs a change in time independent of their number; CoreDNS serves tens of thousands of queries/s
per core. Asserts nothing. Needs root, runc, nft, the CNI plugins (scripts/install.sh)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import procs  # noqa: E402 - bench/procs.py, beside this script
from kubeclass.client import Client, path_for  # noqa: E402
from kubeclass.node.serviceproxy import table_name  # noqa: E402

NS = "default"


class Monitor:
    """`nft monitor` in the background: each ruleset change is seen as the kernel reports it, with its time, so a
    change's latency is measured without polling (an nft read of a 1,000-Service table takes ~90 ms itself)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["nft", "monitor"], stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line))
                self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait(self, start: int, *needles: str, timeout: float = 30) -> float:
        """The time the first line from index start holding one of the needles was seen."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    t, line = self.lines[i]
                    if any(n in line for n in needles):
                        return t
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nft monitor never showed {needles!r}")
                self.cond.wait(left)

    def stop(self) -> None:
        self.proc.terminate()


def nft_has(table: str, ip: str, port: int) -> bool:
    r = subprocess.run(["nft", "get", "element", "ip", table, "service-ips", "{", f"{ip} . tcp . {port}", "}"],
                       capture_output=True)
    return r.returncode == 0


def service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoint_slice(i: int, n: int = 10) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"s{i}-bench", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": f"s{i}", "endpointslice.kubernetes.io/managed-by": "bench"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.250.{i % 250}.{j + 1}"], "conditions": {"ready": True}} for j in range(n)]}


def pct(xs, p):
    return procs.pct(xs, p)


async def create_services(client: Client, lo: int, hi: int, conc: int = 16) -> list[str]:
    sem = asyncio.Semaphore(conc)
    ips: dict[int, str] = {}

    async def one(i: int) -> None:
        async with sem:
            svc = await client.create(path_for("", "v1", "services", NS), service(i))
            ips[i] = svc["spec"]["clusterIP"]
            await client.create(path_for("discovery.k8s.io", "v1", "endpointslices", NS), endpoint_slice(i))
    await asyncio.gather(*(one(i) for i in range(lo, hi)))
    return [ips[i] for i in range(lo, hi)]


def dns_load(dns_ip: str, names: list[str], seconds: float) -> tuple[float, list[float]]:
    """Queries in a loop (one outstanding), from this process's network namespace: (queries/s, latencies)."""
    from dnslib import DNSRecord
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    lat = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        q = DNSRecord.question(names[i % len(names)], "A").pack()
        t0 = time.perf_counter()
        s.sendto(q, (dns_ip, 53))
        s.recv(4096)
        lat.append(time.perf_counter() - t0)
        i += 1
    return len(lat) / seconds, lat


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--dns-seconds", type=float, default=5.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/services needs root (nft, network namespaces)")
    n = os.getpid() % 200 + 20
    server, work, data = procs.start_cluster("services", "--pod-cidr", f"10.246.{n}.0/24", "--cni-bridge", f"kcbench{n}",
                                             "--service-cluster-ip-range", "10.112.0.0/16")
    table = table_name("bench-node", os.path.join(data, "node"))
    print(f"kubeclass bench/services: {os.cpu_count()} cores, API server + controllers + node agent + this client on one machine; "
          f"{args.services} Services x 10 endpoints")
    try:
        client = await procs.client_for(data, "bench-services")
        for _ in range(300):
            if subprocess.run(["nft", "list", "table", "ip", table], capture_output=True).returncode == 0:
                break
            await asyncio.sleep(0.1)
        t0 = time.monotonic()
        ips = await create_services(client, 0, args.services)
        created = time.monotonic() - t0
        while not nft_has(table, ips[-1], 80):
            await asyncio.sleep(0.02)
        programmed = time.monotonic() - t0
        print(f"  {args.services} Services + slices created in {created:.1f} s; all in the node's nft table {programmed:.1f} s "
              f"after the first create", flush=True)
        mon = Monitor()
        await asyncio.sleep(0.5)
        adds = []
        for k in range(args.changes):
            i = args.services + k
            mark = mon.mark()
            t1 = time.monotonic()
            (ip,) = await create_services(client, i, i + 1, 1)
            seen = await asyncio.to_thread(mon.wait, mark, f"{ip} . tcp . 80 : goto svc-")
            adds.append(seen - t1)
        updates = []
        for k in range(args.changes):
            i = k * (args.services // max(args.changes, 1))
            sl = await client.get(path_for("discovery.k8s.io", "v1", "endpointslices", NS, f"s{i}-bench"))
            new_ip = f"10.251.{k // 200}.{k % 200 + 1}"
            sl["endpoints"].append({"addresses": [new_ip], "conditions": {"ready": True}})
            mark = mon.mark()
            t1 = time.monotonic()
            await client.update(path_for("discovery.k8s.io", "v1", "endpointslices", NS, f"s{i}-bench"), sl)
            seen = await asyncio.to_thread(mon.wait, mark, f"dnat to {new_ip}:8080", f"{new_ip} . 8080")   # its DNAT rule
            updates.append(seen - t1)
        mon.stop()
        print(f"  new Service -> its rules on the node: p50 {pct(adds, .5) * 1e3:6.1f} ms  p99 {pct(adds, .99) * 1e3:6.1f} ms "
              f"(API create + slice + watch + nft, {args.changes} runs)")
        print(f"  endpoint added -> its rule on the node: p50 {pct(updates, .5) * 1e3:6.1f} ms  p99 {pct(updates, .99) * 1e3:6.1f} ms "
              f"(API update + watch + nft; seen through `nft monitor`, as the kernel reports the change)")
        # DNS from inside a runc Pod's network namespace
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dns-client", "namespace": NS},
               "spec": {"containers": [{"name": "c", "image": procs.IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}
        await client.create(path_for("", "v1", "pods", NS), pod)
        uid = ""
        for _ in range(600):
            p = await client.get(path_for("", "v1", "pods", NS, "dns-client"))
            if (p.get("status") or {}).get("phase") == "Running":
                uid = p["metadata"]["uid"]
                break
            await asyncio.sleep(0.1)
        dns_ip = (await client.get(path_for("", "v1", "services", "kube-system", "kube-dns")))["spec"]["clusterIP"]
        names = [f"s{i}.{NS}.svc.cluster.local" for i in range(0, args.services, max(args.services // 100, 1))]
        code = (f"import json,sys; sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.join(ROOT, 'bench')!r}); "
                f"import services; q, lat = services.dns_load({dns_ip!r}, {names!r}, {args.dns_seconds}); print(json.dumps([q, lat]))")
        out = subprocess.run(["nsenter", f"--net=/run/netns/kc-{uid}", sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"  DNS load failed: {out.stderr.strip()[-300:]}")
        else:
            q, lat = json.loads(out.stdout)
            print(f"  DNS from inside a runc Pod: {q:,.0f} queries/s (one outstanding), p50 {pct(lat, .5) * 1e3:.2f} ms  "
                  f"p99 {pct(lat, .99) * 1e3:.2f} ms")
        print("  anchors: kube-proxy iptables mode: syncs of 10,000s of Services take seconds to minutes (KEP-3866's "
              "motivation); nftables mode: a change's cost independent of the Service count. CoreDNS: tens of "
              "thousands of queries/s per core.")
        await client.close()
    finally:
        procs.cleanup(server, work)
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
        subprocess.run(["ip", "link", "delete", f"kcbench{n}"], capture_output=True)


if __name__ == "__main__":
    asyncio.run(main())
