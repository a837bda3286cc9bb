"""The user-namespace maker: what lets a server without root sandbox its environments.

Run by environment/userns.py as ``python -I -S userns_maker.py <inside uid> <inside gid> <fd>
[<subordinate ids>]``, fd a SOCK_SEQPACKET socket to the server (standard library only: it imports nothing
of lambdalet's but its sibling slirp4netns.py). It enters a new user namespace (the *base*) as its root,
mapped to the server's uid and gid, and so gains the capabilities of that namespace only: what a sandbox's
PID 1 needs (mounts, chroot, hostname) over the namespaces the base owns, and nothing over the host's. The
fork servers join the base. Each environment's network namespace is made here, with a user namespace of
its own below the base (the *environment's*), where Lambda's sandbox user (993) is the base's root or,
where the user has subordinate ids (/etc/subuid, /etc/subgid), a subordinate id of its own (its own uid
and gid on the host, handed out in turn): its runtime joins it as its last step and drops every
capability. So each environment's processes count against Lambda's 1,024-process limit on their own, and
nothing in an environment can act on its PID 1 (that takes capabilities in the base).

Outbound network, when asked for: slirp4netns attached to the namespace (environment/slirp4netns.py), run
from the base as its root, so that it can sandbox itself. Its exit pipe's write end goes to the server.

Messages (maker -> server first):
- with subordinate ids, ``M <pid>``: the server maps them in the base (newuidmap, newgidmap) and answers
  ``m``, or anything else to have the maker map the server's own ids only;
- ``R`` once the base exists and a sandbox works in it (new mount, PID, UTS and IPC namespaces, /proc
  mounted), or ``X <what failed>`` (then the maker exits);
- server -> maker ``N`` + JSON {"ports": [...], "slirp4netns": path | null}: maker -> server ``N`` + JSON
  {"id": the base's id that is 993 in it, "slirp4netns": why outbound access failed | null} with the
  environment's user namespace, its network namespace (loopback up), a listening socket on 127.0.0.1 per
  port in it and, with outbound access, slirp4netns's exit pipe, as SCM_RIGHTS; or ``X <what failed>``.
The maker exits when the server does (SIGKILL on its death, and EOF on the socket).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import json
import os
import signal
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # (run as a script: its sibling below)
import slirp4netns

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ_FLAGS = struct.Struct("16sH14x")
_MAX_FDS = 8

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter_user_namespace(flags: int, inside_uid: int, inside_gid: int) -> None:
    """unshare(CLONE_NEWUSER | flags), the caller's uid and gid seen as inside_uid/inside_gid in it."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(CLONE_NEWUSER | flags), "unshare(CLONE_NEWUSER)")
    _write("/proc/self/setgroups", "deny")  # (an unprivileged gid_map needs it)
    _write("/proc/self/uid_map", f"{inside_uid} {uid} 1")
    _write("/proc/self/gid_map", f"{inside_gid} {gid} 1")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ_FLAGS.pack(b"lo", 0)
        flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(b"lo", flags | _IFF_UP))


def _send(channel: socket.socket, message: bytes, fds: list[int] = ()) -> None:  # type: ignore[assignment]
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    channel.sendmsg([message], rights)


def _receive(channel: socket.socket) -> tuple[bytes, list[int]]:
    data, ancdata, _flags, _addr = channel.recvmsg(4096, socket.CMSG_SPACE(4 * _MAX_FDS))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) - len(payload) % 4])
    return data, fds


