"""bench/podstart: Pod start latency through the whole system — create acknowledged by the API server ->
scheduled -> the node agent makes the sandbox, the container's overlay rootfs and bundle, runs it with the
handler's runtime -> status Running observed through a watch — for 50 Pods per handler (runc, runsc),
next to a bare `<runtime> run --detach` of the same bundle measured in the same run on the same machine, and then
each handler's measured sandbox overhead (memory and CPU beyond the containers, `kubeclass overhead measure`'s
figures) next to what the seeds declare.

VM handlers (`--handlers kata-qemu,kata-fc`): `--vm-pods` Pods, each started alone on an otherwise idle node
(the previous one deleted first: idle VMs cost CPU under TCG, and the bare boot is measured alone too), each
booted cold (each of a VM shape not seen before, so no template exists; the bench waits for the template the
node then makes in the background before the next),
started from a VM template (Pods of a shape whose template exists), and taken from the warm pool (the node
runs with `--vm-pool 1`; the bench waits for the pool to refill before each create), next to a bare boot of
the same QEMU command line, kernel and initramfs to the guest agent's first answer, and the host RSS of an
idle VM Pod's QEMU, booted and restored. Prints p50/p99 of each and the differences. Asserts nothing. Needs
root, runc, runsc, and QEMU with the guest kernel for the VM handlers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import procs  # noqa: E402 - bench/procs.py, beside this script
from kubeclass.client import Client, path_for  # noqa: E402
from kubeclass.node import bundle, images  # noqa: E402
from kubeclass.node.vm import guestimage, machine, qemu  # noqa: E402

IMAGE = procs.IMAGE
pct = procs.pct
CLASSES = [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": h}, "handler": h}
           for h in ("runc", "runsc", "kata-qemu", "kata-fc")]
POOL_MIB = 256          # the warm pool's VM size; cold VM Pods ask for more memory so that they boot their own
COLD_MEMORY = "300Mi"


async def pods_latency(client: Client, handler: str, n: int, memory=None, before=None,
                       after=None, alone: bool = False) -> list[float]:
    """Create->Running of n Pods, one at a time; `alone`: each deleted (and gone) before the next is made, so
    that every start is measured on a node as idle as the bare runtime's (idle VMs cost CPU under TCG)."""
    ns = "podstart"
    out = []
    running: dict[str, float] = {}
    waiters: dict[str, asyncio.Event] = {}
    rv = (await client.list(path_for("", "v1", "pods", ns), limit=1))["metadata"]["resourceVersion"]

    async def watch():
        async for _, obj in client.watch(path_for("", "v1", "pods", ns), rv):
            name = obj["metadata"]["name"]
            if (obj.get("status") or {}).get("phase") == "Running" and name not in running:
                running[name] = time.perf_counter()
                if name in waiters:
                    waiters[name].set()
    wt = asyncio.ensure_future(watch())
    try:
        for i in range(n):
            name = f"{handler}-{i}"
            waiters[name] = asyncio.Event()
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"runtimeClassName": handler, "terminationGracePeriodSeconds": 0,
                            "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                            "command": ["sleep", "3600"]}]}}
            if memory:
                mem = memory(i) if callable(memory) else memory
                pod["spec"]["containers"][0]["resources"] = {"requests": {"memory": mem}}
            if before is not None:
                await before()
            t0 = time.perf_counter()
            await client.create(path_for("", "v1", "pods", ns), pod)
            await asyncio.wait_for(waiters[name].wait(), 120)
            out.append(running[name] - t0)
            if after is not None:
                await after(name)
            if alone:
                await client.delete(path_for("", "v1", "pods", ns, name))
                while any(p["metadata"]["name"] == name for p in (await client.list(path_for("", "v1", "pods", ns)))["items"]):
                    await asyncio.sleep(0.1)
    finally:
        wt.cancel()
    # clean up, so the next handler starts from an idle node
    await delete_all(client, handler, n)
    return out


async def delete_all(client: Client, handler: str, n: int) -> None:
    ns = "podstart"
    for i in range(n):
        try:
            await client.delete(path_for("", "v1", "pods", ns, f"{handler}-{i}"))
        except Exception:  # noqa: BLE001 - deleted already (alone)
            pass
    while (await client.list(path_for("", "v1", "pods", ns)))["items"]:
        await asyncio.sleep(0.2)


def qemu_rss_mib(data: str, client_pod: dict) -> tuple[float, float]:
    """(RSS, anonymous RSS) in MiB of the QEMU process of a VM Pod."""
    with open(os.path.join(data, "node", "pods", client_pod["metadata"]["uid"], "sandbox.json")) as f:
        vmid = json.load(f)["vm"]["vmid"]
    with open(os.path.join(machine.RUN_ROOT, vmid, "qemu.pid")) as f:
        pid = int(f.read())
    st = {ln.split(":")[0]: ln.split()[1] for ln in open(f"/proc/{pid}/status") if ln.startswith(("VmRSS", "RssAnon"))}
    return int(st["VmRSS"]) / 1024, int(st["RssAnon"]) / 1024


