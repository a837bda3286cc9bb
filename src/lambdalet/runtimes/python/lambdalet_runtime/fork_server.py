"""The fork server: an interpreter with the runtime imported that forks ready runtimes.

Started by lambdalet as ``<python> -s -u bootstrap.py --fork-server`` with a SOCK_SEQPACKET unix
socket whose fd number is in $_LAMBDALET_FORK_SERVER_FD; with $_LAMBDALET_USERNS_FD, it first joins that
user namespace (the sandbox without root, environment/userns.py). Messages (fields are NUL-separated,
file-system encoded):

- fork server -> lambdalet: ``R`` once ready; ``P <pid>`` per fork; ``X <reason>`` when a fork failed;
  ``E <pid> <wait status>`` when a forked child exited (it is reaped here, its parent).
- lambdalet -> fork server: a JSON header (empty for a plain fork), cwd, len(argv), *argv, len(args), *args,
  *env entries ("KEY=value"), with the stdout/stderr pipe, optionally the telemetry pipe and, for a
  sandboxed start, the status pipe, optionally the Runtime API's listening socket and, when the header says
  "userns", the environment's user namespace (its runtime joins it) as SCM_RIGHTS; last,
  a network namespace when the header says "netns" (a sandbox's PID 1 joins it) or, for a plain fork,
  when the entry ``_LAMBDALET_NETNS=1`` is there (the child joins it before anything else). A child that
  cannot join its environment's namespace exits 127 rather than run outside it.
  A header {"sandbox": {...}, "exec": path | null, "telemetry": bool, "listen": bool} starts the child
  in a sandbox of its own (lambdalet_runtime.sandbox): ``P`` then names its PID 1, which execs `exec`
  (argv) or, when `exec` is null, carries on into the runtime like a plain fork.

serve() returns only in a forked child, set up as an exec'd bootstrap would be (own session, cwd,
stdio, environment, sys.argv); the caller then runs the bootstrap's main, so the child's exit
(exceptions, atexit, thread joins) is the interpreter's ordinary one.

Neither outlives its parent: the fork server gets SIGKILL when lambdalet dies (PR_SET_PDEATHSIG; it also
exits when its socket closes), and each forked child when the fork server dies.
"""

from __future__ import annotations

import _signal
import _socket
import json
import os
import select
import struct
import sys

SOCKET_FD_ENV = "_LAMBDALET_FORK_SERVER_FD"
USERNS_ENV = "_LAMBDALET_USERNS_FD"
NETNS_ENV = "_LAMBDALET_NETNS"
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
_MAX_REQUEST = 1 << 20
_MAX_FDS = 8  # output, telemetry, status, Runtime API listener, user and network namespaces (and spares)
_PR_SET_PDEATHSIG = 1
# A spare PID 1 is made once no request came for this long: cloning one (~1 ms of a big process's page
# tables) and its mounts would compete with the cold start that used the last one (2 cores here).
SPARE_DELAY_S = 0.05


def _libc_function(name: str):
    """A function of libc (prctl, setns); None where there is none (not Linux)."""
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (ImportError, OSError, AttributeError):
        return None


def _pdeathsig_setter():
    """libc's prctl, to ask for SIGKILL when the parent dies; None where there is none (not Linux)."""
    return _libc_function("prctl")


def _join(fd: int, kind: int, what: bytes) -> None:
    """Enter the namespace fd (of kind CLONE_NEW*), or exit 127: never run outside it."""
    setns = _libc_function("setns")
    if setns is None or setns(fd, kind) != 0:
        os.write(2, b"lambdalet fork server: cannot join " + what + b"\n")
        os._exit(127)
    os.close(fd)


def _die_with_parent(prctl, parent: int) -> None:
    """Be SIGKILLed when the parent exits, and exit now if it already has (the fork raced its death)."""
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _send(sock: _socket.socket, message: bytes) -> None:
    try:
        sock.send(message)
    except OSError:
        os._exit(0)  # the server is gone


