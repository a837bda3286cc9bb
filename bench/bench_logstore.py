"""The log store's cost on the warm invoke path: LogStore.append plus its share of LogStore.flush.

Each simulated invoke appends what a warm invoke of a quiet function writes (START, END and REPORT
lines) to one of `streams` streams in turn, or more lines for a function that prints; the store is
flushed after every `per_flush` invokes, as its 50 ms timer does under load (1,600 invokes/s x 50 ms =
80 invokes a flush). The appends run inside an event loop, as in the server (so the flush timer is
armed and cancelled as there), and the CPU counted is the calling thread's (time.thread_time: what the
event loop's thread spends; the WAL checkpointer thread is not counted), on a file database in a
temporary directory. The best of --repeat runs is printed, since the machine is shared.

    python bench/bench_logstore.py [--invokes 24000] [--repeat 5] [--src /work/main/src]

--src runs another source tree's LogStore (e.g. the code before a change) for a side-by-side figure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

SCENARIOS = [  # (label, streams, invokes per flush, extra lines per invoke)
    ("load: 8 streams, 80 invokes a flush", 8, 80, 0),
    ("less load: 8 streams, 30 invokes a flush", 8, 30, 0),
    ("load, printing 20 lines an invoke", 8, 80, 20),
    ("light: 1 stream, 1 invoke a flush", 1, 1, 0),
    ("flush at 2,000 events: 1 stream", 1, 666, 0),
]


def invoke_lines(extra: int) -> list[str]:
    """One warm invoke's log events, as the environment emits them."""
    rid = str(uuid.uuid4())
    lines = [f"START RequestId: {rid} Version: $LATEST\n"]
    lines += [f"{time.strftime('%Y-%m-%dT%H:%M:%S')}.123Z\t{rid}\tINFO\tline {n} of the handler's output\n"
              for n in range(extra)]
    lines.append(f"END RequestId: {rid}\n")
    lines.append(f"REPORT RequestId: {rid}\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t"
                 "Max Memory Used: 31 MB\t\n")
    return lines


async def run(store, streams: int, per_flush: int, extra: int, invokes: int) -> float:
    """Thread CPU seconds spent appending `invokes` invokes' lines and flushing them."""
    names = [f"2026/12/01/[$LATEST]{uuid.uuid4().hex}" for _ in range(streams)]
    group = f"/aws/lambda/bench-{uuid.uuid4().hex[:8]}"
    batches = [invoke_lines(extra) for _ in range(64)]  # made beforehand: their cost is not the store's
    store.append(group, names[0], "warm-up\n", int(time.time() * 1000))
    store.flush()
    append, flush = store.append, store.flush
    started = time.thread_time()
    for n in range(invokes):
        stream = names[n % streams]
        ts = int(time.time() * 1000)
        for line in batches[n & 63]:
            append(group, stream, line, ts)
        if n % per_flush == per_flush - 1:
            flush()
    flush()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invokes", type=int, default=24000, help="invokes per scenario and run (default 24000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per scenario; the best is printed (default 5)")
    parser.add_argument("--src", help="import lambdalet from this source tree instead of the installed one")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, str(Path(args.src).resolve()))
    import lambdalet
    from lambdalet.store import LogStore, connect
    print(f"lambdalet from {Path(lambdalet.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="lambdalet-bench-logs-") as tmp:
        store = LogStore(connect(str(Path(tmp) / "state.db")))
        try:
            for label, streams, per_flush, extra in SCENARIOS:
                invokes = args.invokes if per_flush > 1 else args.invokes // 8
                best = min(asyncio.run(run(store, streams, per_flush, extra, invokes)) for _ in range(args.repeat))
                events = invokes * (3 + extra)
                print(f"{label:42s} {best / events * 1e6:6.2f} µs per event, "
                      f"{best / invokes * 1e6:7.2f} µs per invoke of {3 + extra} events")
        finally:
            store.close()


if __name__ == "__main__":
    main()
