"""A stub Runtime API (real sockets, raw HTTP/1.1) and a runner for lambdalet's Node.js runtime.

Shared by the test_nodejs_runtime_*.py modules; it records every request byte for byte so tests can
check the exact wire format (chunked streaming bodies, trailers).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lambdalet.environment.managed import RuntimeContext
from lambdalet.environment.managed import nodejs as nodejs_launch

NEXT_PATH = "/2018-06-01/runtime/invocation/next"


@dataclass
class Recorded:
    """One request the runtime made."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes  # decoded (chunks joined)
    raw: bytes  # everything after the request line's header block, as sent
    trailers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    chunk_times: list[float] = field(default_factory=list)  # time.monotonic() when each chunk arrived
    head: bytes = b""  # the request line and header block, as sent

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def trailer(self, name: str) -> str | None:
        for key, value in self.trailers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Event:
    request_id: str
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    deadline_ms: int | None = None


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class StubRuntimeApi:
    """Serves queued events on /next and records /response, /error and /init/error."""

    def __init__(self, events: list[Event]) -> None:
        self.events = list(events)
        self.requests: list[Recorded] = []
        self.answers: list[Recorded] = []  # /response, /error, /init/error in order
        self.cond = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        with self.cond:
            self.cond.notify_all()

    def wait_answers(self, n: int, timeout: float = 10.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.answers) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return list(self.answers)

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        try:
            while True:
                rec = self._read_request(conn)
                with self.cond:
                    self.requests.append(rec)
                if rec.path == NEXT_PATH:
                    self._answer_next(sock)
                else:
                    with self.cond:
                        self.answers.append(rec)
                        self.cond.notify_all()
                    body = b'{"status":"OK"}'
                    sock.sendall(
                        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
        except (ConnectionError, OSError):
            pass
        finally:
            sock.close()

    def _answer_next(self, sock: socket.socket) -> None:
        with self.cond:
            while not self.events and not self.closed:
                self.cond.wait(0.5)
            if self.closed:
                raise ConnectionError("closed")
            event = self.events.pop(0)
        deadline = event.deadline_ms or int(time.time() * 1000) + 30_000
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": event.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
            **event.headers,
            "Content-Length": str(len(event.body)),
        }
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + event.body)

    @staticmethod
    def _read_request(conn: _Conn) -> Recorded:
        head = conn.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers.append((key, value.strip()))
        names = {k.lower(): v for k, v in headers}
        rec = Recorded(method, path, headers, b"", b"", head=head)
        if names.get("transfer-encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size_line = conn.read_until(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                data = conn.read_exact(size + 2)
                raw += data
                rec.chunks.append(data[:-2])
                rec.chunk_times.append(time.monotonic())
            while True:
                line = conn.read_until(b"\r\n")
                raw += line
                if line == b"\r\n":
                    break
                key, _, value = line.decode("latin-1").partition(":")
                rec.trailers.append((key, value.strip()))
            rec.raw = raw
            rec.body = b"".join(rec.chunks)
        else:
            length = int(names.get("content-length", "0"))
            rec.body = rec.raw = conn.read_exact(length)
        return rec


class MemoryContext(RuntimeContext):
    """RuntimeContext plus memory_mb, as the platform may pass it."""

    def __init__(self, *args: object, memory_mb: int | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.memory_mb = memory_mb


@dataclass
class RunResult:
    answers: list[Recorded]
    requests: list[Recorded]
    output: str
    returncode: int | None
    api: StubRuntimeApi
    frames: list[tuple[int, int, bytes]] = field(default_factory=list)  # (type, timestamp us, message)

    @property
    def log_lines(self) -> list[str]:
        return [line for line in self.output.split("\n") if line]


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def run_runtime(
    tmp_path: Path,
    files: dict[str, str | bytes],
    handler: str,
    events: list[Event],
    *,
    runtime: str = "nodejs20.x",
    env: dict[str, str] | None = None,
    expect_answers: int | None = None,
    expect_exit: bool = False,
    timeout: float = 10.0,
    memory_mb: int | None = 128,
    telemetry: bool = False,
) -> RunResult:
    """Start the runtime as the platform would (launch_spec argv/env), feed events, collect answers.

    stdout+stderr are captured together. The process is killed at the end unless it exited itself.
    """
    task_root = tmp_path / "task"
    task_root.mkdir(exist_ok=True)
    write_files(task_root, files)
    api = StubRuntimeApi(events)
    user_env = dict(env or {})
    ctx = MemoryContext(
        runtime=runtime, task_root=str(task_root), handler=handler, user_env=user_env,
        interpreters={}, memory_mb=memory_mb,
    )
    spec = nodejs_launch.launch_spec(ctx)
    proc_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "HOME": str(tmp_path),
        **user_env,
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(nodejs_launch.RUNTIME_DIR),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb or 128),
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc_env.update(spec.env)
    pass_fds: tuple[int, ...] = ()
    frame_data = bytearray()
    reader = None
    if telemetry:
        frame_r, frame_w = os.pipe()
        proc_env["_LAMBDA_TELEMETRY_LOG_FD"] = str(frame_w)
        pass_fds = (frame_w,)

        def drain() -> None:
            while chunk := os.read(frame_r, 65536):
                frame_data.extend(chunk)
            os.close(frame_r)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
    proc = subprocess.Popen(
        spec.argv, cwd=task_root, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, pass_fds=pass_fds,
    )
    if telemetry:
        os.close(frame_w)
    want = expect_answers if expect_answers is not None else len(events)
    try:
        if expect_exit:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
            answers = api.wait_answers(want, timeout=0.5)
        else:
            deadline = time.monotonic() + timeout
            answers = api.wait_answers(want, timeout=timeout)
            while len(answers) < want and proc.poll() is None and time.monotonic() < deadline:
                answers = api.wait_answers(want, timeout=0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=10)
        api.close()
        if reader is not None:
            reader.join(timeout=5)
    return RunResult(
        answers, list(api.requests), out.decode("utf-8", "replace"), proc.returncode, api,
        parse_frames(bytes(frame_data)),
    )


def parse_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split telemetry log fd bytes into (type, timestamp_us, message) frames."""
    frames = []
    while len(data) >= 16:
        kind, length, ts = struct.unpack(">IIQ", data[:16])
        frames.append((kind, ts, data[16 : 16 + length]))
        data = data[16 + length :]
    return frames
