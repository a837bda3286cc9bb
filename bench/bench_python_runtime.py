"""Benchmark lambdalet's Python runtime against AWS's awslambdaric.

1. Start-up: time from spawning the runtime process to its first GET /next, measured the same way
   for lambdalet's runtime and for `python -m awslambdaric` (a bare socket plays the Runtime API).
2. Warm invoke latency (p50/p90) through the AWS Runtime Interface Emulator (`aws-lambda-rie`):
   RIE + awslambdaric, side by side with RIE + lambdalet's runtime, and lambdalet's own server
   (`lambdalet serve`) + lambdalet's runtime when the server is available.

3. Cold starts with and without the fork server: spawn -> first GET /next (exec'ing the
   interpreter vs forking it from a fork server), and invoke latency of cold starts through two
   `lambdalet serve --isolation none` processes, one with LAMBDALET_FORK_SERVER=0, and (as root) a
   sandboxed one (`--isolation strict`), alternating.

awslambdaric and the RIE binary (shipped inside the aws-sam-cli wheel) are installed in a throwaway
venv under /tmp (never a project dependency); --cold-only runs part 3 alone, without them:

    python bench/bench_python_runtime.py [--python python3.12] [--startups 30] [--invokes 500] [--cold 20]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import WORK, Invoker, base_env, free_port, prepare_tools, spawn_until_next, start_rie, summary, zip_files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdalet.environment.managed import RuntimeContext  # noqa: E402
from lambdalet.environment.managed.python import find_interpreter, launch_spec  # noqa: E402

APP = "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"
EVENT = b'{"hello": "world", "n": 42}'


def lambdalet_argv(runtime: str) -> tuple[list[str], dict[str, str]]:
    spec = launch_spec(RuntimeContext(runtime=runtime, task_root="", handler="app.handler", user_env={},
                                      interpreters={}))
    return spec.argv, spec.env


def time_to_first_next(variants: dict[str, tuple[list[str], dict[str, str]]], task: Path,
                       rounds: int) -> dict[str, list[float]]:
    """Seconds from spawn to the whole GET /next arriving on a bare listening socket, per variant.

    Variants alternate round by round so that background load on the machine hits them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        for _, name in ((r, n) for r in range(rounds) for n in variants):
            argv, env = variants[name]
            times[name].append(spawn_until_next(listener, argv, env, str(task)))
    return times


class _Conn:
    """Buffered reads of HTTP requests from one runtime connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read_request(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("runtime closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return head


class LoopHarness:
    """A runtime process whose Runtime API is a bare socket answering instantly.

    once() measures the runtime's own per-invoke work: from writing the /next answer to having read
    the whole /response POST (plus two loopback messages).
    """

    def __init__(self, argv: list[str], env: dict[str, str], task: Path) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        port = self.listener.getsockname()[1]
        self.proc = subprocess.Popen(argv, cwd=task, env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sock, _ = self.listener.accept()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = _Conn(self.sock)
        self.deadline = str(int(time.time() * 1000) + 3_600_000).encode()
        self.count = 0
        self.head = self.conn.read_request()  # the first GET /next

    def once(self) -> float:
        assert self.head.startswith(b"GET "), self.head
        self.count += 1
        answer = (b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-%d\r\n"
                  b"Lambda-Runtime-Deadline-Ms: %s\r\n"
                  b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:b\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (self.count, self.deadline, len(EVENT), EVENT))
        start = time.perf_counter()
        self.sock.sendall(answer)
        head = self.conn.read_request()
        elapsed = time.perf_counter() - start
        assert head.startswith(b"POST ") and b"/response" in head.split(b"\r\n")[0], head
        self.sock.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 15\r\n\r\n{\"status\":\"OK\"}")
        self.head = self.conn.read_request()
        return elapsed

    def close(self) -> None:
        self.sock.close()
        self.listener.close()
        self.proc.kill()
        self.proc.wait()



def interleaved(harnesses: dict, count: int, warmup: int = 20) -> dict[str, list[float]]:
    """Run `count` timed calls of each harness's once(), alternating so background load hits all alike."""
    for _ in range(warmup):
        for harness in harnesses.values():
            harness.once()
    times: dict[str, list[float]] = {name: [] for name in harnesses}
    for _ in range(count):
        for name, harness in harnesses.items():
            times[name].append(harness.once())
    return times


