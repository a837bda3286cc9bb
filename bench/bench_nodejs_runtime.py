"""Benchmark lambdalet's Node.js runtime (nodejsNN.x) against the official aws-lambda-ric.

1. Start-up: spawn -> first GET /next on a bare listening socket, for lambdalet's runtime started
   directly (the launch spec's fast path), through its bash bootstrap (the AWS_LAMBDA_EXEC_WRAPPER
   path), aws-lambda-ric 4.0.2 (when cached by the integration tests) and bare `node -e 0`.
2. Runtime loop cost: from writing the /next answer to having read the whole /response POST.
3. Through `lambdalet serve` (plain HTTP Invoke API): cold start (first invoke of a new function)
   and warm invoke latency p50/p90; RIE + lambdalet runtime too when the RIE binary is around
   (bench/bench_python_runtime.py downloads it to /tmp/lambdalet-bench/aws-lambda-rie).

    python bench/bench_nodejs_runtime.py [--runtime nodejs22.x] [--startups 30] [--invokes 500] [--colds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port, spawn_until_next, summary, zip_files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdalet.environment.managed import RuntimeContext  # noqa: E402
from lambdalet.environment.managed import nodejs as node_launch  # noqa: E402

APP = "export const handler = async (event, context) => ({ ok: true, echo: event });\n"
EVENT = b'{"hello": "world", "n": 42}'
RIC = Path(os.environ.get("LAMBDALET_TEST_CACHE", "~/.cache/lambdalet-tests")).expanduser() / (
    "aws-lambda-ric-4.0.2/node_modules/aws-lambda-ric/index.mjs")
RIE = Path(os.environ.get("LAMBDALET_BENCH_DIR", "/tmp/lambdalet-bench")) / "aws-lambda-rie"
ARN = b"arn:aws:lambda:us-east-1:123456789012:function:bench"


class _Ctx(RuntimeContext):
    def __init__(self, runtime: str, task: Path, memory_mb: int | None) -> None:
        super().__init__(runtime=runtime, task_root=str(task), handler="app.handler", user_env={}, interpreters={})
        self.memory_mb = memory_mb


def variants(runtime: str, task: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    env = {
        "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TZ": ":UTC", "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": str(node_launch.RUNTIME_DIR), "_HANDLER": "app.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_REGION": "us-east-1",
    }
    direct = node_launch.launch_spec(_Ctx(runtime, task, 128))
    bootstrap = node_launch.launch_spec(_Ctx(runtime, task, None))
    out = {
        "lambdalet (node directly)": (direct.argv, {**env, **direct.env}),
        "lambdalet (bash bootstrap)": (bootstrap.argv, {**env, **bootstrap.env}),
        # AWS's V8 flags (--expose-gc, heap sizes) make node reject its built-in code cache: ~10 ms.
        "lambdalet (no V8 flags, for reference)": ([direct.argv[0], str(node_launch.ENTRY)],
                                                   {**env, **direct.env}),
    }
    if RIC.exists():
        out["aws-lambda-ric 4.0.2"] = ([direct.argv[0], str(RIC)], {**env, **direct.env})
    return out


def time_to_first_next(cases: dict[str, tuple[list[str], dict[str, str]]], task: Path,
                       rounds: int) -> dict[str, list[float]]:
    """Seconds from spawn to a whole GET /next on a bare socket; variants alternate round by round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        for _ in range(rounds):
            for name, (argv, env) in cases.items():
                times[name].append(spawn_until_next(listener, argv, env, str(task)))
    return times


def _take_request(buf: bytearray) -> bytes | None:
    """Remove one whole request (Content-Length bodies) from buf and return its head, if complete."""
    if b"\r\n\r\n" not in buf:
        return None
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(buf) < end + length:
        return None
    del buf[: end + length]
    return head


