"""The warm invoke path of `lambdalet serve`: server CPU per invoke, latency and throughput, against AWS's RIE.

Measured side by side in one run, with a built-in `python3.11` function whose handler returns a small dict:

1. Server CPU per warm invoke with 8 keep-alive connections: wrk (-c 8 -t 2, payload `{}`) drives
   POST /2015-03-31/functions/<name>/invocations; the server process's own utime+stime (from
   /proc/<pid>/stat, all its threads) over the run, divided by the invokes wrk completed. The runtime
   processes (children of the server, or of its fork server) are accounted separately.
2. Warm p50/p99 at one connection (an http.client keep-alive loop), lambdalet serve vs the AWS Runtime
   Interface Emulator + awslambdaric on the same interpreter, invokes alternating one by one.
3. Throughput: lambdalet with 8 connections vs the RIE's maximum, one connection (the RIE serves one
   invoke at a time: a concurrent connection is reset and the emulator exits).

Runs of 1 and 3 alternate in --rounds rounds, so that background load on the machine hits both alike.
awslambdaric and the RIE binary (inside the aws-sam-cli wheel) are installed in a throwaway venv under
/tmp (bench/common.py: prepare_tools). Without wrk, a Python load generator runs in a separate process
instead: it spends ~200-400 us of CPU per request itself (wrk: ~40-50), on the same cores, so the figures are
less precise.

    python bench/bench_warm_path.py [--duration 12] [--rounds 2] [--invokes 3000] [--quick]
    python bench/bench_warm_path.py --serve-arg=--isolation=none   # the same, with a serve argument
    python bench/bench_warm_path.py --profile /tmp/serve.prof    # part 1 only, server under cProfile
    python bench/bench_warm_path.py --strace                     # part 1 only, + syscalls per invoke

Everything talks to 127.0.0.1 only; every process started here is ended on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    CLK_TCK,
    Invoker,
    ProcInfo,
    base_env,
    cmdline,
    descendants,
    free_port,
    machine_ticks,
    percentile,
    prepare_tools,
    process_table,
    read_proc,
    start_rie,
    zip_files,
)

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = "python3.11"
FUNCTION = "warm"
APP = (
    "import sys\n\n\n"
    "def handler(event, context):\n"
    "    if event.get('which'):\n"
    "        return {'ok': True, 'python': sys.executable, 'version': sys.version.split()[0]}\n"
    "    return {'ok': True, 'n': 1}\n"
)
PAYLOAD = b"{}"
INVOKE_PATH = f"/2015-03-31/functions/{FUNCTION}/invocations"
RIE_PATH = "/2015-03-31/functions/function/invocations"
WRK_LUA = """\
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    latency.mean))
end
"""


# ---------------------------------------------------------------- processes started here

class Procs:
    """Every process this run starts, with the trees below them: all ended by stop_all()."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        # root pid -> {pid: start time} of every descendant ever seen below that root: stopping one
        # process (the RIE) ends what was below it, never what is below another (the server's runtimes)
        self.seen: dict[int, dict[int, int]] = {}

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def remember_trees(self) -> None:
        table = process_table()
        for proc in self.procs:
            if proc.poll() is None:
                tree = self.seen.setdefault(proc.pid, {})
                for info in descendants(proc.pid, table).values():
                    tree[info.pid] = info.start

    def stop(self, proc: subprocess.Popen, grace: float = 8.0) -> None:
        """SIGTERM (the server then ends its environments), SIGKILL after grace; then leftovers below it."""
        if proc.poll() is None:
            self.remember_trees()
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        self._kill_leftovers(proc.pid)

    def _kill_leftovers(self, root: int | None = None) -> None:
        for top in [root] if root is not None else list(self.seen):
            tree = self.seen.get(top, {})
            for pid, start in list(tree.items()):
                info = read_proc(pid)
                if info is not None and info.start == start:  # the same process, not a reused pid
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                if info is None or info.start == start:
                    tree.pop(pid, None)
            if not tree:
                self.seen.pop(top, None)

    def stop_all(self) -> None:
        self.remember_trees()
        for proc in reversed(list(self.procs)):
            self.stop(proc)
        self._kill_leftovers()


def _interrupt(signum, frame):  # SIGTERM / SIGHUP: clean up as on Ctrl-C
    raise KeyboardInterrupt


# ---------------------------------------------------------------- lambdalet serve

@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    data_dir: str
    log_path: str


