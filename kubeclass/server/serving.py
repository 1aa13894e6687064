"""The API server's HTTPS listener: granian (hyper + rustls, in Rust) embedded in this process's event
loop, serving the ASGI app in `app.py`.

Why granian rather than uvicorn (which served kubeclass until session 5): TLS and HTTP/1.1 parsing and
framing run on granian's Rust thread, off the Python thread that runs the API; bench/scheduler
measured the event-loop thread at 0.85 ms of CPU per scheduled Pod against 1.22 ms under uvicorn, and
SchedulingBasic at 680 pods/s against 630-650.

Two settings matter:
- granian hands each request to Python by taking the GIL from its Rust thread; at Python's default
  5 ms switch interval that thread waits behind the busy event loop, so the interval is 1 ms here
  (SchedulingBasic 600 -> 645 pods/s in the measurement that chose it);
- `backpressure` caps requests in progress at once, and every watch is one for as long as it lasts, so
  the cap is far above any number of watches a cluster opens.
"""
from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.server.embed import Server

SWITCH_INTERVAL = 0.001


class HTTPSServer:
    def __init__(self, app, host: str, port: int, certfile: str, keyfile: str) -> None:
        self._server = Server(app, address=host, port=port, interface=Interfaces.ASGINL, http=HTTPModes.http1,
                              websockets=True, ssl_cert=Path(certfile), ssl_key=Path(keyfile),
                              ssl_protocol_min=SSLProtocols.tls12, log_enabled=False, backlog=1024, backpressure=1_000_000)
        # granian waits for open requests at stop without bound unless told: the API server ends its watches
        # and streams first (end_streams), and a request still open 5 s later is cut
        self._server.workers_kill_timeout = 5
        self._app = app
        self.port = port
        self.started = False
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        """Serve until stop(). Raises OSError when the address is taken (granian binds with SO_REUSEPORT,
        which would let a second server share the port silently)."""
        _check_free(self._server.bind_addr, self.port)
        sys.setswitchinterval(SWITCH_INTERVAL)
        task = asyncio.get_running_loop().create_task(self._server.serve())
        await asyncio.sleep(0)   # binding the socket happens in the task's first step
        while not task.done():
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        if task.done():
            task.result()
            raise RuntimeError("the HTTPS listener stopped while starting")
        self.started = True
        stop = asyncio.get_running_loop().create_task(self._stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            end = getattr(self._app, "end_streams", None)
            if end is not None:
                end()
            self._server.stop()
        try:
            await task
        except TimeoutError:
            pass   # a request that outlived workers_kill_timeout was cancelled


def port_in_use(host: str, port: int) -> str:
    """Why host:port cannot be listened on ("" when it can): checked before anything starts, so that a second
    `kubeclass up` on one machine fails at once rather than half-started."""
    try:
        _check_free(host, port)
    except OSError as e:
        return e.strerror or str(e)
    return ""


def _check_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # our own restart's TIME_WAIT is no conflict
        s.bind((host, port))
