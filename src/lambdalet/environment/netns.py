"""A network namespace per execution environment, kept ready ahead of cold starts.

Each environment gets a network namespace of its own (Linux, as root): its loopback is its own, so
`127.0.0.1:9001` inside is that environment's Runtime API and nothing else's, served by lambdalet through a
listening socket created inside the namespace (a socket stays in the namespace it was created in). Nothing
outside can connect to it, and from inside neither the host's loopback services nor another environment's
Runtime API can be reached. lambdalet's own API is served inside every namespace too, on `127.0.0.1:<its
port>`, so the endpoint URL functions are given works unchanged.

Without root, the namespaces come from the user-namespace maker (environment/userns.py), each with a user
namespace of its own that its runtime joins: the server never enters them, its listening sockets are made
there by the maker.

Outbound access, by tier (detected at start-up, never required):
- ``veth``: a veth pair per namespace (environment/veth.py) with a default route to the host: functions
  reach the host's non-loopback addresses and, where the host forwards (ip_forward) and has nftables,
  beyond it through NAT (veth.masquerade()).
- ``slirp4netns`` (environment/slirp4netns.py; optional, detected): a user-mode TCP/IP stack per namespace,
  without root, or as root where veth pairs cannot reach beyond the host (no forwarding or no nft):
  functions reach the host's non-loopback addresses and beyond, never its loopback.
- ``none``: loopback only, where neither can be made; outbound access from functions is off (said at
  start-up).

Creating a namespace costs ~1 ms (~2 ms with its veth pair) of a thread's time: a pool thread keeps
POOL_SIZE of them ready, so a cold start takes one in microseconds and the event loop never waits for the
kernel. A namespace lives exactly as long as the file descriptors that hold it (its own, its sockets) and
the processes inside: nothing is mounted under /run/netns, so a server killed with kill -9 leaves none behind
(its processes are ended by environment/leftovers.py; a veth pair goes with its namespace).

A runtime joins its namespace either by being started from a thread that is in it (`entered()`, around a
spawn: the child inherits the thread's namespace) or by `setns(fd, CLONE_NEWNET)` with the namespace's
`fd` passed to it (the fork server's children: runtimes/python/lambdalet_runtime/fork_server.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import itertools
import logging
import os
import shutil
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from lambdalet.environment import slirp4netns
from lambdalet.environment.userns import USER_NAMESPACES
from lambdalet.environment.veth import Veths, link_up, masquerade

log = logging.getLogger("lambdalet.netns")

POOL_SIZE = 4  # namespaces kept ready ahead
REFILL_DELAY_S = 0.05  # a refill waits this long, so as not to compete with the cold start that took one
_VETH_NAMES = itertools.count(1)  # (a pair's name lingers while the kernel ends it: names are never reused)
RUNTIME_API_PORT = 9001
CLONE_NEWNET = 0x40000000


class IsolationUnavailable(RuntimeError):
    """--isolation strict, and this host cannot give environments network namespaces."""


class Closable(Protocol):
    def close(self) -> None: ...


Serve = Callable[[socket.socket], Awaitable[Closable]]


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns, libc.unshare  # noqa: B018  (both must exist)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _thread_netns() -> int:
    """An fd of the calling thread's network namespace."""
    try:
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # kernels before 3.17
        return os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except BaseException:
        sock.close()
        raise
    return sock


