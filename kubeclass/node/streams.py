"""The agent's streaming endpoint /exec/{namespace}/{pod}/{container} (kubelet's), over WebSocket with the
remote command protocol (kubeclass.api.remotecommand): the API server relays kubectl's and the clients'
WebSocket here message for message. Query as kubelet's: command (repeated), input, output, error, tty.

The process is started through the Pod's sandbox (sandbox.PodSandbox.exec_session), so each kind of Pod
execs the way its runtime does: runc / crun exec in the Pod's namespaces, runsc exec under its gVisor kernel."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from ..api import remotecommand as rc
from .execsession import ExecError
from .runtimes import RuntimeError_

log = logging.getLogger("kubeclass.node")


def _flag(q, name: str) -> bool:
    return q.get(name, "").lower() in ("1", "true")


def _find_container(server, request: web.Request):
    """(worker, container) the path names, or the error reply."""
    ns, pod_name, cname = request.match_info["namespace"], request.match_info["pod"], request.match_info["container"]
    worker = server.find_worker(ns, pod_name)
    if worker is None:
        return None, server.error(404, f'pod "{pod_name}" in namespace "{ns}" is not running on node {server.node_name}')
    c = worker.find_container(cname)
    if c is None:
        return None, server.error(404, f'container not found ("{cname}")')
    return worker, c


def _running_workdir(worker, c) -> str | None:
    """The container's run directory when it is running, else None."""
    workdir = c.workdir(worker.dir) if c.attempt >= 0 else ""
    if not c.cid or worker.sandbox is None or worker.state(workdir)["state"] != "running":
        return None
    return workdir


async def exec_handler(server, request: web.Request) -> web.StreamResponse:
    q = request.query
    cmd = q.getall("command", [])
    tty, stdin, stdout, stderr = _flag(q, "tty"), _flag(q, "input"), _flag(q, "output"), _flag(q, "error")
    if not cmd:
        return server.error(400, "you must specify at least 1 command")
    if not (stdin or stdout or stderr):
        return server.error(400, "you must specify at least 1 of stdin, stdout, stderr")
    worker, c = _find_container(server, request)
    if worker is None:
        return c
    ws = web.WebSocketResponse(protocols=rc.PROTOCOLS, autoping=True, max_msg_size=4 << 20)
    if not ws.can_prepare(request).ok:
        return server.error(400, "Upgrade request required")
    workdir = _running_workdir(worker, c)
    if workdir is None:
        return server.error(500, f"error executing command in container: container {c.name} is not running")
    try:
        session = await worker.sandbox.exec_session(c.cid, workdir, cmd, tty, stdin)
    except (ExecError, RuntimeError_) as e:
        return server.error(500, f"error executing command in container: {e}")
    try:
        await ws.prepare(request)
    except Exception:
        session.close()
        raise
    protocol = ws.ws_protocol or rc.V1
    try:
        await relay(ws, session, protocol, cmd, tty, stdout, stderr)
    finally:
        session.close()
        await ws.close()
    return ws


async def relay(ws: web.WebSocketResponse, session, protocol: str, cmd: list[str], tty: bool, stdout: bool,
                stderr: bool) -> None:
    """Stream one session until its process ends (then its exit code on the error channel) or the client goes."""

    exited = asyncio.Event()

    async def pump(reader: asyncio.StreamReader | None, channel: int, wanted: bool) -> None:
        if reader is None:
            return
        while True:
            if exited.is_set():
                # a child the command left in the background may hold the stream open: what is already there
                # is sent, then the session ends
                try:
                    data = await asyncio.wait_for(reader.read(32 * 1024), 0.5)
                except asyncio.TimeoutError:
                    return
            else:
                data = await reader.read(32 * 1024)
            if not data:
                return
            if wanted:
                await ws.send_bytes(bytes([channel]) + data)

    async def from_client() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:      # the Python client sends str data as text messages
                raw = msg.data.encode("utf-8", "surrogateescape")
            elif msg.type == WSMsgType.BINARY:
                raw = msg.data
            else:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
                continue
            if not raw:
                continue
            ch, data = raw[0], raw[1:]
            if ch == rc.STDIN:
                await session.write_stdin(data)
            elif ch == rc.RESIZE and protocol not in (rc.V1, rc.V2):
                size = rc.parse_resize(data)
                if size:
                    session.resize(*size)
            elif ch == rc.CLOSE and protocol == rc.V5 and data[:1] == bytes([rc.STDIN]):
                session.close_stdin()
        session.kill()          # the client went: so does its process

    loop = asyncio.get_running_loop()
    client = loop.create_task(from_client())
    pumps = asyncio.gather(pump(session.stdout, rc.STDOUT, stdout or tty), pump(session.stderr, rc.STDERR, stderr))
    try:
        code = await session.wait()
        exited.set()
        await pumps
        if not client.done():
            frame = rc.error_frame(protocol, code, cmd)
            if frame is not None:
                await ws.send_bytes(frame)
    except (ConnectionError, RuntimeError) as e:   # the client's connection ended under a write
        log.debug("exec stream ended: %s", e)
    finally:
        client.cancel()
        pumps.cancel()


