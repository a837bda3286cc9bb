"""Shared by the runtime benchmarks: time from spawning a runtime to its first GET /next."""

from __future__ import annotations

import socket
import subprocess
import time


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