def serve(keep_modules: set[str]) -> None:
    """Fork children on request until the server closes the socket; returns in a child only."""
    userns = os.environ.pop(USERNS_ENV, None)
    if userns is not None:  # (the sandbox without root: all the sandboxes' namespaces are owned by this one)
        _join(int(userns), _CLONE_NEWUSER, b"lambdalet's user namespace")
    fd = int(os.environ.pop(SOCKET_FD_ENV))
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fd)
    os.set_inheritable(fd, False)
    startup_env = dict(os.environ)
    prctl = _pdeathsig_setter()
    if prctl is not None:  # lambdalet dying first is seen anyway: the socket closes
        prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL)
    me = os.getpid()

    def reap(_signum, _frame) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _send(sock, b"E %d %d" % (pid, status))

    _signal.signal(_signal.SIGCHLD, reap)
    _send(sock, b"R")
    spare: _Spare | None = None
    spare_for: dict | None = None  # the generic part of the next spare to make, once idle
    while True:
        if spare_for is not None and not select.select([sock], [], [], SPARE_DELAY_S)[0]:
            spare, spare_for = _Spare.make(spare_for, sock, startup_env, keep_modules), None  # (idle now)
            if spare is None:  # (this process is a runtime that such a spare forked)
                return
            continue
        data, ancdata, _flags, _addr = sock.recvmsg(_MAX_REQUEST, _socket.CMSG_SPACE(4 * _MAX_FDS))
        if not data:
            os._exit(0)
        fds = _fds(ancdata)
        raw_header, _, body = data.partition(b"\0")
        header = json.loads(raw_header) if raw_header else {}
        config = header.get("sandbox")
        pid = 0
        if config is not None and spare is not None and spare.generic == config["generic"]:
            pid = spare.assign(data, fds)  # (0 when it is gone: a new one is cloned instead)
            spare = None
        if not pid:
            try:
                pid = _sandboxed_fork() if config is not None else os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                _send(sock, b"X " + os.fsencode(exc.strerror or str(exc)))
                continue
            if pid == 0:
                _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
                sock.close()
                if config is not None:
                    _sandbox_init(header, body, fds, startup_env, keep_modules)
                else:
                    _die_with_parent(prctl, me)
                    _become_child(body, fds, startup_env, keep_modules)
                return
        for fd in fds:
            os.close(fd)
        _send(sock, b"P %d" % pid)
        if config is not None:  # the next cold start's PID 1 is made ahead, once idle
            if spare is not None and spare.generic != config["generic"]:
                spare.close()
                spare = None
            if spare is None:
                spare_for = config["generic"]


def _fds(ancdata: list) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += memoryview(payload)[: len(payload) - len(payload) % 4].cast("i").tolist()
    return fds


class _Spare:
    """A PID 1 cloned and prepare()d ahead of the next sandboxed start, waiting for its request."""

    def __init__(self, pid: int, sock: _socket.socket, generic: dict) -> None:
        self.pid, self.sock, self.generic = pid, sock, generic

    @classmethod
    def make(cls, generic: dict, server: _socket.socket, startup_env: dict[str, str],
             keep_modules: set[str]) -> _Spare | None:
        """The spare (in the fork server); None only in a runtime forked by it, which carries on."""
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            pid = _sandboxed_fork()
        except OSError:
            ours.close()
            theirs.close()
            return cls(0, ours, {})  # (no spare: matches no request)
        if pid:
            theirs.close()
            return cls(pid, ours, generic)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        server.close()
        ours.close()
        from lambdalet_runtime import sandbox

        try:
            sandbox.prepare(generic)
            data, ancdata, _flags, _addr = theirs.recvmsg(_MAX_REQUEST, _socket.CMSG_SPACE(4 * _MAX_FDS))
        except Exception as exc:
            os.write(2, f"lambdalet sandbox: {exc}\n".encode())
            os._exit(127)
        if not data:
            os._exit(0)
        theirs.close()
        raw_header, _, body = data.partition(b"\0")
        _sandbox_init(json.loads(raw_header), body, _fds(ancdata), startup_env, keep_modules, prepared=True)
        return None

    def assign(self, request: bytes, fds: list[int]) -> int:
        """Hand the spare its request (the fds are copied over); its pid, or 0 when it is gone."""
        if not self.pid:
            return 0
        try:
            rights = struct.pack(f"{len(fds)}i", *fds)
            self.sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        except OSError:
            self.close()
            return 0
        self.sock.close()
        return self.pid

    def close(self) -> None:
        self.sock.close()  # (it exits at EOF)


def _sandboxed_fork() -> int:
    from lambdalet_runtime import sandbox

    return sandbox.clone_init()


