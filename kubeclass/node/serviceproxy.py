"""The node's service proxy (kube-proxy's job, in its nftables mode): traffic to a Service's ClusterIP:port (and its
externalIPs and LoadBalancer ingress IPs) — and to a NodePort on any of the node's addresses — is DNAT'ed to one of its ready endpoints, picked at random (or the same
one per client with `sessionAffinity: ClientIP`); a Service without endpoints answers with a reject at once.

The rules live in one nft table per node agent (`ip kubeclass-<node>-<data dir hash>`), laid out as kube-proxy's: verdict maps from
(address, protocol, port) to a chain per Service port, which DNATs to an endpoint picked from an inline map (a
chain per endpoint only with ClientIP affinity, whose per-endpoint sets remember the clients: kube-proxy keeps a
chain per endpoint always, which makes every nft transaction load a cache of them). A change of a Service
or its EndpointSlices rewrites only that Service's chains and map elements, in one nft transaction; the table is
flushed only when the agent starts. Service traffic is masqueraded (kube-proxy's --masquerade-all): Pods on one
bridge reach each other through a ClusterIP without br_netfilter.

Not proxied: headless and ExternalName Services, and the `kubernetes` Service while the agent serves its address
itself (apiproxy.py: the API server's Endpoints would be loopback)."""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import ipaddress
import logging
import os
import re
import subprocess
import threading

from ..api import services
from .servicewatch import ServiceWatch

log = logging.getLogger("kubeclass.node")

MASQ_MARK = 0x4000
AFFINITY_DEFAULT = 10800


def _id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:12]


def table_name(node: str, data_dir: str) -> str:
    """One table per node agent (its name and data directory): agents of several clusters may share a machine."""
    return f"kubeclass-{re.sub(r'[^a-zA-Z0-9_-]', '_', node)[:32]}-{_id(os.path.realpath(data_dir))[:6]}"


def ready_endpoints(slices: list[dict], port_name: str, protocol: str) -> list[tuple[str, int]]:
    """(ip, port) of a Service port's ready endpoints; the serving ones being terminated when none is ready
    (kube-proxy's fallback, so connections drain)."""
    ready, terminating = [], []
    for s in slices:
        port = next((p.get("port") for p in s.get("ports") or []
                     if (p.get("name") or "") == port_name and p.get("protocol", "TCP") == protocol), None)
        if port is None:
            continue
        for e in s.get("endpoints") or []:
            c = e.get("conditions") or {}
            for ip in e.get("addresses") or []:
                if c.get("ready", True):
                    ready.append((ip, port))
                elif c.get("serving") and c.get("terminating"):
                    terminating.append((ip, port))
    return sorted(set(ready or terminating))


def external_ips(svc: dict) -> list[str]:
    """Where else a Service answers, as kube-proxy programs it: spec.externalIPs and, for a LoadBalancer, its
    status.loadBalancer.ingress IPs (IPv4; loopback ones are served by loopbacklb.py: DNAT cannot reach a Pod
    from a loopback source)."""
    spec = svc.get("spec") or {}
    out = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer":
        out += services.lb_ingress_ips(svc)
    keep = []
    for ip in out:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if a.version == 4 and not a.is_loopback and ip not in keep:
            keep.append(ip)
    return keep


