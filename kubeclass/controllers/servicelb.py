"""LoadBalancer Services without a cloud, as k3s's ServiceLB does: every LoadBalancer Service (no
`spec.loadBalancerClass`) gets the addresses of the Ready nodes that serve Services (real node agents: their
service proxy answers on those addresses, node/serviceproxy.py; simulated nodes serve nothing) in
`status.loadBalancer.ingress` (`ipMode: VIP`), so `kubectl get svc` shows an EXTERNAL-IP and the Service's port
answers there. A node's ExternalIP is preferred to its InternalIP, as k3s does. Events as upstream's service
controller: EnsuringLoadBalancer, then EnsuredLoadBalancer; a Service that stops being a LoadBalancer loses its
ingress (DeletedLoadBalancer)."""
from __future__ import annotations

from ..client import ApiError, Client, path_for
from .informers import Informers, key_of
from .simulated_nodes import is_fake
from .workqueue import WorkQueue, run_workers

COMPONENT = "service-lb-controller"


def node_address(node: dict) -> str | None:
    addrs = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
    return addrs.get("ExternalIP") or addrs.get("InternalIP")


def node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (node.get("status") or {}).get("conditions") or [])


def wanted_ingress(svc: dict, nodes: list[dict]) -> list[dict] | None:
    """The ingress list a Service should have; None when this controller leaves it alone (another class)."""
    spec = svc.get("spec") or {}
    if spec.get("loadBalancerClass"):
        return None
    if spec.get("type") != "LoadBalancer":
        return []
    ips = sorted({a for n in nodes if node_ready(n) and not is_fake(n) and (a := node_address(n))})
    return [{"ip": ip, "ipMode": "VIP"} for ip in ips]


class ServiceLB:
    name = "service-lb"

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.services = informers.get("", "v1", "services")
        self.nodes = informers.get("", "v1", "nodes")
        self.queue = WorkQueue(self.name)
        self.services.add_handlers(self._enqueue, lambda o, n: self._enqueue(n), None)
        self.nodes.add_handlers(lambda n: self._all(), self._node_changed, lambda n: self._all())

    def _enqueue(self, svc: dict) -> None:
        st = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if (svc.get("spec") or {}).get("type") == "LoadBalancer" or st:
            self.queue.add(key_of(svc))

    def _node_changed(self, old: dict, new: dict) -> None:
        if (node_ready(old), node_address(old)) != (node_ready(new), node_address(new)):
            self._all()

    def _all(self) -> None:
        for s in self.services.list():
            self._enqueue(s)

    async def run(self) -> None:
        for inf in (self.services, self.nodes):
            await inf.synced.wait()
        self._all()
        await run_workers(self.queue, self.sync, 1)

    async def sync(self, key: str) -> None:
        svc = self.services.get(None, key)
        if svc is None:
            return
        want = wanted_ingress(svc, self.nodes.list())
        have = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if want is None or want == have:
            return
        ns, name = svc["metadata"].get("namespace"), svc["metadata"]["name"]
        if want:
            await self.client.event(svc, "EnsuringLoadBalancer", "Ensuring load balancer", component=COMPONENT)
        body = {**svc, "status": {**(svc.get("status") or {}), "loadBalancer": {"ingress": want} if want else {}}}
        try:
            await self.client.update(path_for("", "v1", "services", ns, name, "status"), body)
        except ApiError as e:
            if e.status in (404, 409):
                if e.status == 409:
                    self.queue.add_rate_limited(key)
                return
            raise
        if want:
            await self.client.event(svc, "EnsuredLoadBalancer", "Ensured load balancer", component=COMPONENT)
        else:
            await self.client.event(svc, "DeletedLoadBalancer", "Deleted load balancer", component=COMPONENT)