async def attach_handler(server, request: web.Request) -> web.StreamResponse:
    """/attach/{namespace}/{pod}/{container}: the container's own stdio (conmon's attach socket), kubelet's
    query (input, output, error, tty)."""
    q = request.query
    stdin, stdout, stderr = _flag(q, "input"), _flag(q, "output"), _flag(q, "error")
    if not (stdin or stdout or stderr):
        return server.error(400, "you must specify at least 1 of stdin, stdout, stderr")
    worker, c = _find_container(server, request)
    if worker is None:
        return c
    ws = web.WebSocketResponse(protocols=rc.PROTOCOLS, autoping=True, max_msg_size=4 << 20)
    if not ws.can_prepare(request).ok:
        return server.error(400, "Upgrade request required")
    workdir = _running_workdir(worker, c)
    if workdir is None:
        return server.error(500, f"unable to upgrade connection: container {c.name} is not running")
    try:
        session = await worker.sandbox.attach_session(c.cid, workdir)
    except RuntimeError_ as e:
        return server.error(500, f"unable to upgrade connection: {e}")
    try:
        await ws.prepare(request)
        protocol = ws.ws_protocol or rc.V1
        session.tty = bool(c.spec.get("tty"))
        await relay_attach(ws, session, protocol, stdin and bool(c.spec.get("stdin")), stdout or session.tty, stderr)
    finally:
        session.close()
        await ws.close()
    return ws


async def relay_attach(ws: web.WebSocketResponse, session, protocol: str, stdin: bool, stdout: bool, stderr: bool) -> None:
    async def from_client() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                raw = msg.data.encode("utf-8", "surrogateescape")
            elif msg.type == WSMsgType.BINARY:
                raw = msg.data
            else:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
                continue
            if not raw:
                continue
            ch, data = raw[0], raw[1:]
            if ch == rc.STDIN and stdin:
                await session.write_stdin(data)
            elif ch == rc.RESIZE and session.tty and protocol not in (rc.V1, rc.V2):
                size = rc.parse_resize(data)
                if size:
                    session.resize(*size)
            elif ch == rc.CLOSE and protocol == rc.V5 and data[:1] == bytes([rc.STDIN]):
                session.close_stdin()

    client = asyncio.get_running_loop().create_task(from_client())
    try:
        while True:
            get = asyncio.ensure_future(session.stdout.get())
            done, _ = await asyncio.wait({get, client}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:          # the client went; the container goes on
                get.cancel()
                return
            stream, data = get.result()
            if stream is None:           # the container ended (conmon closed the socket)
                break
            if (stream == "stdout" and stdout) or (stream == "stderr" and stderr):
                await ws.send_bytes(bytes([rc.STDOUT if stream == "stdout" else rc.STDERR]) + data)
        frame = rc.error_frame(protocol, 0, [])
        if frame is not None:
            await ws.send_bytes(frame)
    except (ConnectionError, RuntimeError) as e:
        log.debug("attach stream ended: %s", e)
    finally:
        client.cancel()
