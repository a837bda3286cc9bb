"""Helpers shared by the benchmarks: spawn-to-first-/next timing, ports, zips, figure rows."""

from __future__ import annotations

import io
import socket
import statistics
import subprocess
import time
import zipfile


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