class NetNamespace:
    """One environment's network namespace (see the module's docstring)."""

    def __init__(self, fd: int, host_fd: int, userns_fd: int | None = None) -> None:
        self.fd = fd  # setns(fd, CLONE_NEWNET) joins it; pass it to a child that joins by itself
        self._host_fd = host_fd  # the server's namespace (not owned); -1: the server cannot enter this one
        self.userns_fd = userns_fd  # the user namespace that owns it (without root), for the runtime to join
        self.userns_id = 0  # the uid/gid of lambdalet's user namespace that is 993 in that one
        self._listeners: dict[tuple[str, int], socket.socket] = {}
        self._served: list[Closable] = []
        self._slirp_exit_fd: int | None = None  # closing it ends its slirp4netns (without root)
        self.closed = False

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Put the calling thread in the namespace for the block (~5 µs in and out): a process started
        in the block starts in it, a socket created in it stays in it."""
        if self._host_fd < 0:
            raise OSError("this network namespace is its own user namespace's: the server cannot enter it")
        _setns(self.fd)
        try:
            yield
        finally:
            _setns(self._host_fd)

    def listen(self, host: str, port: int) -> socket.socket:
        """A listening TCP socket on host:port inside the namespace (a dup, for the caller to close).

        The namespace keeps the port bound for its whole life, so nothing inside can take it between two
        runtimes that serve it."""
        sock = self._listeners.get((host, port))
        if sock is None:
            with self.entered():
                sock = _listener(host, port)
            self._listeners[(host, port)] = sock
        return sock.dup()

    def _prebind(self, host: str, port: int) -> None:
        """listen(), from a thread that is in the namespace already (the pool thread)."""
        self._listeners[(host, port)] = _listener(host, port)

    async def _serve(self, services: list[tuple[int, Serve]]) -> None:
        for port, serve in services:
            self._served.append(await serve(self.listen("127.0.0.1", port)))

    def close(self) -> None:
        """Stop serving in it and drop every reference this server holds: the kernel frees the namespace
        (and its veth pair) once the processes in it are gone too."""
        if self.closed:
            return
        self.closed = True
        for served in self._served:
            with contextlib.suppress(Exception):
                served.close()
        for sock in self._listeners.values():
            sock.close()
        self._listeners.clear()
        if self._slirp_exit_fd is not None:
            os.close(self._slirp_exit_fd)
        os.close(self.fd)
        if self.userns_fd is not None:
            os.close(self.userns_fd)


class NetNamespaces:
    """The namespaces of this server's environments: detection, the pool thread, and take()."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.enabled = False
        self.outbound = "none"  # "veth" | "slirp4netns" | "none"
        self._slirp: str | None = None  # the slirp4netns executable, while it works
        self._slirp_failed = False
        self._stops: str | None = None  # why veth pairs reach no further than the host, if they do not
        self.summary = "network isolation off"
        self._host_fd = -1
        self._services: list[tuple[int, Serve]] = []
        self._ready: collections.deque[NetNamespace] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[NetNamespace]] = collections.deque()
        self._wanted = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._veths: Veths | None = None
        self._error: OSError | None = None

    def start(self, isolation: str, api_port: int, serve_api: Serve) -> str:
        """Turn namespaces on as --isolation says (auto | strict | none): returns the start-up line's
        words for it; raises IsolationUnavailable in strict mode on a host that has none."""
        self.close()  # (a server started again in this process)
        self._reset()
        if isolation == "none":
            self.summary = "network isolation off (--isolation none)"
            return self.summary
        reason = self._unavailable()
        if reason is None and api_port == RUNTIME_API_PORT:
            reason = f"the API's port is {RUNTIME_API_PORT}, every environment's Runtime API port"
        if reason is None:
            self._loop = asyncio.get_running_loop()
            self._services = [(api_port, serve_api)]
            self._host_fd = _thread_netns()
            try:
                if USER_NAMESPACES.running:
                    self._slirp = shutil.which("slirp4netns")
                else:  # (slirp4netns only where veth pairs cannot reach beyond the host)
                    self._stops = masquerade()
                    self._slirp = shutil.which("slirp4netns") if self._stops is not None else None
                    if self._slirp is None:
                        self._veths = Veths(self._host_fd)
            except OSError as exc:
                log.warning("no veth pairs for network namespaces (%s): outbound access is off", exc)
            probe = threading.Event()
            self._thread = threading.Thread(target=self._fill, args=(probe,), name="lambdalet-netns", daemon=True)
            self._thread.start()
            probe.wait(10)
            if self._error is not None or not self._ready:
                reason = f"cannot create one: {self._error}"
                self.close()
        if reason is not None:
            if isolation == "strict":
                raise IsolationUnavailable(f"--isolation strict: no network namespaces here ({reason})")
            self.summary = f"network isolation off ({reason}): every Runtime API is on the host's loopback"
            return self.summary
        self.enabled = True
        if self.outbound == "veth":
            outbound = "via veth to the host " + ("and beyond (NAT: nft table ip lambdalet)" if self._stops is None
                                                  else f"only ({self._stops})")
        elif self.outbound == "slirp4netns":
            outbound = "through slirp4netns (user-mode networking): the host's non-loopback addresses and beyond"
        elif USER_NAMESPACES.running:
            outbound = ("off (without root: no veth pairs; slirp4netns " +
                        ("failed)" if self._slirp_failed else "is not installed)"))
        else:
            outbound = "off (no veth pairs" + ("; slirp4netns failed)" if self._slirp_failed else ")")
        self.summary = f"network namespaces on: 127.0.0.1:9001 per environment; outbound access {outbound}"
        return self.summary

    @staticmethod
    def _unavailable() -> str | None:
        if not sys.platform.startswith("linux") or _LIBC is None:
            return "not Linux"
        if os.geteuid() != 0 and not USER_NAMESPACES.running:
            return "needs root or user namespaces"
        if not os.path.exists("/proc/self/ns/net"):
            return "no network namespaces in this kernel"
        return None

    async def take(self) -> NetNamespace:
        """A ready namespace for one environment, with lambdalet's API served inside (OSError if the
        pool thread cannot make them any more)."""
        ns = self._ready.popleft() if self._ready else None
        if ns is None:
            if self._error is not None or self._closed:
                raise OSError(f"no network namespace: {self._error or 'shut down'}")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._want()
            ns = await waiter
        else:
            self._want()
        try:
            await ns._serve(self._services)
        except BaseException:
            ns.close()
            raise
        return ns

    def _want(self) -> None:
        with self._wanted:
            self._wanted.notify()

    def _fill(self, started: threading.Event) -> None:
        """The pool thread: keep POOL_SIZE namespaces ready (and hand new ones to waiting takers)."""
        try:
            while not self._closed:
                with self._wanted:
                    while not self._closed and len(self._ready) >= POOL_SIZE and not self._waiters:
                        self._wanted.wait()
                    if self._ready and not self._waiters and not self._closed:
                        self._wanted.wait(REFILL_DELAY_S)
                if self._closed:
                    break
                try:
                    ns = self._create()
                except OSError as exc:
                    log.error("cannot create a network namespace: %s", exc)
                    self._error = exc
                    self._wake()
                    break
                self._ready.append(ns)
                started.set()
                if self._waiters:
                    self._wake()
        finally:
            started.set()
            with contextlib.suppress(OSError):
                _setns(self._host_fd)

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is shutting down
            self._loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        """(On the event loop.) Ready namespaces to waiting takers; an error to all of them if need be."""
        while self._waiters and (self._ready or self._error is not None):
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            if self._ready:
                waiter.set_result(self._ready.popleft())
            else:
                waiter.set_exception(OSError(f"no network namespace: {self._error}"))
        if self._waiters:
            self._want()

    def _create(self) -> NetNamespace:
        """(In the pool thread.) A new namespace with loopback up and the known ports bound."""
        if USER_NAMESPACES.running:
            ports = [RUNTIME_API_PORT, *(port for port, _ in self._services)]
            made = USER_NAMESPACES.network(ports, self._slirp)
            ns = NetNamespace(made.netns_fd, -1, made.userns_fd)
            ns._listeners = {("127.0.0.1", sock.getsockname()[1]): sock for sock in made.listeners}
            ns._slirp_exit_fd, ns.userns_id = made.slirp_exit_fd, made.base_id
            if made.slirp_exit_fd is not None:
                self.outbound = "slirp4netns"
            elif made.slirp_error is not None:
                self._no_user_mode_network(made.slirp_error)
            return ns
        if _LIBC.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        ns = NetNamespace(_thread_netns(), self._host_fd)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as inet:
                link_up(inet, "lo")
            ns._prebind("127.0.0.1", RUNTIME_API_PORT)
            for port, _ in self._services:
                ns._prebind("127.0.0.1", port)
            if self._veths is not None:
                self._veth()
            elif self._slirp is not None:
                _setns(self._host_fd)  # (its host side must live in the host's namespace)
                try:
                    ns._slirp_exit_fd = slirp4netns.attach(self._slirp, ns.fd)
                    self.outbound = "slirp4netns"
                except OSError as exc:
                    self._no_user_mode_network(str(exc))
        except BaseException:
            ns.close()
            raise
        return ns

    def _no_user_mode_network(self, reason: str) -> None:
        """(In the pool thread.) slirp4netns failed: this namespace and those after it go without."""
        log.warning("no user-mode network for network namespaces (%s): outbound access is off", reason)
        self._slirp, self._slirp_failed = None, True

    def _veth(self) -> None:
        """(In the pool thread, in the new namespace.) A veth pair from it to the host, with a default route
        through it; on failure, this namespace and those after it go without."""
        host_if = f"llet{os.getpid() % 100000}x{next(_VETH_NAMES) % 100000}"
        try:
            self._veths.link(host_if)
        except OSError as exc:
            log.warning("no veth pair for network namespaces (%s): outbound access is off", exc)
            self._veths.close()
            self._veths = None
            return
        self.outbound = "veth"

    def close(self) -> None:
        """End the pool and every namespace it still holds (server shutdown); taken ones end with their
        environments."""
        self._closed = True
        self.enabled = False
        self._want()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None
        while self._ready:
            self._ready.popleft().close()
        if self._veths is not None:
            self._veths.close()
            self._veths = None
        if self._host_fd >= 0:
            os.close(self._host_fd)
            self._host_fd = -1


NAMESPACES = NetNamespaces()