def start_lambdalet_serve(runtime: str, data_dir: str) -> tuple[subprocess.Popen, Invoker] | None:
    """`lambdalet serve` with one function deployed (None when the server is not available)."""
    try:
        import boto3
    except ImportError:
        return None
    beside = Path(sys.executable).parent / "lambdalet"
    exe = str(beside) if beside.exists() else shutil.which("lambdalet")
    if exe is None:
        return None
    port = free_port()
    server = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--data-dir", data_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    deadline = time.time() + 20
    while True:
        try:
            client.create_function(FunctionName="bench", Runtime=runtime, Handler="app.handler",
                                   Role="arn:aws:iam::123456789012:role/x",
                                   Code={"ZipFile": zip_files({"app.py": APP})})
            break
        except Exception:
            if time.time() > deadline or server.poll() is not None:
                server.terminate()
                server.wait()
                return None
            time.sleep(0.2)
    return server, Invoker(port, "/2015-03-31/functions/bench/invocations")


def fork_until_next(listener: socket.socket, rounds: int, runtime: str, task: Path,
                    env: dict[str, str]) -> list[float]:
    """Like spawn_until_next, but forking the runtime from lambdalet's fork server (a warm-up fork first)."""
    from lambdalet.environment import fork_servers

    spec = launch_spec(RuntimeContext(runtime=runtime, task_root=str(task), handler="app.handler", user_env={},
                                      interpreters={}))
    port = listener.getsockname()[1]
    env = {**env, **spec.env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"}

    def fork():
        return fork_servers.fork_process(spec.fork_server, spec.argv, cwd=str(task), env=env, emit=lambda _: None)

    async def once(warm_up: bool = False) -> float:
        start = time.perf_counter()
        proc = await fork()
        while proc is None and warm_up and time.perf_counter() - start < 10:  # the fork server is starting
            await asyncio.sleep(0.01)
            proc = await fork()
        assert proc is not None, "fork server unavailable"
        conn, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        elapsed = time.perf_counter() - start
        conn.close()
        await proc.terminate(0.5)
        return elapsed

    async def all_rounds() -> list[float]:
        try:
            await once(warm_up=True)
            return [await once() for _ in range(rounds)]
        finally:
            fork_servers.shutdown_all()

    return asyncio.run(all_rounds())


class ServedCold:
    """A `lambdalet serve` with one python function; once() makes the next invoke cold and times it."""

    def __init__(self, runtime: str, fork_server: bool, isolation: str = "none") -> None:
        self.data_dir = tempfile.mkdtemp(prefix="lambdalet-bench-cold-")
        beside = Path(sys.executable).parent / "lambdalet"
        exe = [str(beside)] if beside.exists() else [sys.executable, "-m", "lambdalet.cli"]
        self.port = free_port()
        env = {**os.environ, "LAMBDALET_FORK_SERVER": "1" if fork_server else "0"}
        self.server = subprocess.Popen([*exe, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                        "--data-dir", self.data_dir, "--isolation", isolation], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        doc = {"FunctionName": "cold", "Runtime": runtime, "Handler": "app.handler",
               "Role": "arn:aws:iam::123456789012:role/x", "Code": {"ZipFile": _b64(zip_files({"app.py": APP}))}}
        deadline = time.time() + 20
        while True:
            try:
                self._call("POST", "/2015-03-31/functions", json.dumps(doc).encode())
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                if time.time() > deadline or self.server.poll() is not None:
                    self.close()
                    raise
                time.sleep(0.1)
        self.count = 0
        self._invoke()  # the first cold start is exec'd while the fork server starts: not timed
        time.sleep(0.5)

    def _call(self, method: str, path: str, body: bytes) -> bytes:
        self.conn.request(method, path, body=body)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise http.client.HTTPException(f"{resp.status}: {data[:200]!r}")
        return data

    def _invoke(self) -> None:
        body = self._call("POST", "/2015-03-31/functions/cold/invocations", EVENT)
        assert b'"ok"' in body, body

    def once(self) -> float:
        self.count += 1
        config = {"Environment": {"Variables": {"GEN": str(self.count)}}}
        self._call("PUT", "/2015-03-31/functions/cold/configuration", json.dumps(config).encode())
        time.sleep(0.05)  # let the previous environment's teardown (here or in the other server) finish
        start = time.perf_counter()
        self._invoke()
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()
        self.server.terminate()
        self.server.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def alternate_cold_starts(servers: dict[str, ServedCold], rounds: int) -> dict[str, list[float]]:
    """Cold-start times of each server, taken in turn `rounds` times; the servers are closed after."""
    try:
        times: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(rounds):
            for name, served in servers.items():
                times[name].append(served.once())
    finally:
        for served in servers.values():
            served.close()
    return times


def cold_starts(runtime: str, interpreter: str, rounds: int, results: dict[str, dict[str, float]]) -> None:
    """Part 3: exec vs fork server, at the runtime (spawn -> first /next) and through `lambdalet serve`."""
    task = Path(tempfile.mkdtemp(prefix="bench-task-"))
    (task / "app.py").write_text(APP)
    env = base_env(task)
    argv, spec_env = lambdalet_argv(runtime)
    print(f"interpreter {interpreter}; spawn -> first GET /next, exec vs fork server ({rounds} starts each)")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        execs = [spawn_until_next(listener, argv, {**env, **spec_env}, str(task)) for _ in range(rounds)]
        forks = fork_until_next(listener, rounds, runtime, task, env)
    results["first_next_exec"] = summary("exec python", execs)
    results["first_next_fork"] = summary("fork from the fork server", forks)
    print(f"cold start through lambdalet serve (config change + invoke, caller's view), {rounds} each, alternating")
    servers = {"serve_cold_exec": ServedCold(runtime, False), "serve_cold_fork": ServedCold(runtime, True)}
    if os.geteuid() == 0:  # the sandbox tier (issue 10) beside the plain one
        servers["serve_cold_fork_sandbox"] = ServedCold(runtime, True, "strict")
    times = alternate_cold_starts(servers, rounds)
    results["serve_cold_exec"] = summary("lambdalet serve, exec (LAMBDALET_FORK_SERVER=0)", times["serve_cold_exec"])
    results["serve_cold_fork"] = summary("lambdalet serve, fork server", times["serve_cold_fork"])
    if "serve_cold_fork_sandbox" in times:
        results["serve_cold_fork_sandbox"] = summary("lambdalet serve, fork server, sandboxed",
                                                     times["serve_cold_fork_sandbox"])
    shutil.rmtree(task, ignore_errors=True)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--startups", type=int, default=30)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--cold", type=int, default=20, help="cold starts per variant in part 3")
    parser.add_argument("--cold-only", action="store_true", help="only part 3 (no awslambdaric/RIE needed)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    interpreter = find_interpreter(args.runtime) or os.path.realpath(sys.executable)
    if args.cold_only:
        results: dict[str, dict[str, float]] = {}
        cold_starts(args.runtime, interpreter, args.cold, results)
        if args.json:
            print(json.dumps(results, indent=2))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    ric_python, rie = prepare_tools(interpreter)
    task = Path(tempfile.mkdtemp(prefix="bench-task-"))
    (task / "app.py").write_text(APP)
    env = base_env(task)
    ours_argv, ours_env = lambdalet_argv(args.runtime)
    ours_env = {**env, **ours_env}
    ric_argv = [str(ric_python), "-m", "awslambdaric", "app.handler"]
    ric_env = {**env, "AWS_EXECUTION_ENV": f"AWS_Lambda_{args.runtime}"}
    results: dict[str, dict[str, float]] = {}

    print(f"interpreter {interpreter}; spawn -> first GET /next ({args.startups} starts each)")
    starts = time_to_first_next({"lambdalet": (ours_argv, ours_env), "awslambdaric": (ric_argv, ric_env)}, task,
                                args.startups)
    results["start_lambdalet"] = summary("lambdalet runtime", starts["lambdalet"])
    results["start_awslambdaric"] = summary("awslambdaric", starts["awslambdaric"])
    bare = [interpreter, "-s", "-c", "pass"]
    start = []
    for _ in range(args.startups):
        t = time.perf_counter()
        subprocess.run(bare, check=True)
        start.append(time.perf_counter() - t)
    results["start_bare_interpreter"] = summary("bare interpreter (-s -c pass, full run)", start)

    print(f"runtime loop cost (bare-socket Runtime API), {args.invokes} interleaved invokes each")
    loops = {"awslambdaric": LoopHarness(ric_argv, ric_env, task), "lambdalet": LoopHarness(ours_argv, ours_env, task)}
    try:
        loop_times = interleaved(loops, args.invokes)
    finally:
        for harness in loops.values():
            harness.close()
    results["loop_awslambdaric"] = summary("awslambdaric", loop_times["awslambdaric"])
    results["loop_lambdalet"] = summary("lambdalet runtime", loop_times["lambdalet"])

    rounds = 5
    print(f"warm invoke latency, {args.invokes} sequential invokes each, in {rounds} alternating rounds")
    # The RIE always binds 127.0.0.1:9001 for its Runtime API, so only one RIE can run at a time: the
    # two RIE set-ups alternate round by round, and lambdalet serve is interleaved with both.
    warm: dict[str, list[float]] = {}
    data_dir = tempfile.mkdtemp(prefix="lambdalet-bench-")
    served = start_lambdalet_serve(args.runtime, data_dir)
    try:
        for _ in range(rounds):
            for key, argv, env_ in (("warm_rie_awslambdaric", ric_argv, ric_env),
                                    ("warm_rie_lambdalet_runtime", ours_argv, ours_env)):
                proc, invoker = start_rie(rie, argv, env_, task)
                harnesses = {key: invoker}
                if served is not None:
                    harnesses["warm_lambdalet_serve"] = served[1]
                try:
                    for name, times in interleaved(harnesses, args.invokes // rounds).items():
                        warm.setdefault(name, []).extend(times)
                finally:
                    invoker.close()
                    proc.terminate()
                    proc.wait()
    finally:
        if served is not None:
            served[1].close()
            served[0].terminate()
            served[0].wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    labels = {"warm_rie_awslambdaric": "RIE + awslambdaric", "warm_rie_lambdalet_runtime": "RIE + lambdalet runtime",
              "warm_lambdalet_serve": "lambdalet serve + lambdalet runtime"}
    for key, times in warm.items():
        results[key] = summary(labels[key], times)
    if "warm_lambdalet_serve" not in warm:
        print("  lambdalet serve: not available, skipped")
    base = results["warm_rie_awslambdaric"]["p50"]
    ratio = results["warm_rie_lambdalet_runtime"]["p50"] / base
    print(f"warm p50, lambdalet runtime / awslambdaric (same RIE) = {ratio:.2f} (goal <= 0.50)")
    if "warm_lambdalet_serve" in results:
        served_ratio = results["warm_lambdalet_serve"]["p50"] / base
        print(f"warm p50, lambdalet serve + runtime / RIE + awslambdaric = {served_ratio:.2f}")
    loop_ratio = results["loop_lambdalet"]["p50"] / results["loop_awslambdaric"]["p50"]
    print(f"runtime loop p50, lambdalet / awslambdaric = {loop_ratio:.2f}")
    if args.cold:
        cold_starts(args.runtime, interpreter, args.cold, results)
    if args.json:
        print(json.dumps(results, indent=2))
    shutil.rmtree(task, ignore_errors=True)


if __name__ == "__main__":
    main()
