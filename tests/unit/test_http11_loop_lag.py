"""No single hostile request may stall the event loop: measured in-process, with the client in another process."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time

import pytest

from lambdalet.http11 import HttpServer

# Each client sends one hostile request and reads the answer. Built in the client process, so that
# building them costs this process (the server's) nothing.
CLIENTS = {
    "64 MB header line": 'b"GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Big: " + b"a" * (64 << 20) + b"\\r\\n\\r\\n"',
    "200,000 headers": 'b"GET / HTTP/1.1\\r\\n" + b"".join(b"X-R: %d\\r\\n" % i for i in range(200_000)) + b"\\r\\n"',
    "6 MB body of 1-byte chunks": ('b"POST / HTTP/1.1\\r\\nHost: x\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"'
                                   ' + b"1\\r\\nx\\r\\n" * 1_000_000 + b"0\\r\\n\\r\\n"'),
    "pipelined flood": 'b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" * 100_000',
}
CLIENT = """
import socket, sys
data = {payload}
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while s.recv(1 << 16):
        pass
except OSError:
    pass
"""


async def _max_lag_while(port: int, payload: str) -> tuple[float, float]:
    """(wall, cpu): the longest gap between two wakeups of a 1 ms sleeper, in wall time and in the
    loop thread's CPU time. The CPU figure is what the server's own callbacks cost; the wall one
    also counts time the machine gave to other processes."""
    proc = subprocess.Popen([sys.executable, "-c", CLIENT.format(payload=payload), str(port)])
    wall = cpu = 0.0
    try:
        while proc.poll() is None:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            wall = max(wall, time.perf_counter() - t - 0.001)
            cpu = max(cpu, time.thread_time() - c)
    finally:
        proc.kill()
        proc.wait()
    return wall, cpu


@pytest.mark.parametrize("attack", list(CLIENTS))
def test_event_loop_stays_responsive(attack: str) -> None:
    async def handler(req, resp) -> None:
        body = await req.read(16 << 20)
        resp.send(200, b"%d" % len(body))

    async def main() -> tuple[float, float]:
        server = HttpServer(handler)
        _, port = await server.listen("127.0.0.1", 0)
        try:
            return await _max_lag_while(port, CLIENTS[attack])
        finally:
            server.close()

    gc.freeze()  # (a full collection would scan the whole test runner's heap: its cost is not the server's)
    try:
        wall, cpu = asyncio.run(main())
    finally:
        gc.unfreeze()
    print(f"{attack}: worst event-loop lag {wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU")
    # Before: the header line stalled the loop for 8.8 s, the headers for 2.4 s, a 256 KB read of
    # 1-byte chunks for ~29 ms, a 256 KB read of pipelined requests ~150 ms. Now a few ms.
    assert cpu < 0.010, f"{attack}: {cpu * 1000:.1f} ms of CPU between two wakeups"
