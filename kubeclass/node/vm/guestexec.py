"""An exec session in a VM Pod's container, through the guest agent (guest/execs.c): the same interface as a runtime's
exec session (kubeclass/node/execsession.py), so `kubectl exec`, `kubectl cp` and exec probes reach a VM Pod as
they reach a runc or gVisor one. The command's output arrives hex-encoded on the agent's line protocol and is fed
to StreamReaders; input, end of input, resizes and signals go back the same way."""
from __future__ import annotations

import asyncio
import signal

from .machine import AgentConnection, VmError

CHUNK = 8192   # bytes of input per message (16 KiB of hex)


class GuestExecSession:
    def __init__(self, conn: AgentConnection, queue: asyncio.Queue, tty: bool):
        self.conn = conn
        self.rid: str = queue.rid   # type: ignore[attr-defined]
        self.tty = tty
        self.stdout = asyncio.StreamReader(limit=1 << 20)
        self.stderr: asyncio.StreamReader | None = None if tty else asyncio.StreamReader(limit=1 << 20)
        self._queue = queue
        self._exit: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pump = asyncio.ensure_future(self._read())
        self._stdin_closed = False

    @classmethod
    async def start(cls, conn: AgentConnection, cid: str, cmd: list[str], tty: bool, stdin: bool) -> GuestExecSession:
        if any("\0" in a for a in cmd):
            raise VmError("a command argument cannot hold a NUL byte")
        q: asyncio.Queue = asyncio.Queue()
        argv = "\0".join(cmd).encode().hex()
        await conn.call("exec", cid, "1" if tty else "0", "1" if stdin else "0", argv, timeout=15, stream=q)
        return cls(conn, q, tty)

    async def _read(self) -> None:
        code = 137
        try:
            while True:
                msg = await self._queue.get()
                if msg is None:      # the VM went
                    break
                kind = msg[0] if msg else ""
                if kind == "exit":
                    code = int(msg[1])
                    break
                data = bytes.fromhex(msg[1]) if len(msg) > 1 else b""
                if kind == "out":
                    self.stdout.feed_data(data)
                elif kind == "err" and self.stderr is not None:
                    self.stderr.feed_data(data)
        except (ValueError, IndexError):
            pass
        finally:
            self.stdout.feed_eof()
            if self.stderr is not None:
                self.stderr.feed_eof()
            self.conn.end_stream(self.rid)
            if not self._exit.done():
                self._exit.set_result(code)

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin_closed or self._exit.done():
            return
        for i in range(0, len(data), CHUNK):
            self.conn.send("stdin", self.rid, data[i:i + CHUNK].hex())
        if self.conn.writer is not None:
            try:
                await self.conn.writer.drain()
            except ConnectionError:
                self._stdin_closed = True

    def close_stdin(self) -> None:
        if not self._stdin_closed:
            self._stdin_closed = True
            self.conn.send("close", self.rid)

    def resize(self, width: int, height: int) -> None:
        if self.tty and width > 0 and height > 0:
            self.conn.send("resize", self.rid, str(min(height, 65535)), str(min(width, 65535)))

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        """The client went: SIGTERM to the command's process group, SIGKILL 2 s later if it is still there."""
        if self._exit.done():
            return
        self.conn.send("signal", self.rid, str(int(signal.SIGTERM)))
        asyncio.get_running_loop().call_later(
            2, lambda: None if self._exit.done() else self.conn.send("signal", self.rid, str(int(signal.SIGKILL))))

    def close(self) -> None:
        self.kill()


class GuestAttachSession:
    """`kubectl attach` to a VM Pod's container: its output as the guest agent reads it (the agent's `attach` verb),
    its stdin (a container with `stdin: true`) and its terminal (`tty: true`, resized), with the interface of
    attachsession.AttachSession. With stdinOnce the container's stdin closes when the attach's does, as conmon's."""

    def __init__(self, conn: AgentConnection, queue: asyncio.Queue, tty: bool = False, stdin_once: bool = False):
        self.conn = conn
        self.rid: str = queue.rid   # type: ignore[attr-defined]
        self.tty = tty
        self.stdin_once = stdin_once
        self.stdout: asyncio.Queue = asyncio.Queue()   # (stream, bytes); (None, b"") at the end
        self._queue = queue
        self._pump = asyncio.ensure_future(self._read())
        self._ended = False
        self._stdin_closed = False

    @classmethod
    async def start(cls, conn: AgentConnection, cid: str, tty: bool = False, stdin_once: bool = False) -> "GuestAttachSession":
        q: asyncio.Queue = asyncio.Queue()
        await conn.call("attach", cid, timeout=10, stream=q)
        return cls(conn, q, tty, stdin_once)

    async def _read(self) -> None:
        try:
            while True:
                msg = await self._queue.get()
                if msg is None or not msg or msg[0] == "exit":   # the VM or the container ended
                    break
                if msg[0] in ("out", "err") and len(msg) > 1:
                    self.stdout.put_nowait(("stdout" if msg[0] == "out" else "stderr", bytes.fromhex(msg[1])))
        except (ValueError, IndexError):
            pass
        finally:
            self._ended = True
            self.conn.end_stream(self.rid)
            self.stdout.put_nowait((None, b""))

    async def write_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            if self._ended or self._stdin_closed:
                return
            self.conn.send("stdin", self.rid, data[i:i + CHUNK].hex())
            await asyncio.sleep(0)

    def close_stdin(self) -> None:
        if self.stdin_once and not self._stdin_closed and not self._ended:
            self._stdin_closed = True
            self.conn.send("close", self.rid)

    def resize(self, width: int, height: int) -> None:
        if self.tty and not self._ended:
            self.conn.send("resize", self.rid, str(height), str(width))

    def exited(self) -> bool:
        return self._ended

    def close(self) -> None:
        if not self._ended:
            self.close_stdin()
            self.conn.send("detach", self.rid)
        self._pump.cancel()
        self.conn.end_stream(self.rid)