def _sandbox_init(header: dict, request: bytes, fds: list[int], startup_env: dict[str, str],
                  keep_modules: set[str], prepared: bool = False) -> None:
    """PID 1 of a new sandbox: set it up, fork the runtime, then reap until it exits (never returns
    there); returns in the runtime when it carries on as a forked Python runtime."""
    from lambdalet_runtime import sandbox

    config = header["sandbox"]
    if header.get("netns"):  # (first: PID 1 and all it starts live in the environment's network)
        _join(fds.pop(), _CLONE_NEWNET, b"the environment's network namespace")
    userns = fds.pop() if header.get("userns") else None  # (joined by the runtime, last)
    count = 1 + bool(header.get("telemetry"))
    pipes, status_fd, listen = fds[:count], fds[count], fds[count + 1 :]
    exe = header.get("exec")
    try:
        if not prepared:
            sandbox.prepare(config["generic"])
        sandbox.finish(config)
        if not config.get("userns"):
            sandbox.set_limits()
        error_r, error_w = os.pipe2(os.O_CLOEXEC) if exe else (None, None)
        runtime = os.fork()
    except Exception as exc:  # (PID 1 must never carry on into the fork server's loop)
        os.write(pipes[0], f"lambdalet sandbox: {exc}\n".encode())
        os._exit(127)
    if runtime:
        for fd in pipes:
            os.close(fd)
        if error_w is not None:
            os.close(error_w)
        if userns is not None:
            os.close(userns)
        sandbox.run_init(config, runtime, status_fd, error_r)
    os.close(status_fd)
    for fd in listen:
        os.close(fd)
    cwd, argv, _args, env = _parse(request)
    try:
        if exe is None:
            sandbox.set_cmdline(argv)
        sandbox.drop_privileges(config, userns)
    except OSError as exc:
        os.write(pipes[0], f"lambdalet sandbox: {exc}\n".encode())
        os._exit(127)
    if exe is None:
        _become_child(request, pipes, startup_env, keep_modules, new_session=False)
        _move_paths(config.get("path_map") or [])
        return
    assert error_r is not None and error_w is not None
    os.close(error_r)
    _set_up_process(cwd, pipes, env)
    try:
        os.execve(exe, argv, env)
    except OSError as exc:
        os.write(error_w, b"%d" % (exc.errno or 8))
    os._exit(127)


def _move_paths(path_map: list[list[str]]) -> None:
    """Imports after the pivot look where the runtime's host paths now are (e.g. /var/runtime)."""
    def moved(path: str) -> str:
        for host, inside in path_map:
            if path == host or path.startswith(host + "/"):
                return inside + path[len(host):]
        return path

    sys.path[:] = [moved(p) for p in sys.path]
    for name in ("__main__", "lambdalet_runtime"):
        module = sys.modules.get(name)
        if module is None:
            continue
        if getattr(module, "__file__", None):
            module.__file__ = moved(module.__file__)
        if isinstance(getattr(module, "__path__", None), list):
            module.__path__[:] = [moved(p) for p in module.__path__]


def _parse(request: bytes) -> tuple[str, list[str], list[str], dict[str, str]]:
    fields = [os.fsdecode(f) for f in request.split(b"\0")]
    n = int(fields[1])
    argv = fields[2 : 2 + n]
    m = int(fields[2 + n])
    args = fields[3 + n : 3 + n + m]
    env = dict(entry.split("=", 1) for entry in fields[3 + n + m :] if "=" in entry)
    return fields[0], argv, args, env


def _set_up_process(cwd: str, fds: list[int], env: dict[str, str]) -> None:
    """cwd, stdin from /dev/null, stdout+stderr on the output pipe, the telemetry pipe as an exec'd
    process gets it (pass_fds)."""
    try:
        os.chdir(cwd)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[0], 2)
        os.close(null)
        os.close(fds[0])
    except OSError as exc:
        os.write(2, f"lambdalet fork server: {exc}\n".encode())
        os._exit(127)
    if len(fds) > 1:
        os.set_inheritable(fds[1], True)
        env["_LAMBDA_TELEMETRY_LOG_FD"] = str(fds[1])


def _become_child(request: bytes, fds: list[int], startup_env: dict[str, str], keep_modules: set[str],
                  new_session: bool = True) -> None:
    cwd, argv, args, env = _parse(request)
    if env.pop(NETNS_ENV, None) is not None:
        _join(fds.pop(), _CLONE_NEWNET, b"the environment's network namespace")
    if new_session:
        try:
            os.setsid()
        except OSError as exc:
            os.write(2, f"lambdalet fork server: {exc}\n".encode())
            os._exit(127)
    _set_up_process(cwd, fds, env)
    # Variables the interpreter set for itself at start-up (PEP 538 locale coercion) stay, as they would.
    for name in ("LC_CTYPE",):
        if name in startup_env and name not in env:
            env[name] = startup_env[name]
    os.environ.clear()
    os.environ.update(env)
    time = sys.modules.get("time")
    if time is not None and hasattr(time, "tzset"):
        time.tzset()
    sys.argv[1:] = args
    if hasattr(sys, "orig_argv"):
        sys.orig_argv = argv
    for name in [name for name in sys.modules if name not in keep_modules]:
        del sys.modules[name]
    package = sys.modules.get("lambdalet_runtime")
    for name in ("fork_server", "sandbox"):
        if package is not None and hasattr(package, name):
            delattr(package, name)