def _in_child(work, channel: socket.socket, meanwhile=None) -> None:
    """Run work() in a child (a namespace once entered cannot be left); it reports on channel itself.
    meanwhile(pid), if given, runs here while the child works."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            work()
        except BaseException as exc:  # (reported, never carried into the maker's loop)
            with contextlib.suppress(OSError):
                channel.send(b"X " + os.fsencode(str(exc)))
        os._exit(0)
    try:
        if meanwhile is not None:
            meanwhile(pid)
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _probe(channel: socket.socket) -> None:
    """Can a sandbox be built in the base? PID 1 of new namespaces mounting its own /proc says so."""
    def work() -> None:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC),
               "unshare(mount, PID, UTS, IPC namespaces)")
        init = os.fork()
        if init == 0:
            err = 0
            if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0 or \
                    _libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None) != 0:
                err = ctypes.get_errno() or 1
            os._exit(err & 0xFF)
        _, status = os.waitpid(init, 0)
        err = os.waitstatus_to_exitcode(status)
        if err:
            raise OSError(err, f"mounting /proc in a new PID namespace: {os.strerror(err)}")
        channel.send(b"R")

    _in_child(work, channel)


def _network(channel: socket.socket, ports: list[int], slirp: str | None, inside_uid: int, inside_gid: int,
             own_id: int | None) -> None:
    """The environment's user and network namespaces; in the user namespace, inside_uid/gid is the base's
    root, or with own_id, that subordinate id of the base's (its own uid and gid on the host)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    unshared_r, unshared_w = os.pipe() if own_id is not None else (-1, -1)
    mapped_r, mapped_w = os.pipe() if own_id is not None else (-1, -1)

    def work() -> None:  # (in the child: into the environment's namespaces, back to the maker with them)
        if own_id is None:
            enter_user_namespace(CLONE_NEWNET, inside_uid, inside_gid)
        else:  # (only the maker, in the parent namespace, may map an id other than the child's own)
            _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER)")
            os.write(unshared_w, b"u")
            if os.read(mapped_r, 1) != b"m":
                raise OSError("the environment's user namespace was not mapped")
        loopback_up()
        listeners = []
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(512)
            listeners.append(sock)
        fds = [os.open("/proc/self/ns/user", os.O_RDONLY), os.open("/proc/self/ns/net", os.O_RDONLY),
               *(sock.fileno() for sock in listeners)]
        _send(theirs, b"N", fds)

    def map_ids(pid: int) -> None:
        if own_id is None:
            return
        os.close(unshared_w)  # (so that a child that dies first is an EOF here, not a wait)
        os.close(mapped_r)
        try:
            if os.read(unshared_r, 1) == b"u":
                _write(f"/proc/{pid}/uid_map", f"{inside_uid} {own_id} 1")
                _write(f"/proc/{pid}/gid_map", f"{inside_gid} {own_id} 1")
                os.write(mapped_w, b"m")
        except OSError:
            pass  # (the child reads an EOF and says so)
        finally:
            os.close(unshared_r)
            os.close(mapped_w)

    _in_child(work, theirs, map_ids)
    theirs.close()
    ours.settimeout(5)
    try:
        data, fds = _receive(ours)
    finally:
        ours.close()
    if data != b"N":
        channel.send(data or b"X the namespace's maker exited")
        return
    reply = {"id": own_id if own_id is not None else 0, "slirp4netns": None}
    if slirp is not None:
        try:
            fds.append(slirp4netns.attach(slirp, fds[1], fds[0]))
        except OSError as exc:
            reply["slirp4netns"] = str(exc)
    try:
        _send(channel, b"N" + json.dumps(reply).encode(), fds)
    finally:
        for fd in fds:
            os.close(fd)


def _reap(_signum, _frame) -> None:
    """Every child that has exited (slirp4netns processes end with their namespaces)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _enter_base(channel: socket.socket, subordinate: int) -> int:
    """Into the base as its root; with `subordinate` ids delegated to the user, the server maps them as the
    base's ids 1..subordinate (newuidmap and newgidmap: setuid helpers). How many it mapped (0: none)."""
    if subordinate:
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        channel.send(b"M %d" % os.getpid())
        if channel.recv(16) == b"m":
            return subordinate
        _write("/proc/self/setgroups", "deny")  # (not mapped: the caller's own ids only)
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        return 0
    enter_user_namespace(0, 0, 0)
    return 0


def main(argv: list[str]) -> int:
    inside_uid, inside_gid, fd = (int(a) for a in argv[1:4])
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGCHLD, _reap)  # (not SIG_IGN: slirp4netns would inherit it, and waits for its own)
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fd)
    try:
        subordinate = _enter_base(channel, int(argv[4]) if len(argv) > 4 else 0)
    except OSError as exc:
        channel.send(b"X " + os.fsencode(str(exc)))
        return 1
    ids = itertools.cycle(range(1, subordinate + 1)) if subordinate else None
    _probe(channel)
    while True:
        try:
            request = channel.recv(4096)
        except OSError:
            return 0
        if not request:
            return 0
        if request.startswith(b"N"):
            doc = json.loads(request[1:])
            _network(channel, [int(p) for p in doc["ports"]], doc.get("slirp4netns"), inside_uid, inside_gid,
                     next(ids) if ids is not None else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