def start_server(procs: Procs, work: str, src: str | None, profile: str | None,
                 python: str | None = None, extra: tuple[str, ...] = ()) -> Server:
    data_dir = os.path.join(work, "data")
    log_path = os.path.join(work, "serve.log")
    port = free_port()
    env = dict(os.environ)
    python = python or sys.executable
    beside = Path(sys.executable).parent / "lambdalet"
    if profile:
        head = [python, "-m", "cProfile", "-o", profile, "-m", "lambdalet.cli"]
    elif src is None and python == sys.executable and beside.exists():
        head = [str(beside)]  # the real CLI of the venv
    else:
        head = [python, "-m", "lambdalet.cli"]
    if src is not None:
        env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + env.get("PYTHONPATH", "")
        where = subprocess.run([python, "-c", "import lambdalet; print(lambdalet.__file__)"], env=env,
                               capture_output=True, text=True, cwd=work).stdout.strip()
        if not where.startswith(os.path.abspath(src)):
            raise SystemExit(f"--src {src}: lambdalet would be imported from {where or '?'}")
    argv = [*head, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data_dir, *extra]
    with open(log_path, "wb") as log:
        proc = procs.start(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           cwd=work)
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/lambdalet/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"lambdalet serve did not start; its log ({log_path}):\n"
                             + Path(log_path).read_text(errors="replace")[-3000:])
        time.sleep(0.05)
    return Server(proc, port, data_dir, log_path)


def create_function(port: int) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=Config(retries={"max_attempts": 1}))
    client.create_function(FunctionName=FUNCTION, Runtime=RUNTIME, Handler="app.handler",
                           Role="arn:aws:iam::123456789012:role/bench", Code={"ZipFile": zip_files({"app.py": APP})})


def which_python(invoker: Invoker) -> tuple[str, str]:
    doc = json.loads(invoker.call(b'{"which": 1}'))
    return doc["python"], doc["version"]


# ---------------------------------------------------------------- load runs and CPU accounting

@dataclass
class LoadRun:
    label: str
    conns: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    target_ticks: int = 0  # the server's (or the RIE's) own CPU
    target_stime: int = 0  # its kernel-mode part
    tree_ticks: dict[str, int] = field(default_factory=dict)  # per process below it, by label
    client_s: float = 0.0  # the load generator's CPU
    machine_busy_ticks: int = 0
    machine_total_ticks: int = 0
    machine_steal_ticks: int = 0  # of the busy ticks: the hypervisor running something else
    gone: int = 0  # processes below the target that ended during the run (their CPU is missed)
    cold_starts: int | None = None  # "cold start:" lines the server logged during the run

    @property
    def ok(self) -> int:
        return self.requests - self.errors

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def per_invoke_us(self, ticks: int) -> float:
        return ticks / CLK_TCK / max(self.ok, 1) * 1e6


def _tree_labels(root: int, tree: dict[int, ProcInfo]) -> dict[int, str]:
    """'fork server', 'runtime (forked)', 'runtime (exec)' or 'other: <name>', per pid below root."""
    labels = {}
    for pid, info in tree.items():
        args = cmdline(pid)
        if "--fork-server" in args:
            labels[pid] = "fork server" if info.ppid == root else "runtime (forked)"
        elif "bootstrap.py" in args or "awslambdaric" in args:
            labels[pid] = "runtime (exec)"
        else:
            words = [w for w in args.split() if not w.startswith("-")]
            script = next((os.path.basename(w) for w in words[1:] if w.endswith(".py")), info.comm)
            labels[pid] = f"other: {script}"
    return labels


def _is_runtime(label: str) -> bool:
    return not label.startswith("other: ")


def _steal_ticks() -> int:
    with open("/proc/stat") as f:
        parts = f.readline().split()
    return int(parts[8]) if len(parts) > 8 else 0


def _cold_starts(log_path: str | None) -> int:
    if log_path is None or not os.path.exists(log_path):
        return 0
    with open(log_path, "rb") as f:
        return f.read().count(b"cold start:")