async def vm_handler(client: Client, data: str, handler: str, n: int) -> None:
    from kubeclass.node import handlers as handlers_mod
    h = handlers_mod.detected_handlers().handlers[handler]
    guest = guestimage.find()
    pool_dir = os.path.join(data, "node", "vm-pool")
    tpl_dir = os.path.join(data, "node", "vm-templates")

    def templates() -> list[str]:
        return [f for f in os.listdir(tpl_dir) if f.startswith(h.machine + "-")] if os.path.isdir(tpl_dir) else []

    async def pool_ready():
        for _ in range(600):
            recs = [json.load(open(os.path.join(pool_dir, f))) for f in os.listdir(pool_dir)] if os.path.isdir(pool_dir) else []
            if any(r.get("handler") == handler for r in recs):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the VM pool did not refill")

    async def templates_idle():
        """Until no template is being made (they are made in the background after a cold boot)."""
        for _ in range(600):
            fs = templates()
            if not any(".tmp" in f for f in fs):
                return
            await asyncio.sleep(0.1)

    def made() -> int:
        return len([f for f in templates() if ".tmp" not in f])

    def template_made(kind: str):
        """After a cold boot: until the template the node makes of that shape exists (its boot, some seconds
        later, would otherwise compete with the next measured start), then the idle RSS as below."""
        rss_of = idle_rss(kind)

        async def wait(name: str) -> None:
            before = made()
            await rss_of(name)
            for _ in range(600):
                if made() > before:
                    break
                await asyncio.sleep(0.1)
            else:
                print(f"    (no template appeared after {name})", flush=True)
        return wait

    rss: dict[str, list[tuple[float, float]]] = {"boot": [], "template": []}

    def idle_rss(kind: str):
        async def measure(name: str) -> None:
            await templates_idle()
            if len(rss[kind]) < 3:
                await asyncio.sleep(3)
                rss[kind].append(qemu_rss_mib(data, await client.get(path_for("", "v1", "pods", "podstart", name))))
        return measure

    await pool_ready()
    await templates_idle()
    # a new VM shape per Pod (300Mi + 64Mi * i requested: 320, 384, ... MiB VMs), so none has a template yet
    cold = await pods_latency(client, handler, n, memory=lambda i: f"{300 + 64 * i}Mi", after=template_made("boot"), alone=True)
    await templates_idle()
    tpl = await pods_latency(client, handler, n, memory="300Mi", after=idle_rss("template"), alone=True)
    warm = await pods_latency(client, handler, n, before=pool_ready, alone=True)
    bare = []
    for _ in range(n):
        t0 = time.perf_counter()
        vm = await machine.Vm.boot(h.binary, h.machine, guest, 320, 1, handler)
        bare.append(time.perf_counter() - t0)
        await vm.destroy()

    def ms(xs, p):
        return pct(xs, p) * 1e3

    def mib(kind):
        return f"{statistics.mean(r[0] for r in rss[kind]):.0f} MiB (anonymous {statistics.mean(r[1] for r in rss[kind]):.0f})"
    print(f"  {handler:<9} ({h.machine}, {qemu.accelerator().upper()}) Pod create->Running p50 / p99:\n"
          f"    cold boot      {ms(cold, .5):7.1f} / {ms(cold, .99):7.1f} ms   (bare qemu boot to the guest agent "
          f"{ms(bare, .5):7.1f} / {ms(bare, .99):7.1f} ms: p50 overhead {ms(cold, .5) - ms(bare, .5):+.1f} ms)\n"
          f"    from template  {ms(tpl, .5):7.1f} / {ms(tpl, .99):7.1f} ms\n"
          f"    warm pool      {ms(warm, .5):7.1f} / {ms(warm, .99):7.1f} ms\n"
          f"    idle VM Pod QEMU RSS: booted {mib('boot')}, from template {mib('template')}", flush=True)


