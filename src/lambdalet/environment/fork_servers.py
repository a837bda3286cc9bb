"""Fork servers: runtime processes forked from a warm interpreter instead of exec'd.

A managed runtime whose LaunchSpec names a fork_server command gets one fork server per (command, locale),
started by its first cold start (which is exec'd meanwhile) and kept for the server's life
(shutdown_all() ends them, at server shutdown). Forking
a pre-imported interpreter reaches the first /next in a few ms, against 12-18 ms for exec'ing python.
The child is set up as an exec'd bootstrap would be (session, cwd, stdio, environment, argv); its
exit status comes from the fork server, its parent. Whenever a fork server is unavailable, fork_process()
returns None and the caller spawns as usual. LAMBDALET_FORK_SERVER=0 in the server's environment
turns forking off.

In the sandbox tier (environment/launcher.py) a fork server also clones each environment's PID 1 (`Sandboxing`),
and keeps one such PID 1 prepared ahead for the next cold start.

Should the server die without shutdown_all() (kill -9), a fork server does not outlive it: it exits at its
socket's EOF, and is SIGKILLed by PR_SET_PDEATHSIG; each forked child gets SIGKILL when its fork server
dies (both set in runtimes/python/lambdalet_runtime/fork_server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from lambdalet.environment.process import BootstrapProcess, ForkedProcess, SandboxedProcess, _LineReader

log = logging.getLogger("lambdalet.fork_servers")

START_TIMEOUT_S = 5.0
MAX_FAILURES = 3  # fork server deaths/start failures after which a command is spawned only
SOCKET_FD_ENV = "_LAMBDALET_FORK_SERVER_FD"  # read by runtimes/python/lambdalet_runtime/fork_server.py
USERNS_ENV = "_LAMBDALET_USERNS_FD"  # the user namespace it joins first (the same file reads it)
NETNS_ENV = "_LAMBDALET_NETNS"  # in a plain fork request: its last fd is a network namespace for the child to join


def enabled() -> bool:
    return os.environ.get("LAMBDALET_FORK_SERVER", "1").strip().lower() not in ("0", "false", "no", "off")


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    """The variables that shape an interpreter's start-up (locale), which a fork server must share."""
    return {k: v for k, v in env.items() if k in ("LANG", "LANGUAGE") or k.startswith("LC_")}


