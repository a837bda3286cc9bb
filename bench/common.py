"""Helpers shared by the benchmarks: spawn-to-first-/next timing, ports, zips, figure rows, AWS's RIE and
awslambdaric in a throwaway venv, a keep-alive invoker, and /proc CPU accounting."""

from __future__ import annotations

import http.client
import io
import math
import os
import socket
import statistics
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path


def spawn_until_next(listener: socket.socket, argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Spawn argv with AWS_LAMBDA_RUNTIME_API pointing at listener; seconds until its /next arrives."""
    port = listener.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn, _ = listener.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    elapsed = time.perf_counter() - start
    assert data.startswith(b"GET /2018-06-01/runtime/invocation/next"), data[:80]
    conn.close()
    proc.kill()
    proc.wait()
    return elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zip_files(files: dict[str, str], executable: tuple[str, ...] = ()) -> bytes:
    """A function zip; the names in executable get mode 0755."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            zf.writestr(info, text)
    return out.getvalue()


def summary(name: str, seconds: list[float]) -> dict[str, float]:
    """Print and return p50 / p90 / min of timings given in seconds, in ms."""
    ms = sorted(t * 1000 for t in seconds)
    row = {"p50": statistics.median(ms), "p90": ms[max(int(len(ms) * 0.9) - 1, 0)], "min": ms[0]}
    print(f"  {name:<48} p50 {row['p50']:7.2f} ms   p90 {row['p90']:7.2f} ms   min {row['min']:7.2f} ms")
    return row


# ---------------------------------------------------------------- AWS's tools (RIE + awslambdaric)
# Installed in a throwaway venv under /tmp, never a project dependency. Shared by
# bench_python_runtime.py and bench_warm_path.py.

WORK = Path(os.environ.get("LAMBDALET_BENCH_DIR", "/tmp/lambdalet-bench"))


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def prepare_tools(python: str) -> tuple[Path, Path]:
    """A venv with awslambdaric, and the aws-lambda-rie binary out of the aws-sam-cli wheel."""
    WORK.mkdir(parents=True, exist_ok=True)
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


def base_env(task: Path) -> dict[str, str]:
    """The Lambda variables a runtime process needs when it runs under the RIE or a bare socket."""
    return {
        "PATH": os.environ["PATH"], "LANG": "C.UTF-8", "TZ": ":UTC", "LAMBDA_TASK_ROOT": str(task),
        "_HANDLER": "app.handler", "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_REGION": "us-east-1",
    }


BENCH_EVENT = b'{"hello": "world", "n": 42}'


class Invoker:
    """Sequential synchronous invokes over one keep-alive HTTP connection; once() times one."""

    def __init__(self, port: int, path: str, body: bytes = BENCH_EVENT, expect: bytes = b'"ok"',
                 wait_s: float = 30.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path = path
        self.body = body
        self.expect = expect
        deadline = time.time() + wait_s
        while True:  # wait for the endpoint and the environment's init
            try:
                self.once()
                break
            except (OSError, AssertionError, http.client.HTTPException):
                self.conn.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        if self.conn.sock is not None:
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, body: bytes) -> bytes:
        self.conn.request("POST", self.path, body=body)
        resp = self.conn.getresponse()
        data = resp.read()
        assert resp.status == 200, (resp.status, data[:200])
        return data

    def once(self) -> float:
        start = time.perf_counter()
        self.conn.request("POST", self.path, body=self.body)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - start
        assert resp.status == 200 and self.expect in body, body
        return elapsed

    def close(self) -> None:
        self.conn.close()


def start_rie(rie: Path, argv: list[str], env: dict[str, str], task: Path, *, runtime_api: str | None = None,
              body: bytes = BENCH_EVENT, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, Invoker]:
    """The RIE running argv as its runtime, and an Invoker on it (after one successful invoke).

    Without runtime_api the RIE serves its Runtime API on 127.0.0.1:9001, so only one runs at a time.
    """
    port = free_port()
    extra = ["--runtime-api-address", runtime_api] if runtime_api else []
    proc = subprocess.Popen([str(rie), "--runtime-interface-emulator-address", f"127.0.0.1:{port}", *extra, *argv],
                            cwd=task, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        return proc, Invoker(port, "/2015-03-31/functions/function/invocations", body=body)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of values (p in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# ---------------------------------------------------------------- /proc accounting (Linux)

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    cpu_ticks: int  # utime + stime of the whole process (all its threads), in CLK_TCK units
    start: int  # start time since boot, in ticks: (pid, start) names a process across pid reuse
    stime: int = 0  # the kernel-mode part of cpu_ticks


def read_proc(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("latin-1")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return ProcInfo(pid, int(fields[1]), comm, int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[12]))


def process_table() -> dict[int, ProcInfo]:
    table: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_proc(int(name))
            if info is not None:
                table[info.pid] = info
    return table


def descendants(root: int, table: dict[int, ProcInfo] | None = None) -> dict[int, ProcInfo]:
    """Every live process below root (children, grandchildren, ...)."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    out: dict[int, ProcInfo] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in table and pid not in out:
            out[pid] = table[pid]
            todo.extend(children.get(pid, ()))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total