def bare_latency(binary: str, handler: str, rootfs: str, work: str, n: int) -> list[float]:
    """`<runtime> run --detach` of a bundle made the same way (config.json from kubeclass.node.bundle,
    an overlay of the same unpacked image), timed from the call to its return (the container running)."""
    out = []
    root = os.path.join(work, f"bare-{handler}-state")
    flags = ["--root", root] + (["--network=none"] if handler == "runsc" else [])
    for i in range(n):
        b = os.path.join(work, f"bare-{handler}-{i}")
        for d in ("upper", "work", "rootfs"):
            os.makedirs(os.path.join(b, d))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={rootfs},upperdir={b}/upper,workdir={b}/work", f"{b}/rootfs"], check=True)
        cfg = bundle.spec({"metadata": {"name": "bare", "namespace": "bench", "uid": f"bare-{i}"}, "spec": {}},
                          {"name": "app", "command": ["sleep", "3600"]}, {"config": {"Env": ["PATH=/bin"]}},
                          f"{b}/rootfs", env={"PATH": "/bin"}, ns_paths={}, cgroups_path=f"/kubeclass-bench/{handler}-{i}",
                          hostname="bare", mounts=[])
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(cfg, f)
        cid = f"bare-{handler}-{i}"
        t0 = time.perf_counter()
        subprocess.run([binary, *flags, "run", "--detach", "--bundle", b, cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
        subprocess.run([binary, *flags, "kill", cid, "KILL"], capture_output=True)
        for _ in range(50):
            if subprocess.run([binary, *flags, "delete", "--force", cid], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        subprocess.run(["umount", "-l", f"{b}/rootfs"], capture_output=True)
    return out


SEEDS_DECLARE = {"runsc": "cpu 50m, memory 64Mi (seed 001's gvisor)", "kata-qemu": "cpu 250m, memory 160Mi (seed 001's kata)",
                 "kata-fc": "cpu 100m, memory 128Mi (seed 001's kata-fc)", "runc": "nothing"}


async def sandbox_overhead(client: Client, handler: str, n: int) -> None:
    """What the handler's sandbox costs beyond its containers, as `kubeclass overhead measure` reads it: n idle
    Pods, one metrics reading over the agents' 10 s window."""
    import io
    from kubeclass import overhead_measure
    r = await overhead_measure.measure(client, handler, n, IMAGE, "podstart", 1, 11.0, 300.0, sys.stdout, log=io.StringIO())
    d = r["distribution"]
    mib = lambda b: f"{b / (1 << 20):6.1f} MiB"   # noqa: E731
    print(f"  {handler:<9} sandbox overhead ({r['pods']} idle Pods): memory p50 {mib(d['memory']['p50'])} p95 "
          f"{mib(d['memory']['p95'])} | cpu p50 {d['cpu']['p50'] * 1e3:5.1f}m p95 {d['cpu']['p95'] * 1e3:5.1f}m | recommends "
          f"cpu {r['recommended']['cpu']}, memory {r['recommended']['memory']}; the seeds declare {SEEDS_DECLARE.get(handler, '-')}",
          flush=True)
    await delete_all(client, handler, 0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--handlers", default="runc,runsc,kata-qemu,kata-fc")
    ap.add_argument("--vm-pods", type=int, default=10, help="Pods per VM handler, cold and from the warm pool")
    ap.add_argument("--overhead-pods", type=int, default=5, help="idle Pods per handler whose sandbox overhead is measured")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/podstart needs root (it runs containers)")
    server, work, data = procs.start_cluster("podstart", "--vm-pool", "1", "--vm-pool-memory", f"{POOL_MIB}Mi")
    print(f"kubeclass bench/podstart: {os.cpu_count()} cores, API server + scheduler + node agent + this client on one machine; "
          f"{args.pods} Pods per handler, one at a time")
    try:
        client = await procs.client_for(data, "bench-podstart")
        for _ in range(200):
            try:
                n = await client.get(path_for("", "v1", "nodes", None, "bench-node"))
                if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            await asyncio.sleep(0.1)
        await client.create(path_for("", "v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "podstart"}})
        for rc in CLASSES:
            await client.create(path_for("node.k8s.io", "v1", "runtimeclasses"), rc)
        store = images.ImageStore(os.path.join(data, "node", "images"))
        rootfs = store.rootfs(store.lookup(IMAGE))
        for handler in args.handlers.split(","):
            if handler.startswith("kata"):
                await vm_handler(client, data, handler, args.vm_pods)
                continue
            binary = shutil.which(handler)
            await pods_latency(client, handler, 3)   # warm-up
            pods = await pods_latency(client, handler, args.pods)
            bare = await asyncio.to_thread(bare_latency, binary, handler, rootfs, work, args.pods)
            p50, p99, b50, b99 = pct(pods, .5) * 1e3, pct(pods, .99) * 1e3, pct(bare, .5) * 1e3, pct(bare, .99) * 1e3
            print(f"  {handler:<6} Pod create->Running p50 {p50:6.1f} ms  p99 {p99:6.1f} ms | bare `{handler} run -d` "
                  f"p50 {b50:6.1f} ms  p99 {b99:6.1f} ms | p50 overhead {p50 - b50:+.1f} ms "
                  f"(mean {statistics.mean(pods) * 1e3:.1f} vs {statistics.mean(bare) * 1e3:.1f} ms)", flush=True)
        for handler in args.handlers.split(","):
            await sandbox_overhead(client, handler, args.overhead_pods)
        await client.close()
    finally:
        procs.cleanup(server, work)


if __name__ == "__main__":
    asyncio.run(main())
