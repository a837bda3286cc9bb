"""environment/netns.py in-process, as root: the pool, sockets inside a namespace, and nothing left over."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import sys

import pytest

from lambdalet.environment import netns

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                                reason="network namespaces need root on Linux")


def _netns_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
        except OSError:
            continue
    return count


class _Served:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def close(self) -> None:
        self.sock.close()


async def _serve(sock: socket.socket) -> _Served:
    return _Served(sock)


async def _pool_full(pool: netns.NetNamespaces) -> None:
    for _ in range(500):
        if len(pool._ready) >= netns.POOL_SIZE:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pool never filled")


def test_a_namespace_from_the_pool_is_reachable_from_inside_only():
    async def main() -> None:
        before = _netns_fds()
        pool = netns.NetNamespaces()
        assert pool.start("auto", 9876, _serve).startswith("network namespaces on")
        await _pool_full(pool)
        a, b = await pool.take(), await pool.take()
        listener = a.listen("127.0.0.1", 9001)
        with a.entered():
            inside = socket.create_connection(("127.0.0.1", 9001), timeout=2)
            child = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True)
        assert child.stdout.strip() == os.readlink(f"/proc/self/fd/{a.fd}")
        assert child.stdout.strip() != os.readlink("/proc/self/ns/net")  # (the thread came back out)
        conn, _ = listener.accept()
        conn.close()
        inside.close()
        with b.entered(), socket.socket() as other:  # another namespace's 9001 is not this one's
            assert other.connect_ex(("127.0.0.1", 9001)) == 0
            assert select.select([listener], [], [], 0.05)[0] == []
        with socket.socket() as host:  # nor is the host's (whatever may listen there)
            host.settimeout(1)
            host.connect_ex(("127.0.0.1", 9001))
            assert select.select([listener], [], [], 0.05)[0] == []
        listener.close()
        await _pool_full(pool)  # refilled
        a.close()
        b.close()
        pool.close()
        assert _netns_fds() == before

    asyncio.run(main())


def test_lambdalets_api_is_served_inside_every_namespace_taken():
    async def main() -> None:
        served: list[_Served] = []

        async def serve(sock: socket.socket) -> _Served:
            served.append(_Served(sock))
            return served[-1]

        pool = netns.NetNamespaces()
        pool.start("auto", 9876, serve)
        ns = await pool.take()
        assert len(served) == 1 and served[0].sock.getsockname() == ("127.0.0.1", 9876)
        with ns.entered(), socket.create_connection(("127.0.0.1", 9876), timeout=2):
            pass
        ns.close()
        assert served[0].sock.fileno() == -1  # closed with the namespace
        pool.close()

    asyncio.run(main())


def test_isolation_none_is_off_and_strict_starts_here_unless_the_api_is_on_9001():
    async def main() -> None:
        pool = netns.NetNamespaces()
        assert pool.start("none", 9876, _serve) == "network isolation off (--isolation none)"
        assert not pool.enabled
        assert pool.start("strict", 9876, _serve).startswith("network namespaces on")
        assert pool.enabled
        pool.close()
        assert not pool.enabled
        # lambdalet's API cannot be served inside on the Runtime API's port
        assert "the API's port is 9001" in pool.start("auto", 9001, _serve) and not pool.enabled
        with pytest.raises(netns.IsolationUnavailable):
            pool.start("strict", 9001, _serve)

    asyncio.run(main())
