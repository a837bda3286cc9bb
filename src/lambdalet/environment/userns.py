"""The sandbox without root: user namespaces, through the maker process (environment/userns_maker.py).

start() runs the maker, which makes the *base* user namespace (the server's uid and gid are its root) and
checks that a sandbox can be built there. The fork servers join the base (join_fd()); each environment's
network namespace comes with a user namespace of its own below the base (network()), where the base's root
is Lambda's sandbox user, SANDBOX_UID: its runtime joins it as its last step
(runtimes/python/lambdalet_runtime/sandbox.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

SANDBOX_UID = SANDBOX_GID = 993  # sbx_user1051, Lambda's sandbox user, in each environment's user namespace
BASE_UID = BASE_GID = 0  # the same ids, as PID 1 sees them from the base
START_TIMEOUT_S = 10.0
_MAX_FDS = 8
_MAKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "userns_maker.py")


@dataclass
class Network:
    """What UserNamespaces.network() made (fds owned by the caller)."""

    userns_fd: int
    netns_fd: int
    listeners: list[socket.socket]
    slirp_exit_fd: int | None  # closing it ends the namespace's slirp4netns
    slirp_error: str | None  # why there is no slirp4netns, when one was asked for


class UserNamespaces:
    """The maker process and the base user namespace it made (one per server)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._base_fd: int | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._base_fd is not None

    def start(self) -> str | None:
        """Start the maker: None once the base exists and a sandbox can be built in it, else why not."""
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [os.path.realpath(sys.executable), "-I", "-S", _MAKER, str(SANDBOX_UID), str(SANDBOX_GID),
                str(theirs.fileno())]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          pass_fds=(theirs.fileno(),), close_fds=True, start_new_session=True)
        except OSError as exc:
            ours.close()
            return f"cannot start the user-namespace maker: {exc}"
        finally:
            theirs.close()
        self._sock = ours
        ours.settimeout(START_TIMEOUT_S)
        try:
            reply = ours.recv(4096)
            if reply == b"R":
                self._base_fd = os.open(f"/proc/{self._proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
                return None
            reason = reply[2:].decode("utf-8", "replace") if reply.startswith(b"X ") else "the maker exited"
        except OSError as exc:
            reason = f"no answer from the user-namespace maker: {exc}"
        self.close()
        return reason

    def join_fd(self) -> int:
        """An fd of the base user namespace, for setns(fd, CLONE_NEWUSER) in a fork server."""
        if self._base_fd is None:
            raise OSError("no user namespaces: the maker is not running")
        return self._base_fd

    def network(self, ports: list[int], slirp4netns: str | None = None) -> Network:
        """A new environment's user namespace and network namespace, with a listening socket on
        127.0.0.1:port in it for each port and, given slirp4netns's path, outbound access through it
        (blocking: ~1 ms, ~5 ms with slirp4netns; call it off the event loop)."""
        with self._lock:
            if self._sock is None:
                raise OSError("no user namespaces: the maker is not running")
            self._sock.send(b"N" + json.dumps({"ports": ports, "slirp4netns": slirp4netns}).encode())
            data, ancdata, _flags, _addr = self._sock.recvmsg(4096, socket.CMSG_SPACE(4 * _MAX_FDS),
                                                              socket.MSG_CMSG_CLOEXEC)  # (none to a child)
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) - len(payload) % 4])
        outbound = data == b"N" and slirp4netns is not None
        if not data.startswith(b"N") or len(fds) != 2 + len(ports) + outbound:
            for fd in fds:
                os.close(fd)
            reason = data[2:].decode("utf-8", "replace") if data.startswith(b"X ") else "the maker exited"
            raise OSError(f"cannot make a network namespace: {reason}")
        listeners = [socket.socket(fileno=fd) for fd in fds[2:2 + len(ports)]]
        return Network(fds[0], fds[1], listeners, fds[-1] if outbound else None,
                       data[2:].decode("utf-8", "replace") if data.startswith(b"N ") else None)

    def close(self) -> None:
        if self._base_fd is not None:
            os.close(self._base_fd)
            self._base_fd = None
        if self._sock is not None:
            self._sock.close()  # (the maker exits at EOF)
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._proc.wait(1)
            self._proc = None


USER_NAMESPACES = UserNamespaces()
