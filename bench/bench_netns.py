"""Network namespaces (environment/netns.py): what one costs, and what they add to a cold start.

1. In-process, as root: creating a namespace in a thread (unshare, loopback up, 127.0.0.1:9001 and the
   API's port bound), with and without its veth pair (environment/veth.py); closing one; setns() into one and back (the
   exec path's cost per spawn); take() on the event loop when the pool is ready.
2. Cold starts through two `lambdalet serve` processes, `--isolation auto` and `--isolation none`,
   alternating (config change + invoke, the caller's view), forked from the fork server and exec'd.

    .venv/bin/python bench/bench_netns.py [--rounds 30] [--cold 20] [--cold-only]
    (run by an unprivileged user, --cold-only: the same for the sandbox of user namespaces)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from bench_python_runtime import ServedCold, alternate_cold_starts
from common import summary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdalet.environment import netns  # noqa: E402


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} ms, p90 {sorted(values)[int(len(values) * 0.9)]:.3f} ms"


def create_costs(rounds: int) -> None:
    pool = netns.NetNamespaces()
    pool._host_fd = netns._thread_netns()
    pool._services = [(9000, None)]
    for label, ip in (("loopback only", None), ("with a veth pair", True)):
        pool._veths = netns.Veths(pool._host_fd) if ip else None
        made: list[netns.NetNamespace] = []
        times: list[float] = []

        def work() -> None:
            for _ in range(rounds):
                start = time.perf_counter()
                made.append(pool._create())  # noqa: B023
                times.append((time.perf_counter() - start) * 1000)  # noqa: B023
            netns._setns(pool._host_fd)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        print(f"create a namespace, {label}: {_ms(times)}")
        if label == "loopback only":
            ns = made[0]
            start = time.perf_counter()
            for _ in range(1000):
                with ns.entered():
                    pass
            print(f"setns() in and out of one (the exec path, per spawn): "
                  f"{(time.perf_counter() - start) * 1000:.3f} us")
        closes = []
        for ns in made:
            start = time.perf_counter()
            ns.close()
            closes.append((time.perf_counter() - start) * 1000)
        print(f"close one, {label}: {_ms(closes)}")


async def take_cost(rounds: int) -> None:
    class Served:
        def close(self) -> None:
            pass

    async def serve(sock):
        sock.close()
        return Served()

    pool = netns.NetNamespaces()
    print("start-up probe:", pool.start("auto", 9000, serve))
    times = []
    for _ in range(rounds):
        while len(pool._ready) < netns.POOL_SIZE:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        ns = await pool.take()
        times.append((time.perf_counter() - start) * 1000)
        ns.close()
    pool.close()
    print(f"take() from a ready pool, on the event loop: {_ms(times)}")


def cold(runtime: str, rounds: int) -> None:
    for fork in (True, False):
        kind = "fork server" if fork else "exec (LAMBDALET_FORK_SERVER=0)"
        times = alternate_cold_starts({"none": ServedCold(runtime, fork, "none"),
                                       "auto": ServedCold(runtime, fork, "auto")}, rounds)
        for name in times:
            summary(f"cold start, {kind}, --isolation {name}", times[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--cold-only", action="store_true", help="only part 2")
    args = parser.parse_args()
    if not args.cold_only:
        if os.geteuid() != 0:
            print("part 1 needs root (without root, --cold-only compares the sandbox of user namespaces)")
            return
        create_costs(args.rounds)
        asyncio.run(take_cost(args.rounds))
    cold(args.runtime, args.cold)


if __name__ == "__main__":
    main()