def service_rules(table: str, svc: dict, slices: list[dict]) -> tuple[list[str], dict, dict, set[str], dict]:
    """nft commands defining one Service's chains; its service-ips and service-nodeports elements (key -> verdict);
    the chains and affinity sets (`set:` + name) it uses; its no-endpoint-services elements."""
    md, spec = svc["metadata"], svc.get("spec") or {}
    ns, name = md.get("namespace", ""), md["name"]
    cmds: list[str] = []
    ips: dict[str, str] = {}
    nodeports: dict[str, str] = {}
    chains: set[str] = set()
    affinity = spec.get("sessionAffinity") == "ClientIP"
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds") or AFFINITY_DEFAULT
    cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"] + external_ips(svc)
    no_endpoints: dict[str, str] = {}
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP").lower()
        pname = p.get("name") or ""
        eps = ready_endpoints(slices, pname, p.get("protocol", "TCP"))
        keys = [f"{ip} . {proto} . {p['port']}" for ip in cluster_ips]
        np_key = f"{proto} . {p['nodePort']}" if p.get("nodePort") else None
        if not eps:
            for k in keys:
                no_endpoints[k] = "goto reject-chain"
            continue
        svc_chain = f"svc-{_id(ns, name, pname, proto)}"
        chains.add(svc_chain)
        cmds += [f"add chain ip {table} {svc_chain}", f"flush chain ip {table} {svc_chain}",
                 f"add rule ip {table} {svc_chain} jump mark-for-masquerade"]
        if not affinity:
            # the endpoints inline in the Service's chain: no chain per endpoint, so an nft transaction loads a
            # cache of one chain per Service port (4.5 ms a change at 1,000 Services, 25 ms with 11,000 chains)
            if len(eps) == 1:
                cmds.append(f"add rule ip {table} {svc_chain} meta l4proto {proto} dnat to {eps[0][0]}:{eps[0][1]}")
            else:
                dmap = ", ".join(f"{i} : {ip} . {port}" for i, (ip, port) in enumerate(eps))
                cmds.append(f"add rule ip {table} {svc_chain} meta l4proto {proto} dnat ip to numgen random mod {len(eps)} "
                            f"map {{ {dmap} }}")
            for k in keys:
                ips[k] = f"goto {svc_chain}"
            if np_key:
                nodeports[np_key] = f"goto {svc_chain}"
            continue
        targets = []
        for ip, port in eps:
            sep = f"sep-{_id(ns, name, pname, proto, ip, str(port))}"
            chains.add(sep)
            cmds += [f"add chain ip {table} {sep}", f"flush chain ip {table} {sep}"]
            if affinity:
                aff = f"aff-{sep[4:]}"
                chains.add(f"set:{aff}")
                cmds.append(f"add set ip {table} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}")
                cmds.append(f"add rule ip {table} {sep} update @{aff} {{ ip saddr }}")
                cmds.append(f"add rule ip {table} {svc_chain} ip saddr @{aff} goto {sep}")
            cmds.append(f"add rule ip {table} {sep} meta l4proto {proto} dnat to {ip}:{port}")
            targets.append(sep)
        vmap = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
        cmds.append(f"add rule ip {table} {svc_chain} numgen random mod {len(targets)} vmap {{ {vmap} }}")
        for k in keys:
            ips[k] = f"goto {svc_chain}"
        if np_key:
            nodeports[np_key] = f"goto {svc_chain}"
    return cmds, ips, nodeports, chains, no_endpoints


def base_rules(table: str) -> list[str]:
    """The table kube-proxy's nftables mode builds, reduced to what this proxy uses."""
    return [
        f"add table ip {table}",
        f"delete table ip {table}",
        f"add table ip {table}",
        f"add map ip {table} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add map ip {table} service-nodeports {{ type inet_proto . inet_service : verdict ; }}",
        f"add map ip {table} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add chain ip {table} services",
        f"add chain ip {table} mark-for-masquerade",
        f"add chain ip {table} reject-chain",
        f"add chain ip {table} nat-prerouting {{ type nat hook prerouting priority dstnat ; policy accept ; }}",
        f"add chain ip {table} nat-output {{ type nat hook output priority -100 ; policy accept ; }}",
        f"add chain ip {table} nat-postrouting {{ type nat hook postrouting priority srcnat ; policy accept ; }}",
        f"add chain ip {table} filter-output {{ type filter hook output priority -110 ; policy accept ; }}",
        f"add chain ip {table} filter-forward {{ type filter hook forward priority -110 ; policy accept ; }}",
        f"add rule ip {table} nat-prerouting jump services",
        f"add rule ip {table} nat-output jump services",
        f"add rule ip {table} nat-postrouting meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark ^ {MASQ_MARK:#x} masquerade",
        f"add rule ip {table} mark-for-masquerade meta mark set meta mark | {MASQ_MARK:#x}",
        f"add rule ip {table} reject-chain reject",
        f"add rule ip {table} services ip daddr . meta l4proto . th dport vmap @service-ips",
        # not to loopback (as kube-proxy's nftables mode): DNAT from a loopback source cannot reach a Pod;
        # the agent relays NodePorts on a loopback node address itself (loopbacklb.py)
        f"add rule ip {table} services ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports",
        f"add rule ip {table} filter-output ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"add rule ip {table} filter-forward ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    ]


