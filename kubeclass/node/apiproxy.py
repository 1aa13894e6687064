"""The API server as Pods reach it: the `kubernetes` Service's address (the first IP of the Service CIDR,
10.96.0.1:443 by default, what KUBERNETES_SERVICE_HOST / _PORT name in every container, as upstream) made
local on the node (added to `lo`, as kube-proxy's IPVS mode binds Service IPs to a dummy device; this kernel
has no dummy driver) and spliced to the API server by the agent. TLS passes through untouched: the API server's
certificate carries the address (`kubeclass up` adds it), so `load_incluster_config()` verifies it as it would
upstream. From runc Pods and gVisor Pods alike, the packets leave by the Pod's default route to the node.

Until Services and a service proxy exist (issue 18) this is the one Service there is."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import subprocess
from urllib.parse import urlsplit

log = logging.getLogger("kubeclass.node")
CHUNK = 256 * 1024


def add_local_address(ip: str) -> bool:
    """Add ip/32 to lo; True when this call added it (False: it was there, left by an agent that crashed).
    Raises OSError when it cannot be added."""
    r = subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"], capture_output=True, text=True)
    if r.returncode != 0 and "File exists" not in r.stderr and "already assigned" not in r.stderr:
        raise OSError(f"adding {ip} to lo: {r.stderr.strip()}")
    return r.returncode == 0


def remove_local_address(ip: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], capture_output=True)


def service_ip(cidr: str) -> str:
    """The `kubernetes` Service's ClusterIP: the first address of the Service CIDR (kube-apiserver's rule)."""
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + 1)


class APIProxy:
    def __init__(self, ip: str, port: int, api_server_url: str) -> None:
        self.ip, self.port = ip, port
        u = urlsplit(api_server_url)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 443)
        self.server: asyncio.base_events.Server | None = None
        self.added = False

    async def start(self) -> None:
        self.added = await asyncio.to_thread(add_local_address, self.ip)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((self.ip, self.port))
        except OSError:
            s.close()
            if self.added:
                await asyncio.to_thread(subprocess.run, ["ip", "addr", "del", f"{self.ip}/32", "dev", "lo"], capture_output=True)
                self.added = False
            raise
        self.added = True   # ours now, also when a crashed agent left the address behind
        s.listen(128)
        s.setblocking(False)
        self.server = await asyncio.start_server(self._client, sock=s)
        log.info("the kubernetes service: %s:%d -> %s:%d", self.ip, self.port, *self.upstream)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.added:
            await asyncio.to_thread(subprocess.run, ["ip", "addr", "del", f"{self.ip}/32", "dev", "lo"], capture_output=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(CHUNK)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
            except (ConnectionError, OSError):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        finally:
            writer.close()
            up_w.close()
