"""Cluster DNS on the node: the kube-dns Service's address (the 10th of the service range, 10.96.0.10 by default) is
added to the node's `lo`, and this server answers there on UDP and TCP port 53 — from runc and gVisor Pods, whose
traffic to the address reaches the node through their gateway, and from the node itself. Answers come from the
node's view of Services and EndpointSlices (servicewatch.py) by kubeclass/api/clusterdns.py's rules; names outside
the cluster domain are forwarded to the node's own resolvers (/etc/resolv.conf). Messages are parsed and built with
dnslib."""
from __future__ import annotations

import asyncio
import logging
import struct
import time

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SRV, A, DNSRecord, DNSError   # noqa: F401 - AAAA: no IPv6 records yet

from ..api import clusterdns
from . import apiproxy
from .servicewatch import ServiceWatch

log = logging.getLogger("kubeclass.node")

FORWARD_TIMEOUT = 2.0


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    try:
        with open(path) as f:
            servers, _, _ = clusterdns._parse(f.read())
    except OSError:
        servers = []
    return servers or ["127.0.0.1"]


class _Forward(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future):
        self.fut = fut

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


class DNSServer:
    def __init__(self, watch: ServiceWatch, ip: str, port: int = 53, domain: str = clusterdns.DEFAULT_DOMAIN,
                 upstream: list[str] | None = None):
        self.watch, self.ip, self.port, self.domain = watch, ip, port, domain
        self.upstream = upstream or host_nameservers()
        self.added = False
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.AbstractServer | None = None
        self.queries = 0

    # ---------------------------------------------------------------- answers
    def resolve(self, data: bytes) -> bytes | None:
        """The reply to a query, or None when it is to be forwarded."""
        try:
            q = DNSRecord.parse(data)
        except (DNSError, struct.error, ValueError, IndexError):
            return None
        reply = q.reply()
        if not q.questions:
            reply.header.rcode = RCODE.FORMERR
            return reply.pack()
        question = q.questions[0]
        qname, qtype = str(question.qname), QTYPE.get(question.qtype, str(question.qtype))
        ans = clusterdns.answer(qname, qtype, self.watch.services, self.watch.service_slices, self.domain)
        if ans.rcode == "FORWARD":
            return None
        if ans.rcode == "NXDOMAIN":
            reply.header.rcode = RCODE.NXDOMAIN
        for name, typ, value in ans.records:
            if typ == "A":
                reply.add_answer(RR(name, QTYPE.A, rdata=A(value), ttl=clusterdns.TTL))
            elif typ == "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(value), ttl=clusterdns.TTL))
            elif typ == "SRV":
                prio, weight, port, target = value
                reply.add_answer(RR(name, QTYPE.SRV, rdata=SRV(prio, weight, port, target), ttl=clusterdns.TTL))
        if not ans.records:   # NXDOMAIN or NODATA: the zone's SOA, as CoreDNS answers
            reply.add_auth(RR(self.domain + ".", QTYPE.SOA, ttl=clusterdns.TTL, rdata=_soa(self.domain)))
        return reply.pack()

    async def forward(self, data: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for server in self.upstream:
            fut = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda f=fut: _Forward(f), remote_addr=(server, 53))
            except OSError:
                continue
            try:
                transport.sendto(data)
                return await asyncio.wait_for(fut, FORWARD_TIMEOUT)
            except (asyncio.TimeoutError, OSError):
                continue
            finally:
                transport.close()
        try:   # every resolver failed: SERVFAIL
            q = DNSRecord.parse(data)
            r = q.reply()
            r.header.rcode = RCODE.SERVFAIL
            return r.pack()
        except (DNSError, struct.error, ValueError, IndexError):
            return None

    async def handle(self, data: bytes) -> bytes | None:
        self.queries += 1
        out = self.resolve(data)
        return out if out is not None else await self.forward(data)

    # ---------------------------------------------------------------- sockets
    async def start(self) -> None:
        self.added = await asyncio.to_thread(apiproxy.add_local_address, self.ip)
        loop = asyncio.get_running_loop()
        server = self

        class UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                async def reply():
                    out = await server.handle(data)
                    if out is not None:
                        self.transport.sendto(out, addr)
                loop.create_task(reply())

        self.udp, _ = await loop.create_datagram_endpoint(UDP, local_addr=(self.ip, self.port))
        self.tcp = await asyncio.start_server(self._tcp, self.ip, self.port)
        self.added = True   # ours now, also when a crashed agent left the address behind
        log.info("cluster DNS: %s:%d (domain %s, forwarding to %s)", self.ip, self.port, self.domain, ", ".join(self.upstream))

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 30)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), 30)
                out = await self.handle(data)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
        if self.added:
            await asyncio.to_thread(apiproxy.remove_local_address, self.ip)


def _soa(domain: str):
    from dnslib import SOA
    return SOA(f"ns.dns.{domain}.", f"hostmaster.{domain}.", (int(time.time()), 7200, 1800, 86400, clusterdns.TTL))
