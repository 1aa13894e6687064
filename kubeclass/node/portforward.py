"""The agent's /portForward/{namespace}/{pod} endpoint (kubelet's), over WebSocket, relayed by the API server:

- `SPDY/3.1+portforward.k8s.io` (kubectl 1.31+): the WebSocket carries an SPDY session (api/spdy.py) in which
  the client opens, per forwarded connection, an error stream and a data stream (headers streamtype, port,
  requestid); the data stream is the TCP connection's bytes both ways, the error stream carries what went
  wrong (kubectl prints it as `an error occurred forwarding L -> R: ...`) and ends when the connection does;
- `v4.channel.k8s.io` (the official clients' portforward()): one connection per requested port (the `port`
  query), channel 2i its data and 2i+1 its errors, each channel's first message the port (2 bytes, little
  endian).

Where the connection goes, as each runtime's port-forward does: into the Pod's network namespace to
localhost:PORT for runc-like Pods (containerd enters the netns the same way); to the Pod's IP for gVisor and
VM Pods (their ports are served by gVisor's netstack or the guest's kernel behind the Pod's interface, not by
the namespace's kernel stack); to the node's localhost for hostNetwork Pods."""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import struct

from aiohttp import WSMsgType, web

from ..api import spdy

log = logging.getLogger("kubeclass.node")
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
WS_V4 = "v4.channel.k8s.io"
PROTOCOLS = (SPDY_TUNNEL, WS_V4)
READ_CHUNK = 256 * 1024   # one read from the Pod, one message: fewer, larger messages through the two relays
MAX_CONNECTIONS = 256     # forwarded connections open at once in one session (more are refused: RST_STREAM)
INBOUND_FRAMES = 64       # data frames from the client held for a Pod connection before the session stops reading
BUFFER = 1 << 20          # what a Pod connection's reader may hold before the Pod is paused
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _connect_in_netns(netns: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to localhost:port made from inside netns (this thread enters it and comes back)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"entering the Pod's network namespace: {os.strerror(e)}")
        try:
            errors = []
            for family, host, label in ((socket.AF_INET, "127.0.0.1", "IPv4: dial tcp4 127.0.0.1"),
                                        (socket.AF_INET6, "::1", "IPv6 dial tcp6 [::1]")):
                s = socket.socket(family, socket.SOCK_STREAM)
                s.settimeout(timeout)
                try:
                    s.connect((host, port))
                    s.setblocking(False)
                    return s
                except OSError as e:
                    s.close()
                    errors.append(f"{label}:{port}: connect: {(e.strerror or str(e)).lower()}")
            raise OSError(f'failed to connect to localhost:{port} inside namespace "{netns}", ' + " ".join(errors))
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:   # never leave a pool thread in the Pod's namespace
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)


class Target:
    """Where one Pod's forwarded ports are dialled."""

    def __init__(self, worker) -> None:
        self.worker = worker
        spec = worker.pod.get("spec") or {}
        self.host_network = bool(spec.get("hostNetwork"))
        self.flavor = worker.handler.flavor if worker.handler is not None else ""

    def check(self) -> str:
        """Why nothing can be forwarded ("" when it can)."""
        if self.host_network:
            return ""
        if self.worker.net is None:
            return "the Pod has no network namespace of its own (the node runs without Pod networking)"
        return ""

    async def dial(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.host_network:
            return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, limit=BUFFER), 10)
        net = self.worker.net
        if self.flavor in ("runsc", "vm"):   # the Pod's own network stack (gVisor's netstack, the guest's kernel)
            if not net.ips:
                raise OSError("the Pod has no IP")
            return await asyncio.wait_for(asyncio.open_connection(net.ips[0], port, limit=BUFFER), 10)
        sock = await asyncio.to_thread(_connect_in_netns, net.netns, port, 10)
        return await asyncio.open_connection(sock=sock, limit=BUFFER)


def _ports(values: list[str]) -> list[int]:
    out = []
    for v in values:
        for p in v.split(","):
            p = p.strip()
            if not p:
                continue
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise ValueError(f"invalid port: {p!r}")
            out.append(int(p))
    return out


async def handler(server, request: web.Request) -> web.StreamResponse:
    ns, pod_name = request.match_info["namespace"], request.match_info["pod"]
    worker = server.find_worker(ns, pod_name)
    if worker is None:
        return server.error(404, f'pod "{pod_name}" in namespace "{ns}" is not running on node {server.node_name}')
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=4 << 20)
    if not ws.can_prepare(request).ok:
        return server.error(400, "Upgrade request required")
    target = Target(worker)
    why = target.check()
    if why:
        return server.error(500, why)
    try:
        ports = _ports(request.query.getall("port", []))
    except ValueError as e:
        return server.error(400, str(e))
    await ws.prepare(request)
    uid = worker.uid
    try:
        if ws.ws_protocol == SPDY_TUNNEL:
            await SpdyForwarder(ws, target, uid).run()
        else:
            await channels(ws, target, ports, uid)
    finally:
        await ws.close()
    return ws


