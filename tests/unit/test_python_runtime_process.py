"""lambdalet's Python runtime as a real process against a stub Runtime API (real sockets)."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lambdalet.environment.managed import RuntimeContext
from lambdalet.environment.managed.python import find_interpreter, launch_spec

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


class StubRuntimeApi:
    """A tiny Runtime API: /next hands out queued events, posts are recorded."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.posts: queue.Queue = queue.Queue()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                # The runtime sends its next /next with its answer: a runtime killed meanwhile must not
                # take the next test's event with it.
                while True:
                    try:
                        event = stub.events.get(timeout=0.05)
                    except queue.Empty:
                        event = None
                    if _peer_closed(self.connection):
                        if event is not None:
                            stub.events.put(event)  # for the next runtime
                        self.close_connection = True
                        return
                    if event is not None:
                        break
                request_id, body, headers = event
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 3000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", ARN)
                headers = {"Content-Type": "application/json", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.posts.put((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = b'{"status":"OK"}'
                self.send_response(202)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _peer_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class RuntimeProcess:
    """One spawned runtime process, its framed log records and stdout."""

    def __init__(self, stub: StubRuntimeApi, task_root: Path, handler: str, runtime: str = "python3.12",
                 env: dict[str, str] | None = None, opt_dir: str = "/opt") -> None:
        self.stub = stub
        spec = launch_spec(RuntimeContext(runtime=runtime, task_root=str(task_root), handler=handler,
                                          user_env=env or {}, interpreters={}, opt_dir=opt_dir))
        self.spec = spec
        read_fd, write_fd = os.pipe()
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_RUNTIME_API": stub.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc",
            "AWS_REGION": "us-east-1",
            "TZ": ":UTC",
            **(env or {}),
            **spec.env,
            "_LAMBDA_TELEMETRY_LOG_FD": str(write_fd),
        }
        self.proc = subprocess.Popen(spec.argv, cwd=task_root, env=full_env, pass_fds=(write_fd,),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.close(write_fd)
        self._read_fd = read_fd

    def invoke(self, request_id: str, event: object = None, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[str, dict[str, str], bytes]:
        body = raw if raw is not None else json.dumps(event).encode()
        self.stub.events.put((request_id, body, headers or {}))
        return self.stub.posts.get(timeout=10)

    def finish(self) -> tuple[int, list[tuple[int, str]], str]:
        """Stop (if still running) and return exit code, frames and stdout."""
        if self.proc.poll() is None:
            self.proc.kill()
        stdout = self.proc.stdout.read().decode() if self.proc.stdout else ""
        code = self.proc.wait()
        data = b""
        while chunk := os.read(self._read_fd, 65536):
            data += chunk
        os.close(self._read_fd)
        frames = []
        while data:
            kind = int.from_bytes(data[:4], "big")
            size = int.from_bytes(data[4:8], "big")
            frames.append((kind, data[16 : 16 + size].decode()))
            data = data[16 + size :]
        return code, frames, stdout


@pytest.fixture
def stub() -> Iterator[StubRuntimeApi]:
    server = StubRuntimeApi()
    yield server
    server.close()


def write_task(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(0o755)
    return root


APP = """
import json, logging, os, sys
logger = logging.getLogger()

def echo(event, context):
    print("got", json.dumps(event))
    return {"event": event, "pid": os.getpid()}

def ctx(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client_context": None if context.client_context is None else [
            context.client_context.custom, context.client_context.env,
            context.client_context.client and context.client_context.client.app_title],
        "tenant_id": context.tenant_id,
        "remaining": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "exec_env": os.environ.get("AWS_EXECUTION_ENV"),
        "telemetry_fd_var": os.environ.get("_LAMBDA_TELEMETRY_LOG_FD"),
    }

class Boom(Exception):
    pass

def fail(event, context):
    raise Boom("bad thing")

def context_log(event, context):
    context.log("line one\\nline two")
    return "logged"

def unmarshalable(event, context):
    return {1, 2}

def raw_bytes(event, context):
    return b"\\x00raw"

def logs(event, context):
    logger.debug("debug line")
    logger.info("info line")
    logger.warning("multi\\nline")
    try:
        1 / 0
    except ZeroDivisionError:
        logger.exception("caught")
    return "ok"

def paths(event, context):
    import boto3
    return {"path": sys.path, "boto3": boto3.__name__}
"""


def test_result_and_warm_reuse(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.echo")
    path, headers, body = proc.invoke("req-1", {"a": 1})
    assert path == "/2018-06-01/runtime/invocation/req-1/response"
    assert "content-type" not in headers  # application/json, the default, goes unsaid
    first = json.loads(body)
    assert first["event"] == {"a": 1}
    _, _, body = proc.invoke("req-2", {"a": 2})
    assert json.loads(body)["pid"] == first["pid"] == proc.proc.pid
    _, _, stdout = proc.finish()
    assert 'got {"a": 1}' in stdout and 'got {"a": 2}' in stdout


def test_context_and_trace_id(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.ctx")
    headers = {
        "Lambda-Runtime-Trace-Id": "Root=1-abc;Sampled=1",
        "Lambda-Runtime-Client-Context": json.dumps({"custom": {"k": "v"}, "env": {"e": "1"},
                                                     "client": {"app_title": "T"}}),
        "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id1",
                                                       "cognitoIdentityPoolId": "pool1"}),
        "Lambda-Runtime-Aws-Tenant-Id": "tenant-7",
    }
    _, _, body = proc.invoke("req-1", {}, headers)
    got = json.loads(body)
    assert got["aws_request_id"] == "req-1"
    assert got["function_name"] == "fn"
    assert got["function_version"] == "$LATEST"
    assert got["invoked_function_arn"] == ARN
    assert got["memory_limit_in_mb"] == "128"
    assert got["log_group_name"] == "/aws/lambda/fn"
    assert got["log_stream_name"] == "2026/01/01/[$LATEST]abc"
    assert got["identity"] == ["id1", "pool1"]
    assert got["client_context"] == [{"k": "v"}, {"e": "1"}, "T"]
    assert got["tenant_id"] == "tenant-7"
    assert 0 < got["remaining"] <= 3000
    assert got["trace"] == "Root=1-abc;Sampled=1"
    assert got["exec_env"] == "AWS_Lambda_python3.12"
    assert got["telemetry_fd_var"] is None
    _, _, body = proc.invoke("req-2", {})
    got = json.loads(body)
    assert got["trace"] is None and got["client_context"] is None and got["identity"] == [None, None]
    proc.finish()


def test_handler_exception(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.fail")
    path, _, body = proc.invoke("req-1", {})
    assert path == "/2018-06-01/runtime/invocation/req-1/error"
    doc = json.loads(body)
    assert list(doc) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert doc["errorMessage"] == "bad thing" and doc["errorType"] == "Boom" and doc["requestId"] == "req-1"
    assert len(doc["stackTrace"]) == 1
    assert doc["stackTrace"][0].startswith(f'  File "{tmp_path / "app.py"}", line ')
    assert "in fail" in doc["stackTrace"][0]
    # still warm
    path, _, _ = proc.invoke("req-2", {})
    assert path.endswith("/req-2/error")
    _, frames, _ = proc.finish()
    errors = [(kind, text) for kind, text in frames if text.startswith("[ERROR] Boom")]
    assert len(errors) == 2
    kind, text = errors[0]
    assert kind == 0xA55A0017
    lines = text.split("\n")
    assert lines[:2] == ["[ERROR] Boom: bad thing", "Traceback (most recent call last):"]
    assert lines[2].startswith("\u00a0\u00a0File ")
    assert lines[3].startswith("\u00a0\u00a0\u00a0\u00a0raise Boom")


def test_marshal_error_and_bytes(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.unmarshalable")
    path, _, body = proc.invoke("req-1", {})
    assert path.endswith("/req-1/error")
    doc = json.loads(body)
    assert doc["errorType"] == "Runtime.MarshalError"
    assert doc["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"
    proc.finish()
    proc = RuntimeProcess(stub, tmp_path, "app.raw_bytes")
    path, headers, body = proc.invoke("req-2", {})
    assert path.endswith("/req-2/response")
    assert headers["content-type"] == "application/unknown" and body == b"\x00raw"
    proc.finish()


INIT_CASES = [
    ("nodot", {}, "Runtime.MalformedHandlerName",
     "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"),
    ("missing.handler", {}, "Runtime.ImportModuleError",
     "Unable to import module 'missing': No module named 'missing'"),
    ("bad.handler", {"bad.py": "def handler(:\n"}, "Runtime.UserCodeSyntaxError",
     "Syntax error in module 'bad': "),
    ("app.nope", {"app.py": "x = 1\n"}, "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
    ("sys.handler", {}, "Runtime.BuiltInModuleConflict",
     "Cannot use built-in module sys as a handler module"),
    ("boom.handler", {"boom.py": "class InitBoom(Exception): pass\nraise InitBoom('at import')\n"},
     "InitBoom", "at import"),
    ("dep.handler", {"dep.py": "import not_installed_dep\n"}, "Runtime.ImportModuleError",
     "Unable to import module 'dep': No module named 'not_installed_dep'"),
]


@pytest.mark.parametrize(("handler", "files", "error_type", "message"), INIT_CASES,
                         ids=[case[2] + ":" + case[0] for case in INIT_CASES])
def test_init_errors(stub: StubRuntimeApi, tmp_path: Path, handler: str, files: dict[str, str],
                     error_type: str, message: str) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, files), handler)
    path, headers, body = stub.posts.get(timeout=10)
    assert path == "/2018-06-01/runtime/init/error"
    assert headers["lambda-runtime-function-error-type"] == error_type
    doc = json.loads(body)
    assert doc["errorType"] == error_type and doc["requestId"] == ""
    assert doc["errorMessage"].startswith(message)
    if error_type == "InitBoom":
        assert doc["stackTrace"] and all("bootstrap" not in line for line in doc["stackTrace"])
        assert doc["stackTrace"][-1].startswith(f'  File "{tmp_path / "boom.py"}"')
    if error_type == "Runtime.UserCodeSyntaxError":
        assert doc["stackTrace"][0].startswith(f'  File "{tmp_path / "bad.py"}" Line 1\n')
    proc.proc.wait(10)
    code, frames, _ = proc.finish()
    assert code == 1
    texts = [text for _, text in frames]
    assert any(text.startswith("[WARNING]\t") and "LAMBDA_WARNING: Unhandled exception." in text
               for text in texts)
    assert any(text.startswith(f"[ERROR] {error_type}: {message}") for text in texts)


def test_handler_paths(stub: StubRuntimeApi, tmp_path: Path) -> None:
    files = {
        "src/handlers/web.py": "def main(event, context):\n    return 'slash'\n",
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "def fn(event, context):\n    return 'dotted'\n",
        "dir/sys.py": "def h(event, context):\n    return 'dir-sys'\n",
    }
    write_task(tmp_path, files)
    for handler, expected in [("src/handlers/web.main", "slash"), ("pkg.sub.mod.fn", "dotted"),
                              ("dir/sys.h", "dir-sys")]:
        proc = RuntimeProcess(stub, tmp_path, handler)
        path, _, body = proc.invoke("req-1", {})
        assert path.endswith("/response"), (handler, body)
        assert json.loads(body) == expected
        proc.finish()


def test_text_logging(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.logs")
    proc.invoke("req-1", {})
    _, frames, _ = proc.finish()
    texts = [(kind, text) for kind, text in frames]
    # default root level WARNING: debug/info dropped; no level set: untyped text frames
    assert not any("info line" in text for _, text in texts)
    warn = next((kind, text) for kind, text in texts if "multi" in text)
    assert warn[0] == 0xA55A0003
    prefix, stamp, request_id, message = warn[1].split("\t", 3)
    assert prefix == "[WARNING]" and request_id == "req-1" and message == "multi\nline\n"
    assert len(stamp) == 24 and stamp.endswith("Z") and stamp[19] == "."
    caught = next(text for _, text in texts if "caught" in text)
    assert caught.startswith("[ERROR]\t") and "Traceback (most recent call last):" in caught
    assert "ZeroDivisionError: division by zero" in caught


def test_log_level_and_json(stub: StubRuntimeApi, tmp_path: Path) -> None:
    write_task(tmp_path, {"app.py": APP})
    proc = RuntimeProcess(stub, tmp_path, "app.logs", env={"AWS_LAMBDA_LOG_LEVEL": "debug"})
    proc.invoke("req-1", {})
    _, frames, _ = proc.finish()
    by_text = {text.split("\t")[0] + text.split("\t")[-1].split("\n")[0]: kind for kind, text in frames}
    assert by_text["[DEBUG]debug line"] == 0xA55A000B
    assert by_text["[INFO]info line"] == 0xA55A000F
    proc = RuntimeProcess(stub, tmp_path, "app.logs",
                          env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    proc.invoke("req-2", {})
    _, frames, _ = proc.finish()
    records = [(kind, json.loads(text)) for kind, text in frames]
    info = next(r for k, r in records if r.get("message") == "info line")
    assert list(info) == ["timestamp", "level", "message", "logger", "requestId"]
    assert info["level"] == "INFO" and info["logger"] == "root" and info["requestId"] == "req-2"
    assert info["timestamp"].endswith("Z") and len(info["timestamp"]) == 20
    assert not any(r.get("message") == "debug line" for _, r in records)
    kind, caught = next((k, r) for k, r in records if r.get("message") == "caught")
    assert kind == 0xA55A0016
    assert caught["errorType"] == "ZeroDivisionError" and caught["errorMessage"] == "division by zero"
    assert caught["stackTrace"] and caught["location"].endswith(":logs:" + caught["location"].split(":")[-1])


def test_json_uncaught_error(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.fail",
                          env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    proc.invoke("req-1", {})
    _, frames, _ = proc.finish()
    kind, text = frames[-1]
    record = json.loads(text)
    assert kind == 0xA55A0016
    assert list(record) == ["timestamp", "level", "errorMessage", "errorType", "requestId", "stackTrace"]
    assert record["errorType"] == "Boom" and record["requestId"] == "req-1"


def test_sys_path_and_host_boto3(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.paths",
                          opt_dir=str(tmp_path / "opt"))
    path, _, body = proc.invoke("req-1", {})
    assert path.endswith("/response"), body
    got = json.loads(body)
    assert got["boto3"] == "boto3"
    sys_path = got["path"]
    assert sys_path[0] == str(tmp_path)
    layer = tmp_path / "opt" / "python"
    assert sys_path[1:3] == [str(layer / "lib" / "python3.12" / "site-packages"), str(layer)]
    runtime_dir = str(Path(proc.spec.argv[-2]).parent)
    assert runtime_dir not in sys_path
    host_site = proc.spec.env["_LAMBDALET_HOST_SITE_PACKAGES"].split(os.pathsep)
    assert sys_path[-len(host_site) :] == host_site
    proc.finish()


def test_exec_wrapper(stub: StubRuntimeApi, tmp_path: Path) -> None:
    wrapper = '#!/bin/sh\necho "wrapped: $*"\nexport WRAPPED=yes\nexec "$@"\n'
    files = {"app.py": "import os\ndef h(e, c):\n    return os.environ.get('WRAPPED')\n", "wrap.sh": wrapper,
             "noexec": "#!/bin/sh\n"}
    write_task(tmp_path, files)
    proc = RuntimeProcess(stub, tmp_path, "app.h", env={"AWS_LAMBDA_EXEC_WRAPPER": str(tmp_path / "wrap.sh")})
    _, _, body = proc.invoke("req-1", {})
    assert json.loads(body) == "yes"
    _, _, body = proc.invoke("req-2", {})
    assert json.loads(body) == "yes"
    _, _, stdout = proc.finish()
    assert stdout.count("wrapped: ") == 1
    line = stdout.splitlines()[0]
    assert line.startswith(f"wrapped: {proc.spec.argv[0]} -s -u ") and line.endswith("bootstrap.py app.h")

    missing = str(tmp_path / "nope.sh")
    proc = RuntimeProcess(stub, tmp_path, "app.h", env={"AWS_LAMBDA_EXEC_WRAPPER": missing})
    proc.proc.wait(10)
    code, _, stdout = proc.finish()
    assert code == 127 and stdout.strip() == f"{missing}: does not exist"

    noexec = str(tmp_path / "noexec")
    proc = RuntimeProcess(stub, tmp_path, "app.h", env={"AWS_LAMBDA_EXEC_WRAPPER": noexec})
    proc.proc.wait(10)
    code, _, stdout = proc.finish()
    assert code == 126 and stdout.strip() == f"{noexec}: is not an executable"


def host_interpreters() -> list[str]:
    return [name for name in sorted({f"python3.{m}" for m in range(9, 15)}) if find_interpreter(name)]


@pytest.mark.parametrize("runtime", host_interpreters())
def test_each_host_interpreter(stub: StubRuntimeApi, tmp_path: Path, runtime: str) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.echo", runtime=runtime)
    assert not proc.spec.warnings
    path, _, body = proc.invoke("req-1", {"é": 1})
    assert path.endswith("/response"), body
    assert json.loads(body)["event"] == {"é": 1}
    _, _, again = proc.invoke("req-2", {})
    assert json.loads(again)["pid"] == json.loads(body)["pid"]
    proc.finish()


def test_unmarshal_error(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.echo")
    path, _, body = proc.invoke("req-1", raw=b"{not json")
    assert path.endswith("/req-1/error")
    doc = json.loads(body)
    assert doc["errorType"] == "Runtime.UnmarshalError"
    assert doc["errorMessage"].startswith("Unable to unmarshal input: Expecting property name")
    # a non-JSON content type hands the handler raw bytes, which echo cannot marshal back
    path, _, body = proc.invoke("req-2", raw=b"plain", headers={"Content-Type": "text/plain"})
    assert json.loads(body)["errorMessage"].endswith("Object of type bytes is not JSON serializable")
    proc.finish()


def test_time_to_first_next(stub: StubRuntimeApi, tmp_path: Path) -> None:
    """The runtime reaches /next quickly (generous bound: this machine is shared)."""
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": "def h(e, c):\n    return 1\n"}), "app.h")
    start = time.perf_counter()
    proc.invoke("req-1", {})
    assert time.perf_counter() - start < 2.0
    proc.finish()


def test_context_log_is_one_record(stub: StubRuntimeApi, tmp_path: Path) -> None:
    proc = RuntimeProcess(stub, write_task(tmp_path, {"app.py": APP}), "app.context_log")
    proc.invoke("req-1", {})
    _, frames, _ = proc.finish()
    assert (0xA55A0003, "line one\nline two") in frames
