"""Instructions per warm invoke of `lambdalet serve`, counted by valgrind's callgrind (deterministic A/B).

The server runs under `valgrind --tool=callgrind --instr-atstart=no`; after the function is created and
warmed, instrumentation is switched on, counters zeroed, N warm invokes are driven over `--conns`
keep-alive connections, and the counters dumped: the server process's instructions (all its threads;
not the runtimes, which valgrind does not follow) divided by N.

    python bench/callgrind_warm.py [--src DIR] [--invokes 500] [--conns 8] [--out FILE]

Not the CPU of a real run: under valgrind the server is ~50x slower, so the log store's 50 ms flush
is shared by a few invokes instead of hundreds (its share is overstated), and the window's invokes
batch differently. For A/B comparisons of the same path, not absolute figures.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_warm_path import INVOKE_PATH, create_function
from common import free_port


def invokes(port: int, n: int, conns: int) -> None:
    def one(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(count):
            conn.request("POST", INVOKE_PATH, b"{}", {"Content-Type": "application/json"})
            body = conn.getresponse().read()
            assert b'"ok"' in body, body
        conn.close()

    threads = [threading.Thread(target=one, args=(n // conns + (i < n % conns),)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", help="run the server from this source tree (PYTHONPATH)")
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--out", help="keep the callgrind file here (for callgrind_annotate)")
    parser.add_argument("--serve-arg", action="append", default=[])
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="cg-warm-")
    out = args.out or os.path.join(work, "callgrind.out")
    for stale in (out, out + ".1"):
        if os.path.exists(stale):
            os.remove(stale)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.path.abspath(args.src)
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            sys.executable, "-m", "lambdalet.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", os.path.join(work, "data"), *args.serve_arg]
    log_path = os.path.join(work, "serve.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lambdalet/health", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(Path(log_path).read_text(errors="replace")[-3000:]) from None
                time.sleep(0.2)
        create_function(port)
        invokes(port, max(4 * args.conns, 40), args.conns)  # cold starts, one per connection
        control(proc.pid, "-i", "on")
        invokes(port, 100, args.conns)  # warm, instrumented (translations made)
        time.sleep(0.3)
        control(proc.pid, "-z")
        start = time.perf_counter()
        invokes(port, args.invokes, args.conns)
        time.sleep(0.2)  # the batched log flush (50 ms) belongs to these invokes
        control(proc.pid, "-d")
        wall = time.perf_counter() - start
        with open(out + ".1") as f:  # the dump of the window ("summary:" = all its threads' instructions)
            total = int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", out + ".1"], capture_output=True,
                                   text=True).stdout
        m = re.search(r"^\s*([\d,]+) .*:__pyx_f_6uvloop_4loop___uv_stream_on_read ", annotated, re.M)
        reads = int(m.group(1).replace(",", "")) if m else 0
        print(f"{args.src or 'installed'}: {total / args.invokes:,.0f} instructions per warm invoke, "
              f"{reads / args.invokes:,.0f} of them in socket reads (the invoke path; the rest: timers such as "
              "the log flush, and tasks) "
              f"({args.invokes} invokes, {args.conns} conns, {wall:.1f} s)" + (f" -> {out}.1" if args.out else ""))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
