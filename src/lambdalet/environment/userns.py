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
import logging
import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

SANDBOX_UID = SANDBOX_GID = 993  # sbx_user1051, Lambda's sandbox user, in each environment's user namespace
BASE_UID = 0  # the server's uid and gid, as PID 1 sees them from the base
START_TIMEOUT_S = 10.0
_MAX_FDS = 8
log = logging.getLogger("lambdalet.userns")
_MAKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "userns_maker.py")


@dataclass
class Network:
    """What UserNamespaces.network() made (fds owned by the caller)."""

    userns_fd: int
    netns_fd: int
    base_id: int  # the base's uid and gid that are SANDBOX_UID/GID in the environment's user namespace
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
        self.own_ids = 0  # subordinate ids the base has: environments get one each (0: they share the server's)

    @property
    def running(self) -> bool:
        return self._base_fd is not None

    def start(self) -> str | None:
        """Start the maker: None once the base exists and a sandbox can be built in it, else why not."""
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        subordinate = _subordinate_ids()
        argv = [os.path.realpath(sys.executable), "-I", "-S", _MAKER, str(SANDBOX_UID), str(SANDBOX_GID),
                str(theirs.fileno()), str(min(subordinate[1], subordinate[3]) if subordinate else 0)]
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
            if reply.startswith(b"M ") and subordinate is not None:
                mapped = _map_subordinate(int(reply[2:]), subordinate)
                ours.send(b"m" if mapped else b"n")
                self.own_ids = min(subordinate[1], subordinate[3]) if mapped else 0
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
        reply = json.loads(data[1:]) if data.startswith(b"N{") else None
        outbound = reply is not None and slirp4netns is not None and reply["slirp4netns"] is None
        if reply is None or len(fds) != 2 + len(ports) + outbound:
            for fd in fds:
                os.close(fd)
            reason = data[2:].decode("utf-8", "replace") if data.startswith(b"X ") else "the maker exited"
            raise OSError(f"cannot make a network namespace: {reason}")
        listeners = [socket.socket(fileno=fd) for fd in fds[2:2 + len(ports)]]
        return Network(fds[0], fds[1], int(reply["id"]), listeners, fds[-1] if outbound else None,
                       reply["slirp4netns"])

    def close(self) -> None:
        self.own_ids = 0
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


def _subordinate_ids() -> tuple[int, int, int, int] | None:
    """(first uid, count, first gid, count) delegated to this user in /etc/subuid and /etc/subgid, where
    newuidmap and newgidmap (Debian's uidmap) can map them; else None."""
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return None
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None  # (newuidmap wants a name too)
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                lines = [line.strip().split(":") for line in f]
        except OSError:
            return None
        found = next(((int(r[1]), int(r[2])) for r in lines
                      if len(r) == 3 and r[0] in (name, str(os.getuid())) and r[1].isdigit() and r[2].isdigit()), None)
        if found is None or found[1] < 1:
            return None
        ranges.append(found)
    return (*ranges[0], *ranges[1])


def _map_subordinate(pid: int, ids: tuple[int, int, int, int]) -> bool:
    """Map root and the subordinate ids in pid's user namespace (the maker's base): True when done."""
    count = min(ids[1], ids[3])
    for tool, own, first in (("newuidmap", os.getuid(), ids[0]), ("newgidmap", os.getgid(), ids[2])):
        done = subprocess.run([tool, str(pid), "0", str(own), "1", "1", str(first), str(count)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log.warning("%s: %s: environments share the server's uid", tool, done.stderr.strip())
            return False
    return True


USER_NAMESPACES = UserNamespaces()
