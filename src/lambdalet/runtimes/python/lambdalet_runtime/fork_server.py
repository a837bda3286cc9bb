"""The fork server: an interpreter with the runtime imported that forks ready runtimes.

Started by lambdalet as ``<python> -s -u bootstrap.py --fork-server`` with a SOCK_SEQPACKET unix
socket whose fd number is in $_LAMBDALET_FORK_SERVER_FD. Messages (fields are NUL-separated, file-system encoded):

- fork server -> lambdalet: ``R`` once ready; ``P <pid>`` per fork; ``X <reason>`` when a fork failed;
  ``E <pid> <wait status>`` when a forked child exited (it is reaped here, its parent).
- lambdalet -> fork server: cwd, len(argv), *argv, len(args), *args, *env entries ("KEY=value"), with the
  stdout/stderr pipe, optionally the telemetry pipe and, when the entry ``_LAMBDALET_NETNS=1`` is there,
  last a network namespace as SCM_RIGHTS. The child joins that namespace (setns) before anything else, so
  the runtime's 127.0.0.1:9001 is its environment's; a child that cannot join exits 127 rather than run
  outside it.

serve() returns only in a forked child, set up as an exec'd bootstrap would be (own session, cwd,
stdio, environment, sys.argv); the caller then runs the bootstrap's main, so the child's exit
(exceptions, atexit, thread joins) is the interpreter's ordinary one.

Neither outlives its parent: the fork server gets SIGKILL when lambdalet dies (PR_SET_PDEATHSIG; it also
exits when its socket closes), and each forked child when the fork server dies.
"""

from __future__ import annotations

import _signal
import _socket
import os
import sys

SOCKET_FD_ENV = "_LAMBDALET_FORK_SERVER_FD"
NETNS_ENV = "_LAMBDALET_NETNS"
_CLONE_NEWNET = 0x40000000
_MAX_REQUEST = 1 << 20
_PR_SET_PDEATHSIG = 1


def _libc_function(name: str):
    """A function of libc (prctl, setns); None where there is none (not Linux)."""
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (ImportError, OSError, AttributeError):
        return None


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
    fd = int(os.environ.pop(SOCKET_FD_ENV))
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fd)
    os.set_inheritable(fd, False)
    startup_env = dict(os.environ)
    prctl = _libc_function("prctl")
    setns = _libc_function("setns")
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
    while True:
        data, ancdata, _flags, _addr = sock.recvmsg(_MAX_REQUEST, _socket.CMSG_SPACE(12))
        if not data:
            os._exit(0)
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += memoryview(payload)[: len(payload) - len(payload) % 4].cast("i").tolist()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _send(sock, b"X " + os.fsencode(exc.strerror or str(exc)))
            continue
        if pid == 0:
            _die_with_parent(prctl, me)
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            sock.close()
            _become_child(data, fds, startup_env, keep_modules, setns)
            return
        for fd in fds:
            os.close(fd)
        _send(sock, b"P %d" % pid)


def _become_child(request: bytes, fds: list[int], startup_env: dict[str, str], keep_modules: set[str],
                  setns) -> None:
    fields = [os.fsdecode(f) for f in request.split(b"\0")]
    cwd = fields[0]
    n = int(fields[1])
    argv = fields[2 : 2 + n]
    m = int(fields[2 + n])
    args = fields[3 + n : 3 + n + m]
    env = dict(entry.split("=", 1) for entry in fields[3 + n + m :] if "=" in entry)
    if env.pop(NETNS_ENV, None) is not None:
        netns = fds.pop()
        if setns is None or setns(netns, _CLONE_NEWNET) != 0:
            os.write(2, b"lambdalet fork server: cannot join the environment's network namespace\n")
            os._exit(127)
        os.close(netns)
    try:
        os.setsid()
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
        os.set_inheritable(fds[1], True)  # as an exec'd process gets it (pass_fds)
        env["_LAMBDA_TELEMETRY_LOG_FD"] = str(fds[1])
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
    if package is not None and hasattr(package, "fork_server"):
        delattr(package, "fork_server")
