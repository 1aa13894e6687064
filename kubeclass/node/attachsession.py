"""Attaching to a running container's own stdio, held by conmon (CRI-O's container monitor): its attach socket
(SOCK_SEQPACKET, `<socket dir>/<container id>/attach`) carries each chunk of the container's output with one
leading byte naming the stream (2 stdout, 3 stderr), and takes what is written to it as the container's stdin
(when conmon was started with --stdin, for a container with `stdin: true`). What CRI's Attach gives kubelet.
Output written before the attach is not repeated (it is in `kubectl logs`)."""
from __future__ import annotations

import asyncio
import os
import socket

from .runtimes import RuntimeError_, container_state

STDOUT_PIPE, STDERR_PIPE = 2, 3


class AttachSession:
    def __init__(self, sock: socket.socket, workdir: str) -> None:
        self.sock = sock
        self.workdir = workdir
        self.tty = False
        self.stdout: asyncio.Queue = asyncio.Queue()   # (stream, bytes); (None, b"") at the end
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self._closed = False

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end()
            return
        kind = data[0]
        if kind in (STDOUT_PIPE, STDERR_PIPE) and len(data) > 1:
            self.stdout.put_nowait(("stdout" if kind == STDOUT_PIPE else "stderr", data[1:]))

    def _end(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._loop.remove_reader(self.sock.fileno())
            except (ValueError, OSError):
                pass
            self.stdout.put_nowait((None, b""))

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                n = self.sock.send(view[:8192])     # one seqpacket per write; conmon reads 8 KiB at a time
                view = view[n:]
            except BlockingIOError:
                await asyncio.sleep(0.005)
            except OSError:
                return

    def close_stdin(self) -> None:
        """The client's stdin ended: conmon closes the container's stdin when this attach goes (stdinOnce)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    RESIZE_SETTLE = 0.05   # seconds

    def resize(self, width: int, height: int) -> None:
        """A terminal's new size. kubectl attach sends two at once (one row and column more, then the real size, to
        make the screen redraw); under load conmon was seen to keep the first of two back-to-back resizes, so the
        sizes are coalesced: the last one asked for within 50 ms is applied."""
        self._wanted = (width, height)
        timer = getattr(self, "_resize_timer", None)
        if timer is not None:
            timer.cancel()
        try:
            self._resize_timer = asyncio.get_running_loop().call_later(self.RESIZE_SETTLE, self._apply_resize)
        except RuntimeError:   # no loop (a synchronous caller): at once
            self._apply_resize()

    def _apply_resize(self) -> None:
        """Through conmon's control fifo (`1 <height> <width>`: a resize event, as CRI-O writes it; conmon passes it
        on to its own window-size fifo)."""
        self._resize_timer = None
        width, height = self._wanted
        try:
            fd = os.open(os.path.join(self.workdir, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def exited(self) -> bool:
        return container_state(self.workdir)["state"] == "exited"

    def close(self) -> None:
        self._end()
        self.sock.close()


async def connect(path: str, workdir: str) -> AttachSession:
    if not os.path.exists(path):
        raise RuntimeError_(f"the container's attach socket is missing ({path})")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    # through a descriptor of its directory: the full path may exceed the 108 bytes a socket address holds
    dfd = os.open(os.path.dirname(path), os.O_PATH)
    try:
        await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    except OSError as e:
        sock.close()
        raise RuntimeError_(f"connecting to the container's attach socket: {e}") from e
    finally:
        os.close(dfd)
    return AttachSession(sock, workdir)