class ForkServer:
    """One running fork server and its socket."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket, out_r: int) -> None:
        self.proc = proc
        self.sock = sock
        self.dead = False
        self.loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = self.loop.create_future()
        self._replies: list[asyncio.Future[int]] = []
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._output = _LineReader(out_r, lambda line: log.warning("fork server: %s", line.rstrip()))
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._read)

    @classmethod
    def launch(cls, argv: list[str], env: dict[str, str]) -> ForkServer:
        """Start a fork server; it serves forks once `ready` (START_TIMEOUT_S at most, else it is ended)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        env = {**env, SOCKET_FD_ENV: str(theirs.fileno())}
        keep = [theirs.fileno()]
        if _user_namespace_fd is not None:
            env[USERNS_ENV] = str(_user_namespace_fd)
            keep.append(_user_namespace_fd)
        try:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, close_fds=True,
                pass_fds=keep, start_new_session=True,
            )
        except BaseException:
            ours.close()
            os.close(out_r)
            raise
        finally:
            theirs.close()
            os.close(out_w)
        server = cls(proc, ours, out_r)
        server.loop.call_later(START_TIMEOUT_S, server._check_started)
        return server

    @property
    def ready(self) -> bool:
        return not self.dead and self._ready.done()

    def _check_started(self) -> None:
        if not self._ready.done():
            log.warning("fork server %s did not start in %.0f s", self.proc.args[0], START_TIMEOUT_S)
            self.close()

    def _read(self) -> None:
        while True:
            try:
                message = self.sock.recv(256)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._died()
                return
            kind, _, rest = message.partition(b" ")
            if kind == b"R":
                if not self._ready.done():
                    self._ready.set_result(None)
            elif kind in (b"P", b"X") and self._replies:
                reply = self._replies.pop(0)
                if kind == b"P" and reply.done():  # the caller gave up waiting: nobody owns this child
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(rest), signal.SIGKILL)
                elif kind == b"P":
                    reply.set_result(int(rest))
                elif not reply.done():
                    reply.set_exception(OSError(rest.decode("utf-8", "replace")))
            elif kind == b"E":
                pid, status = (int(x) for x in rest.split())
                self._child_exited(pid, os.waitstatus_to_exitcode(status))

    def _child_exited(self, pid: int, code: int) -> None:
        proc = self._children.pop(pid, None)
        if proc is None:
            self._early_exits[pid] = code  # exited before its pid reached us
        else:
            proc.report_exit(code)

    def _died(self) -> None:
        """The fork server is gone: its children can no longer be waited for, so they are ended now."""
        if self.dead:
            return
        self.dead = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        error = ConnectionError("fork server exited")
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()
        for reply in self._replies:
            if not reply.done():
                reply.set_exception(error)
                reply.exception()
        self._replies.clear()
        for proc in list(self._children.values()):
            proc.signal_tree(signal.SIGKILL)
            proc.report_exit(-signal.SIGKILL)
        self._children.clear()
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(1)
        self._output.close()

    async def fork(self, argv: list[str], args: list[str], *, cwd: str, env: dict[str, str],
                   emit: Callable[[str], None], telemetry_fd: bool,
                   sandbox: Sandboxing | None = None, netns_fd: int | None = None) -> ForkedProcess:
        """Fork a child running argv (sys.argv[1:] = args), or, with sandbox, PID 1 of a sandbox that
        runs it; in the network namespace netns_fd if given (joined before anything else); raises
        OSError/ConnectionError on failure."""
        if self.dead:
            raise ConnectionError("fork server exited")
        env = {k: v for k, v in env.items() if k not in ("_LAMBDA_TELEMETRY_LOG_FD", NETNS_ENV)}
        if sandbox is None and netns_fd is not None:
            env[NETNS_ENV] = "1"
        header = "" if sandbox is None else json.dumps(
            {"sandbox": sandbox.config, "exec": sandbox.exec_path, "telemetry": telemetry_fd,
             "listen": sandbox.listen_fd is not None, "userns": sandbox.userns_fd is not None,
             "netns": netns_fd is not None})
        fields = [header, cwd, str(len(argv)), *argv, str(len(args)), *args, *(f"{k}={v}" for k, v in env.items())]
        payload = b"\0".join(os.fsencode(f) for f in fields)
        out_r, out_w = os.pipe()
        frame_r = frame_w = status_r = status_w = -1
        if telemetry_fd:
            frame_r, frame_w = os.pipe()
        if sandbox is not None:
            status_r, status_w = os.pipe()
        ours = [fd for fd in (out_w, frame_w, status_w) if fd >= 0]
        fds = ours + ([sandbox.listen_fd] if sandbox is not None and sandbox.listen_fd is not None else [])
        if sandbox is not None and sandbox.userns_fd is not None:
            fds.append(sandbox.userns_fd)  # (before the network namespace's)
        if netns_fd is not None:
            fds.append(netns_fd)  # (last, as the fork server expects it)
        try:
            reply: asyncio.Future[int] = self.loop.create_future()
            self.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _ints(fds))])
            self._replies.append(reply)  # the fork server answers requests in the order they were sent
            pid = await asyncio.wait_for(reply, START_TIMEOUT_S)
        except BaseException:
            for fd in (out_r, frame_r, status_r):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in ours:
                os.close(fd)
        frames = frame_r if frame_r >= 0 else None
        if sandbox is not None:
            proc: ForkedProcess = SandboxedProcess.adopt_sandboxed(pid, out_r, frames, status_r, emit,
                                                                   sandbox.on_exit)
        else:
            proc = ForkedProcess.adopt(pid, out_r, frames, emit)
        code = self._early_exits.pop(pid, None)
        if code is not None:
            proc.report_exit(code)
        else:
            self._children[pid] = proc
        return proc

    def close(self) -> None:
        """End the fork server, and with it any child still running (nothing could report its exit)."""
        self._died()


