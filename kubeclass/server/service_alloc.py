"""Cluster IPs and node ports for Services (kube-apiserver's service IP and port allocators). Each allocated
address or port is a key in the store (`/registry/kubeclass/serviceips/<ip>`, `.../servicenodeports/<port>`), taken
with the store's create-if-absent, as upstream 1.31+'s IPAddress objects do: concurrent creates — on one API
server or several sharing a store — can never hand out one value twice, and a restart loses nothing. repair() (at
start) takes what every stored Service holds and frees what no Service holds (a crash between a reservation and
the Service's write), as upstream's repair controllers do.

The first address of the range is the `kubernetes` Service's (upstream's convention), so it is never handed out
at random. Messages are upstream's."""
from __future__ import annotations

import ipaddress
import logging
import random

from ..api import errors, services
from ..api.errors import GoRepr, go_quote, invalid
from ..store import KeyExists, KeyNotFound

log = logging.getLogger("kubeclass.server")

IP_PREFIX = "/registry/kubeclass/serviceips/"
PORT_PREFIX = "/registry/kubeclass/servicenodeports/"
NODE_PORTS = (30000, 32767)   # kube-apiserver's --service-node-port-range default


def _owner(svc: dict) -> str:
    md = svc["metadata"]
    return f"{md.get('namespace', '')}/{md['name']}"


