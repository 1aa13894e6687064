"""The node agent (`kubeclass node`): registers this machine as a Node, keeps it current (a Lease in
kube-node-lease renewed every 10 s, as kubelet's node lease; status re-posted when it changes and every
`status_report` seconds), and runs the Pods bound to it through their RuntimeClass's handler
(kubeclass/node/pods.py). Talks to the cluster only through the API, as kubelet does."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field

from ..client import ApiError, Client, now_micro, now_rfc3339, path_for
from ..httpclient import TransportError
from . import handlers as handlers_mod
from . import nodestatus, podnet

log = logging.getLogger("kubeclass.node")

LEASE_DURATION = 40     # kubelet's nodeLeaseDurationSeconds
LEASE_RENEW = 10        # a quarter of it, as kubelet


def default_node_name() -> str:
    return socket.gethostname().split(".")[0].lower() or "localhost"


@dataclass
class AgentOptions:
    name: str = field(default_factory=default_node_name)
    data_dir: str = "/var/lib/kubeclass/node"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)
    runtime_config: str | None = None
    address: str = "127.0.0.1"
    port: int = 10250
    status_report: float = 300.0   # kubelet's nodeStatusReportFrequency
    lease_renew: float = LEASE_RENEW
    vm_pool: int = 0               # booted idle VMs kept per VM handler
    vm_pool_memory: int = 512      # MiB
    vm_kernel: str | None = None
    vm_initrd: str | None = None
    vm_templates: bool = True      # start VMs from saved states of freshly booted ones (vm/template.py)
    network: podnet.Options = field(default_factory=podnet.Options)   # Pod networking through CNI
    service_proxy: bool = True   # ClusterIP / NodePort traffic through nftables (serviceproxy.py)
    cluster_dns: bool = True     # the kube-dns Service's address served on the node (dnsserver.py)


class Agent:
    def __init__(self, client: Client, opts: AgentOptions, table: handlers_mod.HandlerTable | None = None):
        self.client = client
        self.opts = opts
        self.table = table if table is not None else handlers_mod.load(opts.runtime_config)
        self.facts = nodestatus.host_facts(opts.data_dir)
        self.node_uid = ""
        self._transitions: dict[str, str] = {}
        self._last_status: dict | None = None
        self.registered = asyncio.Event()
        self.pods = None   # the PodManager, once the runtime part is started

    @property
    def runtime_version(self) -> str:
        from .. import __version__
        return f"kubeclass://{__version__}"

    # ---------------------------------------------------------------- registration
    async def register(self) -> dict:
        """Create the Node, or (after a restart) take the existing one over: labels and taints given on the
        command line are applied to it, status replaced."""
        now = now_rfc3339()
        node = nodestatus.node_object(self.opts.name, self.facts, self.table, self.opts.labels, self.opts.taints,
                                      self.opts.address, self.opts.port, self.runtime_version, now)
        if self.opts.network.enabled:
            cidr = podnet.PodNetworks(self.opts.network, self.opts.data_dir).pod_cidr
            node["spec"]["podCIDR"], node["spec"]["podCIDRs"] = cidr, [cidr]
        path = path_for("", "v1", "nodes")
        try:
            created = await self.client.create(path, node)
            log.info("registered node %s", self.opts.name)
            self.node_uid = created["metadata"]["uid"]
        except ApiError as e:
            if e.status != 409:
                raise
            existing = await self.client.get(path_for("", "v1", "nodes", None, self.opts.name))
            self.node_uid = existing["metadata"]["uid"]
            patch: dict = {"metadata": {"labels": node["metadata"]["labels"], "annotations": {
                nodestatus.UNAVAILABLE_ANNOTATION: node["metadata"]["annotations"][nodestatus.UNAVAILABLE_ANNOTATION]}}}
            if node["spec"].get("podCIDR") and not (existing.get("spec") or {}).get("podCIDR"):
                patch["spec"] = {"podCIDR": node["spec"]["podCIDR"], "podCIDRs": node["spec"]["podCIDRs"]}
            if self.opts.taints:
                have = {(t.get("key"), t.get("effect")) for t in (existing.get("spec") or {}).get("taints") or []}
                extra = [t for t in self.opts.taints if (t["key"], t["effect"]) not in have]
                if extra:
                    patch.setdefault("spec", {})["taints"] = ((existing.get("spec") or {}).get("taints") or []) + extra
            await self.client.patch(path_for("", "v1", "nodes", None, self.opts.name), patch, kind="merge")
            log.info("node %s already registered: taken over", self.opts.name)
        for c in node["status"]["conditions"]:
            self._transitions[c["type"]] = c["lastTransitionTime"]
        await self.post_status(force=True)
        self.registered.set()
        return node

    def current_status(self) -> dict:
        return nodestatus.status(self.opts.name, self.facts, self.table, self.opts.address, self.opts.port,
                                 self.runtime_version, now_rfc3339(), transitions=self._transitions)

    async def post_status(self, force: bool = False) -> None:
        st = self.current_status()
        comparable = {k: v for k, v in st.items() if k != "conditions"}
        if not force and comparable == self._last_status:
            return
        await self.client.patch(path_for("", "v1", "nodes", None, self.opts.name, "status"), {"status": st}, kind="merge")
        self._last_status = comparable

    # ---------------------------------------------------------------- heartbeats
    async def renew_lease(self) -> None:
        path = path_for("coordination.k8s.io", "v1", "leases", "kube-node-lease", self.opts.name)
        spec = {"holderIdentity": self.opts.name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now_micro()}
        try:
            lease = await self.client.get(path)
        except ApiError as e:
            if e.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.opts.name, "namespace": "kube-node-lease",
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.opts.name,
                                                      "uid": self.node_uid}]},
                    "spec": spec}
            await self.client.create(path_for("coordination.k8s.io", "v1", "leases", "kube-node-lease"), body)
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        await self.client.update(path, lease)

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self.renew_lease()
            except (ApiError, TransportError) as e:
                log.warning("node %s: lease renewal failed: %s", self.opts.name, e)
            await asyncio.sleep(self.opts.lease_renew)

    async def _status_loop(self) -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(self.opts.lease_renew)
            waited += self.opts.lease_renew
            try:
                await self.post_status(force=waited >= self.opts.status_report)
                if waited >= self.opts.status_report:
                    waited = 0.0
            except (ApiError, TransportError) as e:
                log.warning("node %s: status update failed: %s", self.opts.name, e)

    async def run(self) -> None:
        os.makedirs(self.opts.data_dir, exist_ok=True)
        while True:
            try:
                await self.register()
                break
            except (ApiError, TransportError) as e:
                log.warning("node %s: registration failed, retrying: %s", self.opts.name, e)
                await asyncio.sleep(2)
        from .logserver import LogServer
        from .pods import PodManager
        self.pods = PodManager(self.client, self.opts.name, self.table, self.opts.data_dir, self.opts.address)
        if self.opts.network.enabled:
            self.pods.network = podnet.PodNetworks(self.opts.network, self.opts.data_dir)
            released = await asyncio.to_thread(self.pods.network.release_leaked)
            if released:
                log.info("node %s: released %d Pod address(es) left by Pods that are gone", self.opts.name, released)
        api_proxy = None
        if self.opts.network.enabled and self.opts.network.service_cidr:
            from .apiproxy import APIProxy, service_ip
            api_proxy = APIProxy(service_ip(self.opts.network.service_cidr), 443, self.client.config.server)
            try:
                await api_proxy.start()
                self.pods.kubernetes_service = f"https://{api_proxy.ip}:443"
            except OSError as e:
                log.warning("node %s: the kubernetes service address is not served (%s); Pods are given the API "
                            "server's own address", self.opts.name, e)
                api_proxy = None
        proxy = dns = watch = None
        if self.opts.network.enabled and (self.opts.service_proxy or self.opts.cluster_dns):
            from .servicewatch import ServiceWatch
            watch = ServiceWatch(self.client)
        skip = {"default/kubernetes"} if api_proxy is not None else set()
        if watch is not None and self.opts.cluster_dns and self.opts.network.service_cidr:
            from ..api.clusterdns import dns_service_ip
            from .dnsserver import DNSServer
            dns = DNSServer(watch, dns_service_ip(self.opts.network.service_cidr))
            try:
                await dns.start()
                self.pods.dns_ip = dns.ip
                skip.add("kube-system/kube-dns")
            except OSError as e:
                log.warning("node %s: cluster DNS is not served (%s); Pods use the node's resolvers", self.opts.name, e)
                dns = None
        if watch is not None and self.opts.service_proxy:
            import shutil
            from .serviceproxy import ServiceProxy
            if shutil.which("nft"):
                proxy = ServiceProxy(watch, self.opts.name, self.opts.data_dir, skip=skip)
            else:
                log.warning("node %s: nft is not installed (apt-get install nftables): Services are not proxied", self.opts.name)
        self.pods.vm_kernel, self.pods.vm_initrd = self.opts.vm_kernel, self.opts.vm_initrd
        vm_handlers = [h for h in self.table.available() if h.flavor == "vm"]
        if vm_handlers and self.opts.vm_templates:
            from .vm.template import Templates
            self.pods.vm_templates = Templates(os.path.join(self.opts.data_dir, "vm-templates"))
        pool = None
        if self.opts.vm_pool > 0 and vm_handlers:
            from .vm.pool import VmPool
            pool = self.pods.vm_pool = VmPool(self.opts.data_dir, vm_handlers, self.opts.vm_pool, self.pods.guest,
                                              self.opts.vm_pool_memory, templates=self.pods.vm_templates)
        logs = LogServer(self.pods, self.client.config.ca_data, os.path.join(self.opts.data_dir, "pki"), self.opts.name,
                         self.opts.address, self.opts.port)
        from .metrics import NodeMetrics
        from .overhead import OverheadReporter
        from .podstats import Stats
        logs.stats = Stats(self.pods, self.opts.name)
        self.pods.metrics = logs.metrics = NodeMetrics(self.pods)
        await logs.start()
        tasks = [asyncio.ensure_future(self._lease_loop()), asyncio.ensure_future(self._status_loop()),
                 asyncio.ensure_future(self.pods.run()),
                 asyncio.ensure_future(OverheadReporter(logs.stats, self.pods, self.client, self.opts.name).run())]
        pool_task = asyncio.ensure_future(pool.run()) if pool is not None else None
        if pool_task is not None:
            tasks.append(pool_task)
        if watch is not None:
            tasks.append(asyncio.ensure_future(watch.run()))
        if proxy is not None:
            tasks.append(asyncio.ensure_future(proxy.run()))
            from .loopbacklb import LoopbackBalancer, is_loopback
            if is_loopback(self.opts.address):   # LoadBalancer ports on the node's loopback address
                tasks.append(asyncio.ensure_future(LoopbackBalancer(watch, self.opts.address).run()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await logs.stop()
            if api_proxy is not None:
                await api_proxy.stop()
            if proxy is not None:
                proxy.stop()   # no rules outlive the agent (also when its task was cancelled before its cleanup)
            if dns is not None:
                await dns.stop()
            if pool is not None and pool_task is not None:
                await asyncio.gather(pool_task, return_exceptions=True)   # a pool VM mid-boot is powered off
                await asyncio.shield(pool.close())
            if self.pods.vm_templates is not None:
                await asyncio.shield(self.pods.vm_templates.close())
