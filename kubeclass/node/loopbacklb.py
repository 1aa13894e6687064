"""A LoadBalancer Service's port, and every NodePort, on the node's loopback address (`kubeclass up` registers its
node at 127.0.0.1, so that is the node's address and what the ServiceLB controller publishes as the EXTERNAL-IP).

nftables cannot serve it: a connection to 127.0.0.1 DNAT'ed to a Pod leaves with a loopback source, which the
kernel drops unless route_localnet is on (kube-proxy's nftables mode does not serve localhost either; its iptables
mode turns route_localnet on, CVE-2020-8558). So the agent listens on ADDRESS:PORT itself, as k3s's ServiceLB
pods hold the port with a hostPort, and relays each TCP connection to the Service's ClusterIP:port, where the
service proxy balances it over the endpoints. UDP ports are not served on loopback. Non-loopback ingress
addresses are handled by the service proxy's rules (serviceproxy.py)."""
from __future__ import annotations

import asyncio
import ipaddress
import logging

from ..api.services import lb_ingress_ips
from .servicewatch import ServiceWatch

log = logging.getLogger("kubeclass.node")
BUFFER = 1 << 18


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def wanted(services: dict[str, dict], address: str) -> dict[tuple[str, int], tuple[str, int]]:
    """(listen address, port) -> (ClusterIP, port): TCP ports of LoadBalancer Services whose ingress holds this
    node's loopback address, and the TCP NodePorts of every Service (the node's address is where they answer)."""
    out: dict[tuple[str, int], tuple[str, int]] = {}
    if not is_loopback(address):
        return out
    for key in sorted(services):
        svc = services[key]
        spec = svc.get("spec") or {}
        cip = spec.get("clusterIP")
        if spec.get("type") not in ("LoadBalancer", "NodePort") or not cip or cip == "None":
            continue
        ingress = lb_ingress_ips(svc)
        for p in spec.get("ports") or []:
            if p.get("protocol", "TCP") != "TCP" or not p.get("port"):
                continue
            if p.get("nodePort"):
                out.setdefault((address, int(p["nodePort"])), (cip, int(p["port"])))
            if spec.get("type") == "LoadBalancer" and address in ingress:
                out.setdefault((address, int(p["port"])), (cip, int(p["port"])))
    return out


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


class LoopbackBalancer:
    def __init__(self, watch: ServiceWatch, address: str):
        self.watch = watch
        self.address = address
        self.servers: dict[tuple[str, int], tuple[asyncio.AbstractServer, tuple[str, int]]] = {}
        self.failed: set[tuple[str, int]] = set()
        self.wake = asyncio.Event()
        watch.listen(lambda keys: self.wake.set())

    async def _relay(self, target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*target, limit=BUFFER), 10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
        for w in (writer, up_w):
            w.close()

    async def sync(self) -> None:
        want = wanted(self.watch.services, self.address)
        for addr in [a for a in self.servers if a not in want or self.servers[a][1] != want[a]]:
            server, _ = self.servers.pop(addr)
            server.close()
        self.failed &= set(want)
        for addr, target in want.items():
            if addr in self.servers or addr in self.failed:
                continue
            try:
                server = await asyncio.start_server(lambda r, w, t=target: self._relay(t, r, w), addr[0], addr[1],
                                                    reuse_address=True, limit=BUFFER)
            except OSError as e:
                self.failed.add(addr)
                log.warning("LoadBalancer port %s:%d cannot be served on this node: %s", addr[0], addr[1], e.strerror or e)
                continue
            self.servers[addr] = (server, target)
            log.info("LoadBalancer %s:%d -> %s:%d", addr[0], addr[1], *target)

    async def run(self) -> None:
        await self.watch.synced.wait()
        try:
            while True:
                await self.sync()
                await self.wake.wait()
                self.wake.clear()
        finally:
            for server, _ in self.servers.values():
                server.close()
            self.servers.clear()