class Nft:
    """nft transactions through libnftables in this process (Debian's nftables ships libnftables.so.1), as
    `nft -f -` would run them: one context kept for the agent's life, so a change costs no process start and no
    library set-up (measured at 1,000 Services: 21-34 ms a change in process, 48-65 ms through `nft -f -`). Falls
    back to the nft command where the library cannot be loaded."""

    def __init__(self, binary: str = "nft"):
        self.binary = binary
        self.lib = None
        self.ctx = None
        self.lock = threading.Lock()   # a transaction in a worker thread and close() at shutdown
        try:
            lib = ctypes.CDLL("libnftables.so.1")
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            ctx = lib.nft_ctx_new(0)
            if ctx:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                self.lib, self.ctx = lib, ctx
        except (OSError, AttributeError):
            pass

    def run(self, text: str) -> None:
        """Apply a transaction (commands, one per line); RuntimeError with nft's message when it is refused."""
        with self.lock:
            if self.lib is not None:
                if self.lib.nft_run_cmd_from_buffer(self.ctx, text.encode()) != 0:
                    raise RuntimeError((self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode(errors="replace").strip()[-2000:])
                return
        r = subprocess.run([self.binary, "-f", "-"], input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip()[-2000:])

    def close(self) -> None:
        with self.lock:
            if self.lib is not None and self.ctx:
                self.lib.nft_ctx_free(self.ctx)
                self.lib = self.ctx = None


class ServiceProxy:
    def __init__(self, watch: ServiceWatch, node_name: str, data_dir: str, skip: set[str] | None = None, nft: str = "nft"):
        self.watch = watch
        self.table = table_name(node_name, data_dir)
        self.nft = nft
        self.runner = Nft(nft)
        self.skip = skip or set()                 # "ns/name" of Services served otherwise (the kubernetes Service)
        self.applied: dict[str, tuple[dict, dict, dict, set]] = {}   # service key -> (ips, nodeports, no-endpoints, chains)
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.last_sync_ms = 0.0
        watch.listen(self._changed)

    def _changed(self, keys: set[str]) -> None:
        self.dirty |= keys
        self.wake.set()

    def _apply(self, cmds: list[str]) -> None:
        if cmds:
            self.runner.run("\n".join(cmds) + "\n")

    def start(self) -> None:
        try:   # Service traffic from a Pod to another Pod is routed through the node
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
        except OSError as e:
            log.warning("service proxy: cannot enable IP forwarding: %s", e)
        self._apply(base_rules(self.table))

    def stop(self) -> None:
        subprocess.run([self.nft, "delete", "table", "ip", self.table], capture_output=True)
        self.runner.close()

    # ---------------------------------------------------------------- sync
    def sync(self, keys: set[str]) -> None:
        """One nft transaction for the changed Services: new chains and elements first, the old ones removed."""
        t = self.table
        cmds: list[str] = []
        removals: list[str] = []
        for key in sorted(keys):
            svc = self.watch.services.get(key)
            old_ips, old_nps, old_noep, old_chains = self.applied.get(key, ({}, {}, {}, set()))
            if svc is None or key in self.skip or not self._proxied(svc):
                new = ({}, {}, {}, set())
                svc_cmds: list[str] = []
            else:
                svc_cmds, ips, nps, chains, noep = service_rules(t, svc, self.watch.service_slices(key))
                new = (ips, nps, noep, chains)
            cmds += svc_cmds
            for (mapname, old, cur) in (("service-ips", old_ips, new[0]), ("service-nodeports", old_nps, new[1]),
                                        ("no-endpoint-services", old_noep, new[2])):
                gone = [k for k in old if k not in cur or cur[k] != old[k]]
                if gone:
                    cmds.append(f"delete element ip {t} {mapname} {{ {', '.join(gone)} }}")
                added = {k: v for k, v in cur.items() if old.get(k) != v}
                if added:
                    cmds.append(f"add element ip {t} {mapname} {{ {', '.join(f'{k} : {v}' for k, v in added.items())} }}")
            removals += sorted(old_chains - new[3])
            if new == ({}, {}, {}, set()):
                self.applied.pop(key, None)
            else:
                self.applied[key] = new
        # what is no longer used goes last: every chain emptied first (no rule then refers to another chain or a
        # set), then the chains, then the affinity sets
        chains = [c for c in removals if not c.startswith("set:")]
        sets = [c[4:] for c in removals if c.startswith("set:")]
        self._apply(cmds + [f"flush chain ip {t} {c}" for c in chains] + [f"delete chain ip {t} {c}" for c in chains]
                    + [f"delete set ip {t} {x}" for x in sets])

    @staticmethod
    def _proxied(svc: dict) -> bool:
        spec = svc.get("spec") or {}
        return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") not in (None, "", "None")

    async def run(self) -> None:
        """Apply what changed, one nft transaction at a time (changes arriving meanwhile are applied together next)."""
        await asyncio.to_thread(self.start)
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if not self.dirty:
                    continue
                keys, self.dirty = self.dirty, set()
                t0 = loop.time()
                try:
                    await asyncio.to_thread(self.sync, keys)
                except RuntimeError as e:
                    log.warning("service proxy: nft refused an update (%s); rebuilding the table", e)
                    self.applied = {}
                    await asyncio.to_thread(self.start)
                    self.dirty |= set(self.watch.services)
                    self.wake.set()
                    await asyncio.sleep(1)
                self.last_sync_ms = (loop.time() - t0) * 1e3
        finally:
            await asyncio.to_thread(self.stop)
