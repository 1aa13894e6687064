"""The lean pipelined HTTP client against a real local socket: responses pair with requests in order,
a request past its deadline fails (and takes its connection, and the requests waiting on it, down),
and the next request opens a fresh connection."""
from __future__ import annotations

import asyncio
import time

import pytest

from kubeclass.httpclient import HTTPClient, TransportError


async def _server(silent_paths: set[str]):
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1].decode()
                if path in silent_paths:
                    await asyncio.sleep(3600)   # never answer: every later request on this connection waits behind it
                body = path.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def test_pipelined_requests_and_deadlines():
    async def main():
        srv, port = await _server({"/hang"})
        c = HTTPClient(f"http://127.0.0.1:{port}", None, {}, connections=1)
        try:
            got = await asyncio.gather(*(c.request("GET", f"/p{i}") for i in range(50)))
            assert [b for _, _, b in got] == [f"/p{i}".encode() for i in range(50)]   # in order, one connection
            t = time.monotonic()
            hang = asyncio.ensure_future(c.request("GET", "/hang", timeout=0.5))
            await asyncio.sleep(0.05)
            behind = asyncio.ensure_future(c.request("GET", "/after", timeout=30))
            with pytest.raises(TransportError, match=r"GET /hang: no response within 0.5 s"):
                await hang
            assert time.monotonic() - t < 2
            with pytest.raises(TransportError, match="another request on it timed out"):
                await behind
            status, _, body = await c.request("GET", "/again")   # a new connection
            assert (status, body) == (200, b"/again")
        finally:
            await c.close()
            srv.close()
            for t in asyncio.all_tasks() - {asyncio.current_task()}:
                t.cancel()
    asyncio.run(main())
