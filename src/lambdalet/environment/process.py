"""A bootstrap process tree: spawn, capture its output line by line, notice its exit, end the whole tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import struct
import subprocess
import time
from collections.abc import Callable

MAX_LINE = 256 * 1024  # CloudWatch's event size; longer lines are split
_FRAME_HEADER = struct.Struct(">IIQ")


def exit_reason(returncode: int) -> str:
    """Lambda's wording for how a runtime exited (Go's exec.ExitError text)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name[0].lower()}{name[1:]}"


class _LineReader:
    """Reads a non-blocking pipe and emits complete lines; drain() reads what is there right now."""

    def __init__(self, fd: int, emit: Callable[[str], None]) -> None:
        self.fd = fd
        self.emit = emit
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self.drain)

    def drain(self) -> None:
        while not self.eof:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        buf = self.buf + data
        lines = buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            self._emit(line)
        while len(self.buf) > MAX_LINE:
            self._emit(self.buf[:MAX_LINE])
            self.buf = self.buf[MAX_LINE:]

    def _emit(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:  # Lambda records no event for an empty line
            self.emit(line.decode("utf-8", "replace") + "\n")

    def close(self) -> None:
        if self.eof:
            return
        self.eof = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.buf:
            self._emit(self.buf)
            self.buf = b""


class _FrameReader(_LineReader):
    """Reads AWS's telemetry log frames (type, length, timestamp, message): one frame, one event."""

    def _feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= _FRAME_HEADER.size:
            _type, length, _ts = _FRAME_HEADER.unpack_from(self.buf)
            end = _FRAME_HEADER.size + length
            if len(self.buf) < end:
                return
            message = self.buf[_FRAME_HEADER.size:end]
            self.buf = self.buf[end:]
            self.emit(message.decode("utf-8", "replace"))

    def close(self) -> None:
        self.buf = b""  # a torn frame is dropped
        super().close()


class BootstrapProcess:
    """One running bootstrap in a session of its own, so its whole tree can be ended together."""

    def __init__(self, pid: int, output: _LineReader, frames: _LineReader | None) -> None:
        self.pid = pid
        self.output = output
        self.frames = frames
        # drain_output() asks the kernel once whether either pipe holds output, instead of reading
        # both to EAGAIN (one syscall and no exceptions, on every warm invoke)
        self._readers = {r.fd: r for r in (output, frames) if r is not None}
        self._pending_output = select.poll()
        for fd in self._readers:
            self._pending_output.register(fd, select.POLLIN)
        self.returncode: int | None = None
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.started = time.monotonic()
        self.peak_rss = 0
        self._sampled_at = 0.0
        self._pidfd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._watch()

    @classmethod
    def spawn(
        cls, argv: list[str], *, executable: str | None, cwd: str, env: dict[str, str],
        emit: Callable[[str], None], telemetry_fd: bool = False,
    ) -> BootstrapProcess:
        """Start argv with stdout+stderr on one pipe (keeping their order) and optional framed-log pipe."""
        out_r, out_w = os.pipe()
        pass_fds: tuple[int, ...] = ()
        frame_r = frame_w = -1
        if telemetry_fd:
            frame_r, frame_w = os.pipe()
            env = {**env, "_LAMBDA_TELEMETRY_LOG_FD": str(frame_w)}
            pass_fds = (frame_w,)
        try:
            proc = subprocess.Popen(
                argv, executable=executable, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=out_w, stderr=out_w, pass_fds=pass_fds, start_new_session=True, close_fds=True,
            )
        except BaseException:
            for fd in (out_r, frame_r, frame_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            os.close(out_w)
        if frame_w >= 0:
            os.close(frame_w)
        proc.returncode = 0  # we reap it ourselves; keep Popen's __del__ from warning
        frames = _FrameReader(frame_r, emit) if frame_r >= 0 else None
        return cls(proc.pid, _LineReader(out_r, emit), frames)

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): poll
            self._poller = loop.create_task(self._poll_exit())
            return
        loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._exited(os.waitstatus_to_exitcode(status))

    async def _poll_exit(self) -> None:
        while self.returncode is None:
            await asyncio.sleep(0.005)
            self._reap()

    def _exited(self, code: int) -> None:
        self.returncode = code
        if not self.exited.done():
            self.exited.set_result(code)

    @property
    def alive(self) -> bool:
        return self.returncode is None

    def drain_output(self) -> None:
        """Read whatever output is already in the pipes, so it is logged before what happens next."""
        for fd, _ in self._pending_output.poll(0):
            reader = self._readers.get(fd)
            if reader is not None:
                reader.drain()
            if reader is None or reader.eof:  # (closed: its fd number may belong to another file now)
                self._readers.pop(fd, None)
                with contextlib.suppress(KeyError, ValueError):
                    self._pending_output.unregister(fd)

    async def settle_output(self, timeout: float = 0.2) -> None:
        """After exit: wait briefly for the pipes to close (children may still hold them), then stop."""
        deadline = time.monotonic() + timeout
        while not self.output.eof and time.monotonic() < deadline:
            self.drain_output()
            await asyncio.sleep(0.002)
        self.drain_output()
        self.output.close()
        if self.frames is not None:
            self.frames.close()

    def signal_tree(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    async def terminate(self, grace: float = 2.0) -> None:
        """SIGTERM the whole tree, SIGKILL it after grace seconds; returns once the bootstrap is reaped."""
        if self.alive:
            self.signal_tree(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
        self.signal_tree(signal.SIGKILL)  # leftovers in the group go too
        if self.alive:
            await self.exited
        await self.settle_output(0.05)

    def kill_now(self) -> None:
        """Synchronous SIGKILL of the tree (server shutdown)."""
        self.signal_tree(signal.SIGKILL)

    def sample_memory(self, max_age: float = 0.0) -> int:
        """Peak resident memory of the process tree so far, in bytes (sum of each process's VmHWM).

        VmHWM is a high-water mark, so a sample taken later still sees an earlier peak: with max_age
        the /proc walk is skipped when the last one is recent (it costs ~50 us on the invoke path).
        """
        now = time.monotonic()
        if max_age and now - self._sampled_at < max_age:
            return self.peak_rss
        self._sampled_at = now
        total = 0
        for pid in self._memory_pids():
            total += _vm_hwm(pid)
        if total > self.peak_rss:
            self.peak_rss = total
        return self.peak_rss


    def _memory_pids(self) -> list[int]:
        return _tree(self.pid)


class ForkedProcess(BootstrapProcess):
    """A bootstrap forked by a fork server (environment/fork_servers.py), which is its parent: the exit status
    comes from that server through report_exit() instead of being reaped here."""

    @classmethod
    def adopt(cls, pid: int, out_r: int, frame_r: int | None, emit: Callable[[str], None]) -> ForkedProcess:
        """Watch the forked pid whose stdout+stderr pipe is out_r (and framed-log pipe frame_r, if any)."""
        frames = _FrameReader(frame_r, emit) if frame_r is not None else None
        return cls(pid, _LineReader(out_r, emit), frames)

    def _watch(self) -> None:
        pass

    def report_exit(self, returncode: int) -> None:
        self._exited(returncode)


class SandboxedProcess(ForkedProcess):
    """PID 1 of a sandbox (runtimes/python/lambdalet_runtime/sandbox.py), forked by a fork server.

    self.pid is PID 1 as this server sees it: it leads the process group, and ending it ends the whole
    environment. Its status pipe says when the runtime runs (``started``: None, or the exec's errno)
    and how it exited, which PID 1's own exit status cannot carry (a signal)."""

    def __init__(self, pid: int, output: _LineReader, frames: _LineReader | None, status_r: int,
                 on_exit: Callable[[], None]) -> None:
        super().__init__(pid, output, frames)
        self._status_fd = status_r
        self._status_buf = b""
        self._runtime_status: int | None = None
        self._on_exit = on_exit
        self.started: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        os.set_blocking(status_r, False)
        asyncio.get_running_loop().add_reader(status_r, self._read_status)

    @classmethod
    def adopt_sandboxed(cls, pid: int, out_r: int, frame_r: int | None, status_r: int,
                        emit: Callable[[str], None], on_exit: Callable[[], None]) -> SandboxedProcess:
        """Watch PID 1 (pid) with its output pipes and its status pipe; on_exit is called once it is gone."""
        frames = _FrameReader(frame_r, emit) if frame_r is not None else None
        return cls(pid, _LineReader(out_r, emit), frames, status_r, on_exit)

    def _read_status(self) -> None:
        while self._status_fd >= 0:
            try:
                data = os.read(self._status_fd, 256)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_status()
                return
            self._status_buf += data
            *lines, self._status_buf = self._status_buf.split(b"\n")
            self._status_buf = self._status_buf[-64:]
            for line in lines:  # (PID 1 runs as the function's user: what it wrote is not trusted)
                kind, value = line[:1], line[1:]
                number = int(value) if value.isdigit() and len(value) < 12 else None
                if kind == b"S" and number is not None:
                    self._runtime_status = number
                elif kind in (b"R", b"E") and not self.started.done():
                    self.started.set_result(number or (None if kind == b"R" else 8))

    def _close_status(self) -> None:
        if self._status_fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._status_fd)
            os.close(self._status_fd)
            self._status_fd = -1
        if not self.started.done():
            self.started.set_result(None)

    def report_exit(self, returncode: int) -> None:
        self._read_status()  # (what PID 1 wrote before it exited is in the pipe by now)
        self._close_status()
        if self._runtime_status is not None:
            returncode = os.waitstatus_to_exitcode(self._runtime_status)
        self._on_exit()
        super().report_exit(returncode)

    def _memory_pids(self) -> list[int]:
        return _tree(self.pid)[1:]  # the runtime's tree: PID 1 (a copy of the fork server) is the platform's


def _tree(root: int) -> list[int]:
    pids = [root]
    i = 0
    while i < len(pids):
        pid = pids[i]
        i += 1
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return pids


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