class SpdyForwarder:
    """One kubectl port-forward session: SPDY streams inside the WebSocket, a TCP connection per stream pair."""

    def __init__(self, ws: web.WebSocketResponse, target: Target, uid: str) -> None:
        self.ws, self.target, self.uid = ws, target, uid
        self.codec = spdy.Session()
        self.lock = asyncio.Lock()
        self.pending: dict[str, dict[str, tuple[int, int]]] = {}   # requestid -> streamtype -> (stream id, port)
        self.inbound: dict[int, asyncio.Queue] = {}                  # data stream -> bytes from the client (None: its FIN)
        self.tasks: set[asyncio.Task] = set()

    async def send(self, data: bytes) -> None:
        async with self.lock:
            await self.ws.send_bytes(data)

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                        break
                    continue
                try:
                    frames = self.codec.feed(msg.data)
                except spdy.ProtocolError as e:
                    log.info("port-forward to %s: %s", self.uid, e)
                    await self.send(self.codec.goaway(0, 1))
                    break
                for f in frames:
                    if not await self.on_frame(f):
                        return
        finally:
            for t in self.tasks:
                t.cancel()

    async def on_frame(self, f: spdy.Frame) -> bool:
        if f.type == spdy.SYN_STREAM:
            kind, rid = f.headers.get("streamtype", ""), f.headers.get("requestid", "")
            if kind not in ("data", "error") or len(self.tasks) >= MAX_CONNECTIONS or len(self.pending) >= MAX_CONNECTIONS:
                await self.send(self.codec.rst_stream(f.stream_id, spdy.RST_REFUSED_STREAM))
                return True
            async with self.lock:    # replies leave in the order their header blocks were compressed
                await self.ws.send_bytes(self.codec.syn_reply(f.stream_id))
            try:
                port = int(f.headers.get("port", ""))
            except ValueError:
                port = 0
            if kind == "data":
                self.inbound[f.stream_id] = asyncio.Queue(INBOUND_FRAMES)
            pair = self.pending.setdefault(rid, {})
            pair[kind] = (f.stream_id, port)
            if "data" in pair and "error" in pair:
                del self.pending[rid]
                t = asyncio.get_running_loop().create_task(self.forward(pair["error"][0], pair["data"][0], pair["data"][1]))
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)
        elif f.type == 0:
            q = self.inbound.get(f.stream_id)
            if q is not None:
                # a full queue stops this session's reading (the client's TCP window closes), as spdystream's
                # blocking stream writes do
                if f.data:
                    await q.put(f.data)
                if f.fin:
                    await q.put(None)
        elif f.type == spdy.RST_STREAM:
            q = self.inbound.get(f.stream_id)
            if q is not None:
                await q.put(None)
        elif f.type == spdy.PING:
            await self.send(self.codec.ping(f.value))
        elif f.type == spdy.GOAWAY:
            return False
        return True

    async def forward(self, err_sid: int, data_sid: int, port: int) -> None:
        q = self.inbound[data_sid]
        try:
            try:
                if not 0 < port < 65536:
                    raise OSError(f"invalid port {port}")
                reader, writer = await self.target.dial(port)
            except (OSError, asyncio.TimeoutError) as e:
                msg = f"error forwarding port {port} to pod {self.uid}, uid : {e or 'timed out'}"
                await self.send(self.codec.data(err_sid, msg.encode(), fin=True) + self.codec.data(data_sid, b"", fin=True))
                return

            async def to_pod() -> None:
                while True:
                    chunk = await q.get()
                    if chunk is None:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(chunk)
                    await writer.drain()

            up = asyncio.get_running_loop().create_task(to_pod())
            try:
                while True:
                    chunk = await reader.read(READ_CHUNK)
                    if not chunk:
                        break
                    await self.send(self.codec.data(data_sid, chunk))
                await self.send(self.codec.data(data_sid, b"", fin=True) + self.codec.data(err_sid, b"", fin=True))
                await asyncio.wait_for(up, 5)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                pass
            finally:
                up.cancel()
                writer.close()
        finally:
            self.inbound.pop(data_sid, None)
            while not q.empty():         # a reader blocked on this full queue goes on (later frames are dropped)
                q.get_nowait()


async def channels(ws: web.WebSocketResponse, target: Target, ports: list[int], uid: str) -> None:
    """kubelet's WebSocket port-forward: each requested port one connection, data on channel 2i, errors on 2i+1."""
    if not ports:
        await ws.send_bytes(b"\x01" + b"query parameter \"port\" is required")
        return
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []
    for i, port in enumerate(ports):
        await ws.send_bytes(bytes([2 * i]) + struct.pack("<H", port))
        await ws.send_bytes(bytes([2 * i + 1]) + struct.pack("<H", port))
        try:
            conns.append(await target.dial(port))
        except (OSError, asyncio.TimeoutError) as e:
            conns.append(None)
            await ws.send_bytes(bytes([2 * i + 1]) + f"error forwarding port {port} to pod {uid}, uid : {e}".encode())

    async def from_pod(i: int, reader: asyncio.StreamReader) -> None:
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                return
            await ws.send_bytes(bytes([2 * i]) + chunk)

    async def from_client() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and msg.data:
                ch, data = msg.data[0], msg.data[1:]
                i = ch // 2
                if ch % 2 == 0 and i < len(conns) and conns[i] is not None and data:
                    conns[i][1].write(data)
                    await conns[i][1].drain()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return

    loop = asyncio.get_running_loop()
    pods = [loop.create_task(from_pod(i, c[0])) for i, c in enumerate(conns) if c is not None]
    client = loop.create_task(from_client())
    everything_sent = loop.create_task(asyncio.wait(pods)) if pods else None
    try:
        # the session ends when the client goes or every Pod connection has ended (kubelet closes the
        # WebSocket then, so the client sees its local sockets end)
        await asyncio.wait({client} | ({everything_sent} if everything_sent else set()), return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, OSError):
        pass
    finally:
        for t in [client, *pods] + ([everything_sent] if everything_sent else []):
            t.cancel()
        for c in conns:
            if c is not None:
                c[1].close()
