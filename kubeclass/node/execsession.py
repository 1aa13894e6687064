"""A process started in a running container through its OCI runtime's `exec` (runc, crun, runsc: the same
verb), with its stdio streamed: pipes, or a pseudo-terminal when a tty is asked for, whose window size follows
the client's. What CRI's streaming Exec gives kubelet, for the runtimes this node drives by their CLI.

The process runs as the container's own process does: its config.json's `process` (environment, user,
working directory, capabilities, ...) with the command replaced, handed to `<runtime> exec --process F`.
Under runsc the command runs inside the Pod's gVisor sandbox, under its kernel.

With a tty the runtime's stdio is the slave side of a pseudo-terminal kept in raw mode: the runtime makes the
container's own terminal and copies between the two, and on SIGWINCH copies the window size from its stdin
to the container's, so a resize is TIOCSWINSZ on our side followed by SIGWINCH to the runtime."""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import signal
import struct
import termios
import tty as ttymod


class ExecError(Exception):
    """The process could not be started."""


class ExecSession:
    """One started process. `stdout` (and `stderr` without a tty) are StreamReaders ending at EOF."""

    def __init__(self, proc: asyncio.subprocess.Process, process_file: str, master: int | None = None,
                 stdout: asyncio.StreamReader | None = None, stop_argv: list[str] | None = None) -> None:
        self.proc = proc
        self._stop_argv = stop_argv   # runsc: `kill -pid N CID KILL` once the command's pid inside is known
        self.tty = master is not None
        self._master = master
        self._process_file = process_file
        self.stdout: asyncio.StreamReader = stdout if stdout is not None else proc.stdout   # type: ignore[assignment]
        self.stderr: asyncio.StreamReader | None = None if self.tty else proc.stderr
        self._stdin_closed = False

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin_closed or not data:
            return
        if self.tty:
            assert self._master is not None
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._master, view)
                    view = view[n:]
                except BlockingIOError:
                    await asyncio.sleep(0.005)
                except OSError:      # the process ended
                    self._stdin_closed = True
                    return
            return
        w = self.proc.stdin
        if w is None:
            return
        try:
            w.write(data)
            await w.drain()
        except (ConnectionError, OSError):
            self._stdin_closed = True

    def close_stdin(self) -> None:
        """End of input: EOF on a pipe; with a tty, the terminal's EOF character (^D), as a terminal user sends it."""
        if self._stdin_closed:
            return
        if self.tty:
            try:
                os.write(self._master, b"\x04")    # type: ignore[arg-type]
            except OSError:
                pass
        elif self.proc.stdin is not None:
            self.proc.stdin.close()
        self._stdin_closed = True

    def resize(self, width: int, height: int) -> None:
        if not self.tty or width <= 0 or height <= 0:
            return
        try:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", min(height, 65535), min(width, 65535), 0, 0))
            if self.proc.returncode is None:
                os.kill(self.proc.pid, signal.SIGWINCH)
        except OSError:
            pass

    async def wait(self) -> int:
        code = await self.proc.wait()
        return code if code >= 0 else 128 - code    # killed by a signal: the shell's convention

    def kill(self) -> None:
        """The client went: SIGTERM to the runtime's exec, which passes it on to the command (a SIGKILL would
        leave the command running in the container), then SIGKILL 2 s later if it is still there."""
        if self.proc.returncode is None:
            self._kill_inside()
            try:
                self.proc.terminate()
            except ProcessLookupError:
                return
            asyncio.get_running_loop().call_later(2, self._kill_now)

    def _kill_inside(self) -> None:
        """runsc exec does not pass signals on: the command is killed inside the sandbox by its pid there."""
        if not self._stop_argv:
            return
        pid_file = self._process_file + ".pid"
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        argv = [a.replace("@PID@", str(pid)) for a in self._stop_argv]
        import subprocess
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _kill_now(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.kill()
        if self._master is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._master)
            except (RuntimeError, ValueError):
                pass
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = None
        for f in (self._process_file, self._process_file + ".pid"):
            try:
                os.unlink(f)
            except OSError:
                pass


def process_spec(config: dict, cmd: list[str], tty: bool) -> dict:
    """The container's process with cmd in place of its command (OCI runtime-spec `process`)."""
    proc = dict(config.get("process") or {})
    proc["args"] = list(cmd)
    proc["terminal"] = tty
    proc.pop("consoleSize", None)
    if tty and not any(e.startswith("TERM=") for e in proc.get("env") or []):
        proc["env"] = list(proc.get("env") or []) + ["TERM=xterm"]
    return proc


async def start(runtime_argv: list[str], cid: str, workdir: str, cmd: list[str], tty: bool, stdin: bool,
                flavor: str = "") -> ExecSession:
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ExecError(f"the container's configuration is unreadable: {e}") from e
    path = os.path.join(workdir, f"exec-{secrets.token_hex(6)}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(process_spec(config, cmd, tty), f)
    stop_argv = None
    if flavor == "runsc":
        argv = [*runtime_argv, "exec", "--internal-pid-file", path + ".pid", "--process", path, cid]
        stop_argv = [*runtime_argv, "kill", "--pid", "@PID@", cid, "KILL"]
    else:
        argv = [*runtime_argv, "exec", "--process", path, cid]
    if not tty:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as e:
            os.unlink(path)
            raise ExecError(str(e)) from e
        return ExecSession(proc, path, stop_argv=stop_argv)
    master, slave = os.openpty()
    ttymod.setraw(slave)
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    except OSError as e:
        os.close(master)
        os.close(slave)
        os.unlink(path)
        raise ExecError(str(e)) from e
    os.close(slave)
    os.set_blocking(master, False)
    return ExecSession(proc, path, master, _pty_reader(master), stop_argv=stop_argv)


def _pty_reader(master: int) -> asyncio.StreamReader:
    """A StreamReader over a pty master; the EIO a master reads once every slave is closed is its EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            reader.feed_data(data)
        else:
            loop.remove_reader(master)
            reader.feed_eof()
    loop.add_reader(master, readable)
    return reader