class Allocator:
    def __init__(self, store, cidr: str, node_ports: tuple[int, int] = NODE_PORTS):
        self.store = store
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.net)
        self.lo, self.hi = node_ports
        self.first_ip = str(self.net.network_address + 1)   # the kubernetes Service's

    # ---------------------------------------------------------------- reservations
    async def _take(self, key: str, owner: str) -> bool:
        try:
            await self.store.create(key, {"metadata": {"name": key.rsplit("/", 1)[-1]}, "owner": owner})
            return True
        except KeyExists:
            ent = self.store.get(key)
            return ent is not None and ent.obj.get("owner") == owner   # already ours (a retried request, repair)

    async def _drop(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except KeyNotFound:
            pass

    def _taken(self, key: str) -> bool:
        return self.store.get(key) is not None

    # ---------------------------------------------------------------- cluster IPs
    def _in_range(self, ip: str) -> bool:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return a in self.net and a != self.net.network_address and a != self.net.broadcast_address

    @staticmethod
    def _ip_error(svc: dict, ip: str, why: str) -> errors.StatusError:
        return errors.invalid_object("Service", "", svc["metadata"].get("name", ""), [invalid("spec.clusterIPs", GoRepr(f"[]string{{{go_quote(ip)}}}"),
                                                                  f"failed to allocate IP {ip}: {why}")])

    def _family_errors(self, svc: dict) -> list:
        spec = svc.get("spec") or {}
        out = []
        if spec.get("ipFamilyPolicy") == "RequireDualStack" and not services.headless(svc):
            out.append(invalid("spec.ipFamilyPolicy", "RequireDualStack", "this cluster is not configured for dual-stack services"))
        for i, fam in enumerate(spec.get("ipFamilies") or []):
            if fam != "IPv4" or i > 0:
                out.append(invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
        return out

    async def _allocate_ip(self, svc: dict, dry_run: bool) -> str | None:
        spec = svc["spec"]
        owner = _owner(svc)
        want = spec.get("clusterIP")
        if want:
            if not self._in_range(want):
                raise self._ip_error(svc, want, f"the provided IP ({want}) is not in the valid range. The range of valid IPs is {self.cidr}")
            if dry_run:
                if self._taken(IP_PREFIX + want):
                    raise self._ip_error(svc, want, "provided IP is already allocated")
                return None
            if not await self._take(IP_PREFIX + want, owner):
                raise self._ip_error(svc, want, "provided IP is already allocated")
            return want
        size = self.net.num_addresses
        base = int(self.net.network_address)
        for attempt in range(64 + min(size, 4096)):
            if attempt < 64:
                off = random.randrange(2, size - 1) if size > 3 else 1
            else:   # a crowded range: walk it
                off = 2 + (attempt - 64) % max(size - 3, 1)
            ip = str(ipaddress.ip_address(base + off))
            if dry_run:
                if not self._taken(IP_PREFIX + ip):
                    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                    return None
                continue
            if await self._take(IP_PREFIX + ip, owner):
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                return ip
        raise errors.internal("failed to allocate a serviceIP: range is full")

    # ---------------------------------------------------------------- node ports
    @staticmethod
    def _port_error(svc: dict, i: int, port: int, why: str) -> errors.StatusError:
        return errors.invalid_object("Service", "", svc["metadata"].get("name", ""), [invalid(f"spec.ports[{i}].nodePort", port, why)])

    async def _allocate_ports(self, svc: dict, dry_run: bool, taken: list[str]) -> None:
        owner = _owner(svc)
        mine = {p.get("nodePort") for p in svc["spec"].get("ports") or [] if p.get("nodePort")}
        for i, p in enumerate(svc["spec"].get("ports") or []):
            want = p.get("nodePort")
            if want:
                if not self.lo <= want <= self.hi:
                    raise self._port_error(svc, i, want, f"provided port is not in the valid range. The range of valid ports is {self.lo}-{self.hi}")
                key = PORT_PREFIX + str(want)
                if dry_run:
                    if self._taken(key) and self.store.get(key).obj.get("owner") != owner:
                        raise self._port_error(svc, i, want, "provided port is already allocated")
                    continue
                if key in taken:
                    continue
                if not await self._take(key, owner):
                    raise self._port_error(svc, i, want, "provided port is already allocated")
                taken.append(key)
                continue
            span = self.hi - self.lo + 1
            for attempt in range(span + 64):
                port = random.randint(self.lo, self.hi) if attempt < 64 else self.lo + (attempt - 64) % span
                if port in mine:
                    continue
                key = PORT_PREFIX + str(port)
                if dry_run:
                    if self._taken(key):
                        continue
                elif not await self._take(key, owner):
                    continue
                else:
                    taken.append(key)
                p["nodePort"] = port
                mine.add(port)
                break
            else:
                raise errors.internal("failed to allocate a nodePort: range is full")

    # ---------------------------------------------------------------- the REST hooks
    async def before_create(self, svc: dict, dry_run: bool) -> None:
        """Allocate what the Service needs (sets spec.clusterIP(s) and nodePorts); raises with upstream's words."""
        services.init_ip_families(svc)
        errs = self._family_errors(svc)
        if errs:
            raise errors.invalid_object("Service", "", svc["metadata"].get("name", ""), errs)
        taken: list[str] = []
        try:
            if services.uses_cluster_ip(svc):
                ip = await self._allocate_ip(svc, dry_run)
                if ip:
                    taken.append(IP_PREFIX + ip)
            if services.uses_node_ports(svc):
                await self._allocate_ports(svc, dry_run, taken)
        except errors.StatusError:
            for key in taken:
                await self._drop(key)
            raise

    async def undo_create(self, svc: dict) -> None:
        await self.release(svc)

    async def before_update(self, new: dict, old: dict, dry_run: bool) -> None:
        """A type change allocates what the new type needs (a ClusterIP -> NodePort gets node ports; ExternalName
        -> ClusterIP an address); what the old one held and the new one does not is freed after the write."""
        if services.uses_cluster_ip(new) and not services.uses_cluster_ip(old):
            services.init_ip_families(new)
            await self._allocate_ip(new, dry_run)
        if services.uses_node_ports(new):
            await self._allocate_ports(new, dry_run, [])

    async def after_update(self, new: dict, old: dict) -> None:
        held = self._held(old) - self._held(new)
        for key in held:
            await self._drop(key)

    async def release(self, svc: dict) -> None:
        for key in self._held(svc):
            ent = self.store.get(key)
            if ent is not None and ent.obj.get("owner") == _owner(svc):
                await self._drop(key)

    def _held(self, svc: dict) -> set[str]:
        spec = svc.get("spec") or {}
        out = set()
        if services.uses_cluster_ip(svc):
            for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
                if ip and ip != "None":
                    out.add(IP_PREFIX + ip)
        if services.uses_node_ports(svc):
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    out.add(PORT_PREFIX + str(p["nodePort"]))
        return out

    async def repair(self, services_prefix: str) -> None:
        """At start: every stored Service's addresses and ports reserved, reservations nobody holds freed."""
        wanted: dict[str, str] = {}
        for _, ent in self.store.list(services_prefix)[0]:
            for key in self._held(ent.obj):
                wanted[key] = _owner(ent.obj)
        for key, owner in wanted.items():
            ent = self.store.get(key)
            if ent is None:
                await self._take(key, owner)
            elif ent.obj.get("owner") != owner:
                log.warning("service allocation %s is held by %s and claimed by %s; left to %s", key, ent.obj.get("owner"),
                            owner, ent.obj.get("owner"))
        for prefix in (IP_PREFIX, PORT_PREFIX):
            for key, _ in self.store.list(prefix)[0]:
                if key not in wanted:
                    log.info("freeing %s: no Service holds it", key)
                    await self._drop(key)