class BareRuntimeApi:
    """An instantly answering Runtime API on raw sockets; accepts new connections at any time
    (aws-lambda-ric's libcurl client does not always reuse its connection)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: dict[socket.socket, bytearray] = {}

    def next_request(self) -> tuple[socket.socket, bytes]:
        while True:
            for sock, buf in self.conns.items():
                head = _take_request(buf)
                if head is not None:
                    return sock, head
            ready, _, _ = select.select([self.listener, *self.conns], [], [], 30)
            if not ready:
                raise TimeoutError("runtime went quiet")
            for sock in ready:
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.conns[conn] = bytearray()
                    continue
                data = sock.recv(65536)
                if data:
                    self.conns[sock] += data
                else:
                    sock.close()
                    del self.conns[sock]

    def close(self) -> None:
        for sock in self.conns:
            sock.close()
        self.listener.close()


def runtime_loop(argv: list[str], env: dict[str, str], task: Path, count: int) -> list[float]:
    """Per-invoke runtime cost: from writing the /next answer to having read the whole /response POST."""
    api = BareRuntimeApi()
    proc = subprocess.Popen(argv, cwd=task, env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.port}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = str(int(time.time() * 1000) + 3_600_000).encode()
    times = []
    try:
        for i in range(count + 50):
            sock, head = api.next_request()
            assert head.startswith(b"GET "), head
            answer = (b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-%d\r\n"
                      b"Lambda-Runtime-Deadline-Ms: %s\r\nLambda-Runtime-Invoked-Function-Arn: %s\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (i, deadline, ARN, len(EVENT), EVENT))
            start = time.perf_counter()
            sock.sendall(answer)
            sock, head = api.next_request()
            elapsed = time.perf_counter() - start
            assert head.startswith(b"POST ") and b"/response" in head.split(b"\r\n")[0], head
            sock.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 15\r\n\r\n{\"status\":\"OK\"}")
            if i >= 50:
                times.append(elapsed)
    finally:
        api.close()
        proc.kill()
        proc.wait()
    return times



def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def warm_latencies(port: int, path: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.time() + 30
    while True:
        try:
            status, body = post(conn, path, EVENT)
            if status == 200 and b'"ok"' in body:
                break
        except OSError:
            conn.close()
        if time.time() > deadline:
            raise RuntimeError("endpoint never answered")
        time.sleep(0.05)
    for _ in range(50):
        post(conn, path, EVENT)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        status, body = post(conn, path, EVENT)
        times.append(time.perf_counter() - start)
        assert status == 200 and b'"ok"' in body, body
    conn.close()
    return times



def lambdalet_serve(runtime: str, count: int, colds: int) -> tuple[list[float], list[float]] | None:
    """(cold first-invoke latencies, warm latencies) through `lambdalet serve` (plain HTTP)."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="lambdalet-bench-")
    server = subprocess.Popen([sys.executable, "-m", "lambdalet.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--data-dir", data_dir], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.time() + 20
        while True:
            try:
                conn.request("GET", "/lambdalet/health")
                conn.getresponse().read()
                break
            except OSError:
                conn.close()
                if time.time() > deadline or server.poll() is not None:
                    return None
                time.sleep(0.1)
        code = zip_files({"app.mjs": APP})
        cold = []
        for i in range(colds + 1):
            doc = {"FunctionName": f"bench{i}", "Runtime": runtime, "Handler": "app.handler",
                   "Role": "arn:aws:iam::123456789012:role/x", "MemorySize": 128,
                   "Code": {"ZipFile": __import__("base64").b64encode(code).decode()}}
            status, body = post(conn, "/2015-03-31/functions", json.dumps(doc).encode())
            assert status in (200, 201), body
            start = time.perf_counter()
            status, body = post(conn, f"/2015-03-31/functions/bench{i}/invocations", EVENT)
            elapsed = time.perf_counter() - start
            assert status == 200 and b'"ok"' in body, body
            if i:  # the very first one also warms the server's own code paths
                cold.append(elapsed)
        conn.close()
        return cold, warm_latencies(port, "/2015-03-31/functions/bench0/invocations", count)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def rie(argv: list[str], env: dict[str, str], task: Path, count: int) -> list[float]:
    port = free_port()
    proc = subprocess.Popen([str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{port}", *argv],
                            cwd=task, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return warm_latencies(port, "/2015-03-31/functions/function/invocations", count)
    finally:
        proc.terminate()
        proc.wait()



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", default="nodejs22.x")
    parser.add_argument("--startups", type=int, default=30)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--colds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    task = Path(tempfile.mkdtemp(prefix="bench-node-task-"))
    (task / "app.mjs").write_text(APP)
    cases = variants(args.runtime, task)
    node = cases["lambdalet (node directly)"][0][0]
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    results: dict[str, dict[str, float]] = {}

    print(f"node {version} ({node}), runtime {args.runtime}")
    print(f"spawn -> first GET /next ({args.startups} starts each)")
    starts = time_to_first_next(cases, task, args.startups)
    for name, seconds in starts.items():
        results[f"start {name}"] = summary(name, seconds)
    bare = []
    for _ in range(args.startups):
        t = time.perf_counter()
        subprocess.run([node, "-e", "0"], check=True)
        bare.append(time.perf_counter() - t)
    results["start bare node"] = summary("bare `node -e 0` (full run)", bare)

    print(f"runtime loop cost (bare-socket Runtime API), {args.invokes} invokes each")
    for name, (argv, env) in cases.items():
        if "bash" in name or "reference" in name:
            continue
        results[f"loop {name}"] = summary(name, runtime_loop(argv, env, task, args.invokes))

    print("through lambdalet serve (plain HTTP Invoke API)")
    served = lambdalet_serve(args.runtime, args.invokes, args.colds)
    if served is None:
        print("  lambdalet serve: not available, skipped")
    else:
        results["cold first invoke"] = summary(f"cold start: first invoke ({args.colds} functions)", served[0])
        results["warm invoke"] = summary(f"warm invoke ({args.invokes} sequential)", served[1])
    if RIE.exists():
        print("through the AWS Runtime Interface Emulator")
        for name, (argv, env) in cases.items():
            if "bash" in name or "reference" in name:
                continue
            results[f"rie {name}"] = summary(f"RIE + {name}", rie(argv, env, task, args.invokes))
    if args.json:
        print(json.dumps(results, indent=2))
    shutil.rmtree(task, ignore_errors=True)


if __name__ == "__main__":
    main()
