"""Warm invoke latency (p50/p99) and cold start of `provided` functions on a real `lambdalet serve`.

    python bench/bench_provided.py [--warm 500] [--cold 10]

Two bootstraps: a keep-alive Python loop (measures the platform: invoke -> /next -> /response ->
caller) and the spec's bash+curl loop (what a shell bootstrap costs). Last, warm latency of the Python
loop while another function keeps cold-starting (what a cold start costs everyone else). The client is a keep-alive
http.client connection to the Invoke API, so client overhead stays out of the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from spec_bootstraps import EVENT_LOOP  # noqa: E402

from common import zip_files  # noqa: E402

PYTHON_LOOP = f"""#!{os.path.realpath(sys.executable)} -S
import http.client, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", event)
    conn.getresponse().read()
"""



class Api:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)
        self.conn.connect()
        import socket

        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
        self.conn.request(method, path, body, headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{resp.status} {data!r}")
        return data

    def create(self, name: str, bootstrap: str) -> None:
        import base64

        doc = {"FunctionName": name, "Runtime": "provided.al2023", "Handler": "x", "Role": "r",
               "Code": {"ZipFile": base64.b64encode(zip_files({"bootstrap": bootstrap}, ("bootstrap",))).decode()}}
        self.call("POST", "/2015-03-31/functions", json.dumps(doc).encode())

    def invoke(self, name: str, payload: bytes = b'{"k": "v"}') -> bytes:
        return self.call("POST", f"/2015-03-31/functions/{name}/invocations", payload)

    def touch(self, name: str, n: int) -> None:
        """Change the configuration so the next invoke is a cold start."""
        self.call("PUT", f"/2015-03-31/functions/{name}/configuration",
                  json.dumps({"Environment": {"Variables": {"GEN": str(n)}}}).encode())


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(api: Api, name: str, warm: int, cold: int) -> dict[str, float]:
    api.invoke(name)
    for _ in range(20):
        api.invoke(name)
    times = []
    for _ in range(warm):
        t = time.perf_counter()
        api.invoke(name)
        times.append((time.perf_counter() - t) * 1000)
    colds = []
    for n in range(cold):
        api.touch(name, n)
        t = time.perf_counter()
        api.invoke(name)
        colds.append((time.perf_counter() - t) * 1000)
    return {"warm_p50": pct(times, 50), "warm_p99": pct(times, 99), "warm_mean": statistics.fmean(times),
            "cold_p50": pct(colds, 50) if colds else 0.0}


def warm_during_cold_starts(port: int, warm: int) -> dict[str, float]:
    """Warm invokes of py-loop while another client keeps cold-starting a second function: whatever
    a cold start does on the server's event loop shows up here as latency of unrelated invokes."""
    import threading

    stop = threading.Event()
    colds = 0

    def cold_starter() -> None:
        nonlocal colds
        other = Api(port)
        other.create("churn", PYTHON_LOOP)
        while not stop.is_set():
            other.touch("churn", colds)
            other.invoke("churn")
            colds += 1

    api = Api(port)
    thread = threading.Thread(target=cold_starter, daemon=True)
    thread.start()
    times = []
    try:
        for _ in range(warm):
            t = time.perf_counter()
            api.invoke("py-loop")
            times.append((time.perf_counter() - t) * 1000)
    finally:
        stop.set()
        thread.join()
    return {"p50": pct(times, 50), "p99": pct(times, 99), "max": max(times), "colds": colds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--cold", type=int, default=10)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="lambdalet-bench-")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "lambdalet.cli", "serve", "--port", str(port),
                               "--data-dir", data], stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/lambdalet/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        api = Api(port)
        api.create("py-loop", PYTHON_LOOP)
        api.create("bash-curl", EVENT_LOOP)
        print(f"{'bootstrap':<12} {'warm p50':>10} {'warm p99':>10} {'warm mean':>10} {'cold p50':>10}  (ms)")
        for name in ("py-loop", "bash-curl"):
            r = measure(api, name, args.warm if name == "py-loop" else args.warm // 5, args.cold)
            print(f"{name:<12} {r['warm_p50']:>10.3f} {r['warm_p99']:>10.3f} {r['warm_mean']:>10.3f} "
                  f"{r['cold_p50']:>10.2f}")
        r = warm_during_cold_starts(port, args.warm)
        print(f"py-loop warm while another function cold-starts ({r['colds']} cold starts): p50 {r['p50']:.3f} "
              f"p99 {r['p99']:.3f} max {r['max']:.2f} ms")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