@dataclass
class Sandboxing:
    """What a fork server needs to start a child in a sandbox (see environment/launcher.py)."""

    config: dict  # read by runtimes/python/lambdalet_runtime/sandbox.py
    exec_path: str | None  # exec this with argv; None: carry on into the forked runtime
    listen_fd: int | None  # kept open by PID 1 (the Runtime API's listening socket)
    on_exit: Callable[[], None]
    userns_fd: int | None = None  # the environment's own user namespace, which its runtime joins (no root)


def _ints(fds: list[int]) -> bytes:
    return struct.pack(f"{len(fds)}i", *fds)


_servers: dict[tuple, ForkServer] = {}
_failures: dict[tuple, int] = {}
_user_namespace_fd: int | None = None


def join_user_namespace(fd: int | None) -> None:
    """Fork servers started from now on join the user namespace fd first (the sandbox without root:
    environment/userns.py), or none with None."""
    global _user_namespace_fd
    _user_namespace_fd = fd


async def fork_process(
    fork_server: list[str], argv: list[str], *, cwd: str, env: dict[str, str],
    emit: Callable[[str], None], telemetry_fd: bool = False, sandbox: Sandboxing | None = None,
    netns_fd: int | None = None,
) -> BootstrapProcess | None:
    """argv forked from the fork server started by `fork_server`, or None (then spawn argv as usual).

    argv must be the fork server's command with its last argument (the mode flag) replaced by the child's
    arguments. The fork server is started by the first call, which returns None (that start is exec'd while
    the fork server gets ready in the background); so do calls while it is not ready, or after it failed.
    """
    if not enabled():
        return None
    prefix = len(fork_server) - 1
    if argv[:prefix] != fork_server[:prefix]:
        return None
    server = ready_server(fork_server, env)
    if server is None:
        return None
    try:
        return await server.fork(argv, argv[prefix:], cwd=cwd, env=env, emit=emit, telemetry_fd=telemetry_fd,
                                 sandbox=sandbox, netns_fd=netns_fd)
    except (OSError, TimeoutError, ValueError) as exc:  # ConnectionError is an OSError
        log.warning("fork server %s failed (%s): spawning instead", fork_server[0], exc)
        key = _key(fork_server, env)
        _failures[key] = _failures.get(key, 0) + 1
        if isinstance(exc, TimeoutError):
            server.close()
        return None


def _key(fork_server: list[str], env: dict[str, str]) -> tuple:
    return (id(asyncio.get_running_loop()), tuple(fork_server), tuple(sorted(_startup_env(env).items())))


def ready_server(fork_server: list[str], env: dict[str, str]) -> ForkServer | None:
    """The fork server started by `fork_server` for env's locale if it is ready, else None (starting it
    when there is none: it is ready a little later)."""
    startup = _startup_env(env)
    loop = asyncio.get_running_loop()
    key = (id(loop), tuple(fork_server), tuple(sorted(startup.items())))
    server = _servers.get(key)
    if server is not None and (server.dead or server.loop is not loop):
        del _servers[key]
        server.close()
        _failures[key] = _failures.get(key, 0) + 1
        server = None
    if _failures.get(key, 0) >= MAX_FAILURES:
        return None
    if server is None:
        try:
            _servers[key] = ForkServer.launch(fork_server, {**startup, "PATH": env.get("PATH", os.defpath)})
        except OSError as exc:
            log.warning("cannot start fork server %s: %s", fork_server[0], exc)
            _failures[key] = _failures.get(key, 0) + 1
        return None
    if not server.ready:
        return None
    return server


async def started_server(fork_server: list[str], env: dict[str, str]) -> ForkServer | None:
    """ready_server(), waiting (START_TIMEOUT_S at most) for a fork server that is starting."""
    ready_server(fork_server, env)
    server = _servers.get(_key(fork_server, env))
    if server is None:
        return None
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(server._ready), START_TIMEOUT_S)
    return server if server.ready else None


def shutdown_all() -> None:
    """End every fork server (server shutdown)."""
    for server in list(_servers.values()):
        with contextlib.suppress(Exception):
            server.close()
    _servers.clear()