def run_load(label: str, target: int, port: int, path: str, conns: int, threads: int, seconds: int,
             procs: Procs, work: str, use_wrk: bool, log_path: str | None = None) -> LoadRun:
    """Drive target's port for `seconds` with `conns` keep-alive connections; account CPU from /proc."""
    result = LoadRun(label, conns)
    colds = _cold_starts(log_path)
    before_target = read_proc(target)
    before_tree = descendants(target)
    busy0, total0 = machine_ticks()
    steal0 = _steal_ticks()
    url = f"http://127.0.0.1:{port}{path}"
    if use_wrk:
        script = os.path.join(work, "invoke.lua")
        Path(script).write_text(WRK_LUA)
        argv = ["wrk", "-t", str(min(threads, conns)), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
                "-s", script, url]
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--loadgen", str(port), path, str(conns), str(seconds)]
    proc = procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    procs.procs.remove(proc)
    time.sleep(0.15)  # the server's batched log flush (50 ms) belongs to these invokes
    busy1, total1 = machine_ticks()
    result.machine_steal_ticks = _steal_ticks() - steal0
    after_target = read_proc(target)
    after_tree = descendants(target)
    procs.remember_trees()
    if before_target is None or after_target is None:
        raise SystemExit(f"{label}: the process under test ({target}) is gone")
    result.target_ticks = after_target.cpu_ticks - before_target.cpu_ticks
    result.target_stime = after_target.stime - before_target.stime
    labels = _tree_labels(target, after_tree)
    for pid, info in after_tree.items():
        base = before_tree[pid].cpu_ticks if pid in before_tree and before_tree[pid].start == info.start else 0
        result.tree_ticks[labels[pid]] = result.tree_ticks.get(labels[pid], 0) + info.cpu_ticks - base
    result.gone = sum(1 for pid in before_tree if pid not in after_tree)
    if log_path is not None:
        result.cold_starts = _cold_starts(log_path) - colds
    result.client_s = usage.ru_utime + usage.ru_stime
    result.machine_busy_ticks, result.machine_total_ticks = busy1 - busy0, total1 - total0
    if use_wrk:
        m = re.search(r"^WRK_RESULT (.*)$", out, re.M)
        if m is None:
            raise SystemExit(f"{label}: wrk failed (exit {proc.returncode}):\n{out[-2000:]}")
        n, dur, e_conn, e_read, e_write, e_status, e_timeout, p50, p99, _mean = (float(x) for x in m.group(1).split())
        result.requests, result.seconds = int(n), dur / 1e6
        result.errors = int(e_status)
        result.p50_us, result.p99_us = p50, p99
        socket_errors = int(e_conn + e_read + e_write + e_timeout)
        if socket_errors:
            print(f"  ({label}: wrk socket errors: connect {int(e_conn)} read {int(e_read)} write {int(e_write)} "
                  f"timeout {int(e_timeout)})")
    else:
        m = re.search(r"^LOADGEN_RESULT (.*)$", out, re.M)
        if m is None:
            raise SystemExit(f"{label}: the load generator failed (exit {proc.returncode}):\n{out[-2000:]}")
        doc = json.loads(m.group(1))
        result.requests, result.errors, result.seconds = doc["requests"], doc["errors"], doc["seconds"]
        result.p50_us, result.p99_us = doc["p50_us"], doc["p99_us"]
    if result.errors:
        print(f"  ({label}: {result.errors} non-2xx responses, not counted as invokes)")
    return result


def merge(runs: list[LoadRun]) -> LoadRun:
    out = LoadRun(runs[0].label, runs[0].conns)
    for r in runs:
        out.requests += r.requests
        out.errors += r.errors
        out.seconds += r.seconds
        out.target_ticks += r.target_ticks
        out.target_stime += r.target_stime
        for k, v in r.tree_ticks.items():
            out.tree_ticks[k] = out.tree_ticks.get(k, 0) + v
        out.client_s += r.client_s
        out.machine_busy_ticks += r.machine_busy_ticks
        out.machine_total_ticks += r.machine_total_ticks
        out.machine_steal_ticks += r.machine_steal_ticks
        out.gone += r.gone
        if r.cold_starts is not None:
            out.cold_starts = (out.cold_starts or 0) + r.cold_starts
    out.p50_us = statistics.median(r.p50_us for r in runs)
    out.p99_us = max(r.p99_us for r in runs)
    return out


