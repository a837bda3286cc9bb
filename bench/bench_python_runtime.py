"""Benchmark lambdalet's Python runtime against AWS's awslambdaric.

1. Start-up: time from spawning the runtime process to its first GET /next, measured the same way
   for lambdalet's runtime and for `python -m awslambdaric` (a bare socket plays the Runtime API).
2. Warm invoke latency (p50/p90) through the AWS Runtime Interface Emulator (`aws-lambda-rie`):
   RIE + awslambdaric, side by side with RIE + lambdalet's runtime, and lambdalet's own server
   (`lambdalet serve`) + lambdalet's runtime when the server is available.

awslambdaric and the RIE binary (shipped inside the aws-sam-cli wheel) are installed in a throwaway
venv under /tmp (never a project dependency):

    python bench/bench_python_runtime.py [--python python3.12] [--startups 30] [--invokes 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lambdalet.environment.managed import RuntimeContext  # noqa: E402
from lambdalet.environment.managed.python import find_interpreter, launch_spec  # noqa: E402

WORK = Path(os.environ.get("LAMBDALET_BENCH_DIR", "/tmp/lambdalet-bench"))
APP = "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"
EVENT = b'{"hello": "world", "n": 42}'


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def prepare_tools(python: str) -> tuple[Path, Path]:
    """A venv with awslambdaric, and the aws-lambda-rie binary out of the aws-sam-cli wheel."""
    venv = WORK / f"venv-{Path(python).name}"
    if not (venv / "bin" / "python").exists():
        run([python, "-m", "venv", str(venv)])
    if subprocess.run([str(venv / "bin" / "python"), "-c", "import awslambdaric"],
                      capture_output=True).returncode:
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "awslambdaric"])
    rie = WORK / "aws-lambda-rie"
    if not rie.exists():
        wheels = WORK / "wheels"
        if not list(wheels.glob("aws_sam_cli-*.whl")):
            run([str(venv / "bin" / "python"), "-m", "pip", "download", "-q", "--no-deps", "aws-sam-cli",
                 "-d", str(wheels)])
        wheel = sorted(wheels.glob("aws_sam_cli-*.whl"))[-1]
        with zipfile.ZipFile(wheel) as zf:
            rie.write_bytes(zf.read("samcli/local/rapid/aws-lambda-rie-x86_64"))
        rie.chmod(0o755)
    return venv / "bin" / "python", rie


def lambdalet_argv(runtime: str) -> tuple[list[str], dict[str, str]]:
    spec = launch_spec(RuntimeContext(runtime=runtime, task_root="", handler="app.handler", user_env={},
                                      interpreters={}))
    return spec.argv, spec.env


def base_env(task: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TZ": ":UTC", "LAMBDA_TASK_ROOT": str(task),
        "_HANDLER": "app.handler", "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_REGION": "us-east-1",
    }


def time_to_first_next(argv: list[str], env: dict[str, str], task: Path, rounds: int) -> list[float]:
    """Seconds from spawn to the first byte of GET /next arriving on a bare listening socket."""
    times = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        for _ in range(rounds):
            start = time.perf_counter()
            proc_env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"}
            proc = subprocess.Popen(argv, cwd=task, env=proc_env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            conn, _ = listener.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            times.append(time.perf_counter() - start)
            assert data.startswith(b"GET /2018-06-01/runtime/invocation/next"), data[:80]
            conn.close()
            proc.kill()
            proc.wait()
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def invoke_latencies(port: int, path: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.time() + 30
    while True:  # wait for the endpoint and warm the environment up
        try:
            conn.request("POST", path, body=EVENT)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200 and b'"ok"' in body:
                break
        except OSError:
            conn.close()
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    for _ in range(20):
        conn.request("POST", path, body=EVENT)
        conn.getresponse().read()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("POST", path, body=EVENT)
        resp = conn.getresponse()
        body = resp.read()
        times.append(time.perf_counter() - start)
        assert resp.status == 200 and b'"ok"' in body, body
    conn.close()
    return times


def rie_latencies(rie: Path, argv: list[str], env: dict[str, str], task: Path, count: int) -> list[float]:
    port = free_port()
    proc = subprocess.Popen([str(rie), "--runtime-interface-emulator-address", f"127.0.0.1:{port}", *argv],
                            cwd=task, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return invoke_latencies(port, "/2015-03-31/functions/function/invocations", count)
    finally:
        proc.terminate()
        proc.wait()


def lambdalet_serve_latencies(runtime: str, count: int) -> list[float] | None:
    """Warm latency through `lambdalet serve` (None when the server is not available)."""
    try:
        import boto3
    except ImportError:
        return None
    beside = Path(sys.executable).parent / "lambdalet"
    exe = str(beside) if beside.exists() else shutil.which("lambdalet")
    if exe is None:
        return None
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="lambdalet-bench-")
    server = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--data-dir", data_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x")
        buf = _zip({"app.py": APP})
        deadline = time.time() + 20
        while True:
            try:
                client.create_function(FunctionName="bench", Runtime=runtime, Handler="app.handler",
                                       Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": buf})
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    return None
                time.sleep(0.2)
        return invoke_latencies(port, "/2015-03-31/functions/bench/invocations", count)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def _zip(files: dict[str, str]) -> bytes:
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return out.getvalue()


def summary(name: str, seconds: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in seconds)
    row = {"p50": statistics.median(ms), "p90": ms[int(len(ms) * 0.9) - 1], "min": ms[0]}
    print(f"  {name:<40} p50 {row['p50']:7.2f} ms   p90 {row['p90']:7.2f} ms   min {row['min']:7.2f} ms")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--startups", type=int, default=30)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    interpreter = find_interpreter(args.runtime) or os.path.realpath(sys.executable)
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
    results["start_lambdalet"] = summary("lambdalet runtime", time_to_first_next(ours_argv, ours_env, task,
                                                                                  args.startups))
    results["start_awslambdaric"] = summary("awslambdaric", time_to_first_next(ric_argv, ric_env, task,
                                                                              args.startups))
    bare = [interpreter, "-s", "-c", "pass"]
    start = []
    for _ in range(args.startups):
        t = time.perf_counter()
        subprocess.run(bare, check=True)
        start.append(time.perf_counter() - t)
    results["start_bare_interpreter"] = summary("bare interpreter (-s -c pass, full run)", start)

    print(f"warm invoke latency, {args.invokes} sequential invokes each")
    results["warm_rie_awslambdaric"] = summary(
        "RIE + awslambdaric", rie_latencies(rie, ric_argv, ric_env, task, args.invokes))
    results["warm_rie_lambdalet_runtime"] = summary(
        "RIE + lambdalet runtime", rie_latencies(rie, ours_argv, ours_env, task, args.invokes))
    served = lambdalet_serve_latencies(args.runtime, args.invokes)
    if served is not None:
        results["warm_lambdalet_serve"] = summary("lambdalet serve + lambdalet runtime", served)
    else:
        print("  lambdalet serve: not available, skipped")
    ratio = results.get("warm_lambdalet_serve", results["warm_rie_lambdalet_runtime"])["p50"] / \
        results["warm_rie_awslambdaric"]["p50"]
    print(f"lambdalet warm p50 / RIE+awslambdaric warm p50 = {ratio:.2f} (goal <= 0.50)")
    if args.json:
        print(json.dumps(results, indent=2))
    shutil.rmtree(task, ignore_errors=True)


if __name__ == "__main__":
    main()