def describe(run: LoadRun, target_name: str) -> None:
    us = run.per_invoke_us
    runtimes = sum(v for k, v in run.tree_ticks.items() if _is_runtime(k))
    others = sum(v for k, v in run.tree_ticks.items() if not _is_runtime(k))
    print(f"  {run.label}: {run.ok} invokes in {run.seconds:.1f} s = {run.rate:,.0f}/s; "
          f"latency p50 {run.p50_us / 1000:.2f} ms p99 {run.p99_us / 1000:.2f} ms (load generator's view)")
    print(f"    CPU per invoke: {target_name} {us(run.target_ticks):6.1f} us ({us(run.target_stime):.0f} of it in the "
          f"kernel) | runtime processes "
          f"{us(runtimes):6.1f} us | load generator {run.client_s / max(run.ok, 1) * 1e6:6.1f} us")
    for name, ticks in sorted(run.tree_ticks.items(), key=lambda kv: -kv[1]):
        print(f"      {name:<28} {us(ticks):6.1f} us/invoke  ({ticks / CLK_TCK:.2f} s CPU)")
    if run.cold_starts:
        print(f"    {run.cold_starts} cold starts during the run (not all invokes were warm)")
    if run.machine_total_ticks:
        ours = run.target_ticks + runtimes + others + run.client_s * CLK_TCK
        cores = os.cpu_count() or 1
        print(f"    machine: {100 * run.machine_busy_ticks / run.machine_total_ticks:.0f}% of {cores} cores busy "
              f"({100 * run.machine_steal_ticks / run.machine_total_ticks:.0f}% stolen by the hypervisor); "
              f"other processes ~{max(0.0, run.machine_busy_ticks - ours) / CLK_TCK / max(run.seconds, 1e-9):.2f} "
              f"cores")
    if run.gone:
        print(f"    ({run.gone} processes below it ended during the run: their CPU is not counted)")


# ---------------------------------------------------------------- part 2: latency at one connection

def latencies(invokers: dict[str, Invoker], count: int, warmup: int = 50) -> dict[str, list[float]]:
    for _ in range(warmup):
        for inv in invokers.values():
            inv.once()
    times: dict[str, list[float]] = {name: [] for name in invokers}
    for _ in range(count):
        for name, inv in invokers.items():
            times[name].append(inv.once() * 1e6)
    return times


def lat_row(name: str, us: list[float]) -> dict[str, float]:
    row = {"p50": percentile(us, 50), "p90": percentile(us, 90), "p99": percentile(us, 99),
           "mean": statistics.fmean(us)}
    print(f"  {name:<36} p50 {row['p50']:7.0f} us   p90 {row['p90']:7.0f} us   p99 {row['p99']:7.0f} us   "
          f"mean {row['mean']:7.0f} us   (n={len(us)})")
    return row


# ---------------------------------------------------------------- strace (optional)

def strace_during(pids: dict[str, list[int]], run, work: str, procs: Procs) -> dict[str, tuple[int, dict]]:
    """Attach `strace -c` to each group of thread ids while run() drives load; syscall counts per group."""
    tracers = {}
    for name, tids in pids.items():
        out = os.path.join(work, f"strace-{name.replace(' ', '_')}.txt")
        argv = ["strace", "-c", "-o", out]
        for tid in tids:
            argv += ["-p", str(tid)]
        tracers[name] = (procs.start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)
    time.sleep(1.0)  # attached
    result = run()
    for proc, _ in tracers.values():
        proc.send_signal(signal.SIGINT)
    counts = {}
    for name, (proc, out) in tracers.items():
        proc.wait(10)
        procs.procs.remove(proc)
        calls: dict[str, int] = {}
        total = 0
        for line in Path(out).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                n = int(parts[3])
                calls[parts[-1]] = n
                total += n
        counts[name] = (total, calls)
    return result, counts


# ---------------------------------------------------------------- Python load generator (no wrk)

def loadgen(port: int, path: str, conns: int, seconds: float) -> None:
    """`--loadgen`: `conns` keep-alive connections posting {} in a loop; prints LOADGEN_RESULT <json>."""
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(PAYLOAD)}\r\n\r\n").encode() + PAYLOAD
    lat: list[float] = []
    counts = {"requests": 0, "errors": 0}

    async def one(stop: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        while loop.time() < stop:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            lat.append((time.perf_counter() - t) * 1e6)
            counts["requests"] += 1
            if not head.startswith(b"HTTP/1.1 2"):
                counts["errors"] += 1
        writer.close()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(one(start + seconds) for _ in range(conns)))
        return loop.time() - start

    elapsed = asyncio.run(main())
    print("LOADGEN_RESULT " + json.dumps({**counts, "seconds": elapsed, "p50_us": percentile(lat, 50) if lat else 0,
                                          "p99_us": percentile(lat, 99) if lat else 0}), flush=True)


# ---------------------------------------------------------------- main

def cpu_identity() -> str:
    """What the cores are (figures from machines of other kinds are not comparable): model, family/model, MHz."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if not sep:
                break  # the first processor only
            info.setdefault(key.strip(), value.strip())
    return (f"{info.get('model name', '?')}, family {info.get('cpu family', '?')} model {info.get('model', '?')}, "
            f"{float(info.get('cpu MHz', 0) or 0):.0f} MHz")


def python_speed(python: str) -> str:
    """A fixed CPU-bound loop on the server's interpreter: tells a slow machine or interpreter build at once."""
    code = "import timeit; print(min(timeit.repeat('sum(range(1000))', number=2000, repeat=5)) / 2000 * 1e6)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()
    return f"{float(out):.1f} µs" if out else "?"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "git state unknown"
    return f"commit {head}, " + (f"{len(dirty)} uncommitted changes under src/" if dirty else "src/ clean")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds of 8-connection load on lambdalet, over all rounds (default 12); the RIE "
                             "gets half as long at 1 connection, lambdalet at 1 connection a quarter")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of parts 1 and 3 (default 2)")
    parser.add_argument("--invokes", type=int, default=3000, help="invokes per target in part 2 (default 3000)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="--duration 4 --rounds 1 --invokes 800")
    parser.add_argument("--src", help="run the server from this source tree (PYTHONPATH) instead of the installed one")
    parser.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for `lambdalet serve` (repeatable), e.g. --serve-arg=--isolation=none")
    parser.add_argument("--server-python", metavar="PYTHON",
                        help="run the server as PYTHON -m lambdalet.cli (with httptools and uvloop installed "
                             "there; e.g. a 3.12 venv, for PYTHONPERFSUPPORT=1 and perf)")
    parser.add_argument("--profile", metavar="FILE",
                        help="part 1 only, with the server under cProfile writing FILE; prints its top functions")
    parser.add_argument("--strace", action="store_true", help="part 1 only, counting syscalls per invoke (strace -c)")
    parser.add_argument("--attach", metavar="CMD",
                        help="part 1 only, running CMD during the load ({pid}: the server's, {seconds}: the "
                             "load's length), e.g. 'py-spy record --nonblocking --pid {pid} -d {seconds} -o out.svg'")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness added to every process of the run, this one included (e.g. -10 as root, "
                             "to keep other work on a shared machine from preempting it)")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load generator even if wrk is there")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (server log, data dir) for a look")
    parser.add_argument("--loadgen", nargs=4, metavar=("PORT", "PATH", "CONNS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        port, path, conns, seconds = args.loadgen
        loadgen(int(port), path, int(conns), float(seconds))
        return 0
    if args.quick:
        args.duration, args.rounds, args.invokes = 4.0, 1, 800
    server_only = bool(args.profile or args.strace or args.attach)
    if args.strace and shutil.which("strace") is None:
        raise SystemExit("--strace needs strace (apt-get install -y strace)")
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    if not use_wrk:
        print("wrk not found (or --no-wrk): using a Python load generator in a separate process instead. It is "
              "less precise: it spends ~200-400 us of CPU per request (wrk ~40-50) on the same cores, and its "
              "latencies include its own event loop.")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    procs = Procs()
    if args.nice:
        os.nice(args.nice)  # this process too (part 2's client); the processes it starts inherit it
    work = tempfile.mkdtemp(prefix="lambdalet-warm-")
    results: dict[str, object] = {}
    try:
        print(f"lambdalet {git_state()}{'; server from ' + args.src if args.src else ''}; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        server_python = args.server_python or sys.executable
        print(f"cpu: {cpu_identity()}; sum(range(1000)) on {server_python}: {python_speed(server_python)}")
        server = start_server(procs, work, args.src, args.profile, args.server_python, tuple(args.serve_arg))
        create_function(server.port)
        ours = Invoker(server.port, INVOKE_PATH, body=PAYLOAD)
        python, version = which_python(ours)
        print(f"lambdalet serve pid {server.proc.pid} on 127.0.0.1:{server.port}; {RUNTIME} runs on {python} "
              f"({version})")
        per_round = max(1, round(args.duration / args.rounds))
        rie_round = max(1, round(args.duration / 2 / args.rounds))
        one_round = max(1, round(args.duration / 4 / args.rounds))
        print(f"warm-up: {args.connections} connections for 2 s (cold starts of {args.connections} environments)")
        warm = run_load("warm-up", server.proc.pid, server.port, INVOKE_PATH, args.connections, args.threads, 2,
                        procs, work, use_wrk, server.log_path)
        envs = descendants(server.proc.pid)
        print(f"  processes below the server: {len(envs)} ("
              + ", ".join(f"{n}x {k}" for k, n in _count(_tree_labels(server.proc.pid, envs).values()))
              + f"); {warm.cold_starts} cold starts")

        if server_only:
            return server_only_run(args, server, procs, work, use_wrk, ours)

        # ---- part 2: one connection, lambdalet and RIE + awslambdaric alternating invoke by invoke
        ric_python, rie = prepare_tools(python)
        task = Path(work) / "task"
        task.mkdir()
        (task / "app.py").write_text(APP)
        env = {**base_env(task), "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}"}
        ric_argv = [str(ric_python), "-m", "awslambdaric", "app.handler"]

        def rie_start() -> tuple[subprocess.Popen, Invoker]:
            rie_log = open(os.path.join(work, "rie.log"), "ab")  # noqa: SIM115
            try:
                proc, invoker = start_rie(rie, ric_argv, env, task, runtime_api=f"127.0.0.1:{free_port()}",
                                          body=PAYLOAD, stderr=rie_log)
            finally:
                rie_log.close()
            procs.procs.append(proc)
            return proc, invoker

        rie_proc, rie_inv = rie_start()
        ric_python_real, ric_version = which_python(rie_inv)
        print(f"RIE pid {rie_proc.pid}; awslambdaric runs on {ric_python_real} ({ric_version})")
        if os.path.realpath(ric_python_real) != os.path.realpath(python) and ric_version != version:
            print("  WARNING: awslambdaric and lambdalet's runtime run on different interpreters")
        print(f"part 2: warm latency at 1 connection, {args.invokes} invokes each, alternating (http.client)")
        lat = latencies({"lambdalet": ours, "rie": rie_inv}, args.invokes)
        rie_inv.close()
        procs.stop(rie_proc)
        ours.close()
        results["lat_lambdalet"] = lat_row("lambdalet serve + lambdalet runtime", lat["lambdalet"])
        results["lat_rie"] = lat_row("RIE + awslambdaric", lat["rie"])

        # ---- parts 1 and 3: wrk, alternating rounds
        print(f"parts 1 and 3: {args.rounds} rounds of lambdalet {args.connections} conn {per_round} s, "
              f"RIE 1 conn {rie_round} s, lambdalet 1 conn {one_round} s")
        runs: dict[str, list[LoadRun]] = {"ours8": [], "rie1": [], "ours1": []}
        for r in range(args.rounds):
            runs["ours8"].append(run_load(f"lambdalet {args.connections} conn", server.proc.pid, server.port,
                                          INVOKE_PATH, args.connections, args.threads, per_round, procs, work,
                                          use_wrk, server.log_path))
            rie_proc, rie_inv = rie_start()
            rie_inv.close()  # the RIE takes one connection at a time: wrk's
            run = run_load("RIE + awslambdaric 1 conn", rie_proc.pid, _port_of(rie_inv), RIE_PATH, 1, 1,
                           rie_round, procs, work, use_wrk)
            if rie_proc.poll() is not None:
                print(f"  (round {r + 1}: the RIE exited during its run, code {rie_proc.returncode})")
            procs.stop(rie_proc)
            runs["rie1"].append(run)
            runs["ours1"].append(run_load("lambdalet 1 conn", server.proc.pid, server.port, INVOKE_PATH, 1, 1,
                                          one_round, procs, work, use_wrk, server.log_path))
        ours8, rie1, ours1 = merge(runs["ours8"]), merge(runs["rie1"]), merge(runs["ours1"])
        describe(ours8, "server")
        describe(ours1, "server")
        describe(rie1, "RIE")
        cpu = ours8.per_invoke_us(ours8.target_ticks)
        runtime_ticks = sum(v for k, v in ours8.tree_ticks.items() if _is_runtime(k))
        results.update(cpu_us=cpu, runtime_cpu_us=ours8.per_invoke_us(runtime_ticks),
                       cold_starts8=ours8.cold_starts,
                       cpu_us_1conn=ours1.per_invoke_us(ours1.target_ticks),
                       rie_cpu_us=rie1.per_invoke_us(rie1.target_ticks),
                       rate8=ours8.rate, rate1=ours1.rate, rie_rate1=rie1.rate, invokes8=ours8.ok)
        p50, rie_p50 = results["lat_lambdalet"]["p50"], results["lat_rie"]["p50"]
        results.update(wrk_p50_1conn=ours1.p50_us, rie_wrk_p50_1conn=rie1.p50_us)
        print()
        print(f"server CPU per warm invoke ({args.connections} conn): {cpu:.0f} µs (goal <= 200)")
        if use_wrk:  # the load generator's own time left out: what the two servers themselves take
            print(f"warm p50 1 conn (wrk): lambdalet {ours1.p50_us:.0f} µs vs RIE+awslambdaric "
                  f"{rie1.p50_us:.0f} µs, ratio {ours1.p50_us / max(rie1.p50_us, 1e-9):.2f} (goal <= 0.5)")
        print(f"warm p50 1 conn (http.client, its ~300-400 µs included in both): lambdalet {p50:.0f} µs vs "
              f"RIE+awslambdaric {rie_p50:.0f} µs, ratio {p50 / rie_p50:.2f}")
        print(f"throughput {args.connections} conn: {ours8.rate:,.0f}/s vs RIE 1 conn {rie1.rate:,.0f}/s, "
              f"ratio {ours8.rate / max(rie1.rate, 1e-9):.2f} (goal >= 2.5)")
        if args.json:
            print(json.dumps(results, indent=2))
        return 0
    except KeyboardInterrupt:
        print("interrupted: ending every process started", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _port_of(invoker: Invoker) -> int:
    return invoker.conn.port


def _count(items) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return sorted(((k, n) for k, n in out.items()), key=lambda kv: -kv[1])


def server_only_run(args, server: Server, procs: Procs, work: str, use_wrk: bool, ours: Invoker) -> int:
    """--profile / --strace: part 1 only."""
    ours.close()
    seconds = max(1, round(args.duration))
    if args.strace:
        table = process_table()
        tree = descendants(server.proc.pid, table)
        labels = _tree_labels(server.proc.pid, tree)
        groups = {"server": [int(t) for t in os.listdir(f"/proc/{server.proc.pid}/task")]}
        runtime_tids = [int(t) for pid, lab in labels.items() if lab.startswith("runtime")
                        for t in os.listdir(f"/proc/{pid}/task")]
        if runtime_tids:
            groups["runtimes"] = runtime_tids

        def load() -> LoadRun:
            return run_load(f"lambdalet {args.connections} conn, under strace", server.proc.pid, server.port,
                            INVOKE_PATH, args.connections, args.threads, seconds, procs, work, use_wrk,
                            server.log_path)

        run, counts = strace_during(groups, load, work, procs)
        describe(run, "server")
        for name, (total, calls) in counts.items():
            top = sorted(calls.items(), key=lambda kv: -kv[1])[:12]
            print(f"  syscalls per invoke, {name}: {total / max(run.ok, 1):.1f}  ("
                  + ", ".join(f"{k} {v / max(run.ok, 1):.2f}" for k, v in top) + ")")
        print("  (strace slows every traced syscall down: the rate and CPU above are not the untraced ones)")
        return 0
    if args.attach:
        import shlex

        argv = [w.format(pid=server.proc.pid, seconds=seconds) for w in shlex.split(args.attach)]
        tool = procs.start(argv, stdin=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
        run = run_load(f"lambdalet {args.connections} conn, with {argv[0]} attached", server.proc.pid, server.port,
                       INVOKE_PATH, args.connections, args.threads, seconds, procs, work, use_wrk, server.log_path)
        try:
            tool.wait(15)
        except subprocess.TimeoutExpired:
            tool.send_signal(signal.SIGINT)
            tool.wait(15)
        procs.procs.remove(tool)
        describe(run, "server")
        return 0
    run = run_load(f"lambdalet {args.connections} conn, under cProfile", server.proc.pid, server.port, INVOKE_PATH,
                   args.connections, args.threads, seconds, procs, work, use_wrk, server.log_path)
    describe(run, "server")
    procs.stop(server.proc, grace=30)  # SIGTERM: the server returns and cProfile writes its file
    if os.path.exists(args.profile):
        import pstats

        stats = pstats.Stats(args.profile)
        print(f"profile of the whole server life in {args.profile} ({run.ok} measured invokes); "
              "top 25 by own time, then by cumulative time:")
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
    else:
        print(f"no profile was written to {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
