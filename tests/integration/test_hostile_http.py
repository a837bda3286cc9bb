"""Both doors under real-size and hostile traffic, through a real `lambdalet serve` and keep-alive clients."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import threading
import time
from urllib.parse import urlparse

import pytest
from botocore.exceptions import ClientError
from conftest import create_function, log_messages, make_zip, start_server, stop_server, unique_name

# A keep-alive Python bootstrap: answers {"size": N} with N bytes of JSON, {"print": N} prints N bytes
# first, {"headers": {...}} answers a function URL result with those headers.
PY_LOOP = r"""#!/bin/sh
exec python3 - <<'EOF'
import http.client, json, os, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    if "body" in event and isinstance(event.get("body"), str):
        event = json.loads(event["body"])
    if "print" in event:
        line = "x" * 1023 + "\n"
        for _ in range(event["print"] // 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
    if "size" in event:
        out = json.dumps("y" * (event["size"] - 2)).encode()
    elif "url" in event:
        out = json.dumps(event["url"]).encode()
    else:
        out = json.dumps({"pid": os.getpid()}).encode()
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=out)
    conn.getresponse().read()
EOF
"""


def _conn(server) -> http.client.HTTPConnection:
    u = urlparse(server.endpoint)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def _server_sockets(server, state: str) -> int:
    """Sockets of the server process in a TCP state ('08' is CLOSE_WAIT), by inode."""
    inodes = set()
    for fd in os.listdir(f"/proc/{server.process.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{server.process.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == state and cols[9] in inodes:
                    count += 1
    return count


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def py_fn(server):
    name = unique_name("pyloop")
    create_function(server, name, make_zip({"bootstrap": PY_LOOP}), timeout=30, memory=512)
    return name


def _random_zip(size: int) -> bytes:
    return make_zip({"bootstrap": PY_LOOP, "blob.bin": os.urandom(size)})


def test_big_zip_then_invoke_on_the_same_boto3_client(server):
    """A 1.5 MB CreateFunction body used to leave the keep-alive connection unread: the invoke hung."""
    lam = server.client("lambda", read_timeout=20)
    name = unique_name("bigzip")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="x",
                        Role="arn:aws:iam::111111111111:role/x", Code={"ZipFile": _random_zip(1_500_000)}, Timeout=10)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "pid" in json.loads(out["Payload"].read())
    lam.update_function_code(FunctionName=name, ZipFile=_random_zip(2_500_000))
    assert lam.get_function(FunctionName=name)["Configuration"]["CodeSize"] > 2_500_000


def test_one_mib_bodies_keep_the_connection_reading(server, py_fn):
    """http.client reusing its connection: bodies around 1 MiB, then a small request, each answered;
    no socket is left in CLOSE_WAIT."""
    conn = _conn(server)
    path = f"/2015-03-31/functions/{py_fn}/invocations"
    for size in (1 << 20, (1 << 20) + 1, 3 << 20):
        payload = json.dumps({"pad": "p" * (size - 11)}).encode()
        assert len(payload) == size
        conn.request("POST", path, body=payload)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert "pid" in json.loads(resp.read())
        conn.request("GET", "/lambdalet/health")
        health = conn.getresponse()
        assert health.status == 200 and health.read() == b'{"status":"ok"}'
    conn.close()
    time.sleep(0.3)
    assert _server_sockets(server, "08") == 0


@pytest.mark.parametrize("size", [(1 << 20) + 5, 5_000_000, 6_291_556])
def test_function_responses_over_one_mib_stay_warm(server, py_fn, size):
    """Responses over 1 MiB used to stop the Runtime API reading: 'Task timed out' and a cold start."""
    lam = server.client("lambda", read_timeout=30)
    first = lam.invoke(FunctionName=py_fn, Payload=json.dumps({}))
    pid = json.loads(first["Payload"].read())["pid"]
    out = lam.invoke(FunctionName=py_fn, Payload=json.dumps({"size": size}))
    assert "FunctionError" not in out
    assert len(out["Payload"].read()) == size
    again = lam.invoke(FunctionName=py_fn, Payload=json.dumps({}))
    assert json.loads(again["Payload"].read())["pid"] == pid  # the same warm environment


def test_function_response_over_the_limit_is_an_error_and_stays_warm(server, py_fn):
    lam = server.client("lambda", read_timeout=30)
    out = lam.invoke(FunctionName=py_fn, Payload=json.dumps({"size": 6_291_557}))
    assert out["FunctionError"] == "Unhandled"
    doc = json.loads(out["Payload"].read())
    assert doc["errorType"] == "Function.ResponseSizeTooLarge"
    assert doc["errorMessage"] == "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    again = lam.invoke(FunctionName=py_fn, Payload=b"{}")
    assert "pid" in json.loads(again["Payload"].read())


def test_invoke_payload_over_the_limit_answers_413_on_keep_alive(server, py_fn):
    lam = server.client("lambda", read_timeout=15)
    lam.invoke(FunctionName=py_fn, Payload=b"{}")  # the connection is now pooled
    big = json.dumps({"pad": "p" * 6_291_556}).encode()
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName=py_fn, Payload=big)
    assert err.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291556 bytes" in err.value.response["Error"]["Message"]
    out = lam.invoke(FunctionName=py_fn, Payload=b"{}")  # the same client goes on working
    assert "pid" in json.loads(out["Payload"].read())


def _url_fn(server, result: dict) -> str:
    name = unique_name("urlhdr")
    code = ("import json\n"
            f"RESULT = {result!r}\n"
            "def handler(event, context):\n    return RESULT\n")
    server.lambda_client.create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler", Role="arn:aws:iam::111111111111:role/x",
        Code={"ZipFile": make_zip({"app.py": code}, executable=())})
    url = server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    return url


def _raw_get(url: str) -> bytes:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=20) as s:
        s.sendall(f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_function_url_header_with_crlf_is_a_502_not_a_split_response(server):
    url = _url_fn(server, {"statusCode": 200, "headers": {"x-a": "1\r\nx-injected: yes"}, "body": "ok"})
    raw = _raw_get(url)
    assert raw.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), raw[:200]
    assert b"x-injected" not in raw.lower()


def test_function_url_non_latin1_header_is_sent_as_utf8(server):
    url = _url_fn(server, {"statusCode": 200, "headers": {"x-price": "5 €"}, "body": "ok"})
    raw = _raw_get(url)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw[:200]
    assert "x-price: 5 €\r\n".encode() in raw


@pytest.mark.parametrize(("status", "reason"), [(302, "Found"), (301, "Moved Permanently"), (304, "Not Modified"),
                                                (307, "Temporary Redirect"), (401, "Unauthorized"),
                                                (418, "I'm a teapot")])
def test_function_url_status_lines_use_standard_reasons(server, status, reason):
    url = _url_fn(server, {"statusCode": status, "headers": {"location": "/x"}, "body": ""})
    assert _raw_get(url).startswith(f"HTTP/1.1 {status} {reason}\r\n".encode())


class _Latency:
    """Warm invokes in a loop on another thread; the longest one while it ran."""

    def __init__(self, server, name: str) -> None:
        self.conn = _conn(server)
        self.path = f"/2015-03-31/functions/{name}/invocations"
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            self.conn.request("POST", self.path, body=b"{}")
            self.conn.getresponse().read()
            self.worst = max(self.worst, time.perf_counter() - t)
            self.count += 1

    def __enter__(self) -> _Latency:
        for _ in range(20):  # warm up
            self.conn.request("POST", self.path, body=b"{}")
            self.conn.getresponse().read()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)
        self.conn.close()


def _send_raw(server, data: bytes, read: bool = True) -> bytes:
    u = urlparse(server.endpoint)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while read and (chunk := s.recv(65536)):
                answer += chunk
    return answer


def test_hostile_heads_answer_431_fast_without_stalling_invokes(server, py_fn):
    """A 64 MB header line (8.8 s and 127 MB of RSS before) and 200,000 repeated headers (2.4 s)."""
    rss_before = _rss_kb(server.process.pid)
    line = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n"
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Rep: %d\r\n" % i for i in range(200_000)) + b"\r\n"
    with _Latency(server, py_fn) as probe:  # (built before: building them holds this process's GIL)
        t = time.perf_counter()
        answer = _send_raw(server, line)
        elapsed_line = time.perf_counter() - t
        t = time.perf_counter()
        answer2 = _send_raw(server, many)
        elapsed_many = time.perf_counter() - t
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert answer2.startswith(b"HTTP/1.1 431 "), answer2[:100]
    assert b"RequestTooLargeException" in answer
    assert elapsed_line < 3 and elapsed_many < 3, (elapsed_line, elapsed_many)
    assert _rss_kb(server.process.pid) - rss_before < 32 * 1024
    print(f"worst warm invoke meanwhile: {probe.worst * 1000:.1f} ms over {probe.count}")
    assert probe.worst < 1.0, probe.worst  # (before: the 64 MB line alone held the loop 8.8 s)


def test_malformed_request_is_a_400_in_aws_shape(server):
    answer = _send_raw(server, b"GARBAGE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["__type"] == "InvalidRequestContentException"


def test_tail_log_of_a_loud_function_keeps_server_memory_flat(server, py_fn):
    """LogType=Tail used to keep every line: 100 MB printed cost 300 MB of server RSS."""
    lam = server.client("lambda", read_timeout=60)
    lam.invoke(FunctionName=py_fn, Payload=b"{}")
    rss_before = _rss_kb(server.process.pid)
    out = lam.invoke(FunctionName=py_fn, Payload=json.dumps({"print": 40 << 20}), LogType="Tail")
    tail = base64.b64decode(out["LogResult"])
    assert len(tail) <= 4096 and b"REPORT RequestId" in tail
    grown_mb = (_rss_kb(server.process.pid) - rss_before) / 1024
    print(f"server RSS grew {grown_mb:.1f} MB for 40 MB of log")
    assert grown_mb < 40


def test_idle_and_half_open_connections_are_closed_and_capped(tmp_path):
    srv = start_server(tmp_path / "data", "--keep-alive-timeout", "0.5", "--max-connections", "40")
    try:
        u = urlparse(srv.endpoint)
        half_open = []
        for _ in range(30):  # a request line and no end of headers: held for ever before
            s = socket.create_connection((u.hostname, u.port), timeout=5)
            s.sendall(b"GET /lambdalet/health HTTP/1.1\r\nHost: x\r\n")
            half_open.append(s)
        idle = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        idle.request("GET", "/lambdalet/health")
        assert idle.getresponse().read() == b'{"status":"ok"}'
        extra = [socket.create_connection((u.hostname, u.port), timeout=5) for _ in range(12)]
        refused = 0
        for s in extra:
            s.sendall(b"GET /lambdalet/health HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                if s.recv(4096).startswith(b"HTTP/1.1 503 "):
                    refused += 1
        assert refused >= 1  # 30 + 1 + 12 > 40
        time.sleep(2.0)  # keep-alive 0.5 s, swept every 0.125 s
        for s in half_open:
            s.settimeout(2)
            data = b""
            with contextlib.suppress(ConnectionResetError):
                data = s.recv(4096)
            assert data == b""  # closed by the server, unanswered
            s.close()
        assert idle.sock is None or idle.sock.recv(1) == b""
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)  # room again
        conn.request("GET", "/lambdalet/health")
        assert conn.getresponse().status == 200
        conn.close()
        for s in extra:
            s.close()
    finally:
        stop_server(srv)


def test_event_invokes_still_logged(server, py_fn):
    """The warm Event path is untouched by the limits."""
    lam = server.lambda_client
    out = lam.invoke(FunctionName=py_fn, InvocationType="Event", Payload=b"{}")
    assert out["StatusCode"] == 202
    deadline = time.time() + 20
    while time.time() < deadline:
        if sum(m.startswith("REPORT") for m in log_messages(server, py_fn)) >= 1:
            return
        time.sleep(0.2)
    raise AssertionError("event invoke never ran")


def test_heavy_invoke_payloads_are_checked_to_be_json(server, py_fn):
    """A 3 MB payload of 1.5 million values (~180 ms of json.loads) is checked by a child process,
    not on the event loop; a broken one is refused as Lambda refuses it."""
    lam = server.client("lambda", read_timeout=60)
    dense = b"[" + b"0," * 1_500_000 + b"0]"
    out = lam.invoke(FunctionName=py_fn, Payload=dense)
    assert "pid" in json.loads(out["Payload"].read())
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName=py_fn, Payload=dense[:-1])  # no closing bracket
    assert err.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName=py_fn, Payload=dense[:800_000], InvocationType="Event")  # (under 1 MB)
    assert err.value.response["Error"]["Code"] == "InvalidRequestContentException"


def test_client_context_with_a_newline_reaches_the_function_intact(server):
    """JSON may hold a newline between tokens: passed on as it was, it would forge a header line of
    the runtime's /next answer."""
    name = unique_name("ctx")
    code = "def handler(event, context):\n    return context.client_context.custom\n"
    server.lambda_client.create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler", Role="arn:aws:iam::111111111111:role/x",
        Code={"ZipFile": make_zip({"app.py": code}, executable=())})
    context = base64.b64encode(b'{"custom":\n{"a": "b"},\r\n"env": {}}').decode()
    out = server.lambda_client.invoke(FunctionName=name, Payload=b"{}", ClientContext=context)
    assert "FunctionError" not in out
    assert json.loads(out["Payload"].read()) == {"a": "b"}


def test_logs_api_request_over_the_limit_names_its_operation(server):
    conn = _conn(server)
    body = json.dumps({"logGroupName": "/aws/lambda/x", "filterPattern": "p" * (1 << 20)}).encode()
    conn.request("POST", "/", body=body, headers={"X-Amz-Target": "Logs_20140328.FilterLogEvents",
                                                   "Content-Type": "application/x-amz-json-1.1"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    assert resp.status == 413 and doc["__type"] == "RequestEntityTooLargeException"
    assert doc["message"] == "Request must be smaller than 1048576 bytes for the FilterLogEvents operation"
    conn.close()


def test_a_half_closed_client_gets_a_slow_invoke_answer(server):
    """A client that shuts down its sending side after the request (`nc -N`, some proxies) still gets
    the answer of an invoke that takes a while, then the server closes."""
    name = unique_name("slow")
    app = "import time\ndef handler(event, context):\n    time.sleep(0.3)\n    return {'slept': True}\n"
    create_function(server, name, make_zip({"app.py": app}), runtime="python3.11", handler="app.handler")
    host, port = server.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 2\r\n\r\n{}".encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
    assert json.loads(body) == {"slept": True}


_OPERATIONS = [  # (method, path) of the operations added with versions, aliases, layers, tags, configs
    ("POST", "/2015-03-31/functions/{f}/versions"), ("POST", "/2015-03-31/functions/{f}/aliases"),
    ("PUT", "/2015-03-31/functions/{f}/aliases/a"), ("POST", "/2018-10-31/layers/l/versions"),
    ("PUT", "/2019-09-25/functions/{f}/event-invoke-config"), ("POST", "/2019-09-25/functions/{f}/event-invoke-config"),
    ("POST", "/2015-03-31/functions/{f}/policy"), ("POST", "/2018-10-31/layers/l/versions/1/policy"),
    ("POST", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:{f}"),
    ("PUT", "/2019-09-30/functions/{f}/provisioned-concurrency?Qualifier=1"),
    ("PUT", "/2024-08-31/functions/{f}/recursion-config"), ("PUT", "/2017-10-31/functions/{f}/concurrency"),
]
_BODIES = [b"[" * 100_000 + b"]" * 100_000, b"{not json", b"[]", b'"text"', b"null", b"\xff\xfe",
           b'{"Name": {"a": [1]}, "FunctionVersion": 7, "RoutingConfig": "x", "Content": 1, "Tags": [1],'
           b' "DestinationConfig": {"OnSuccess": 5}, "StatementId": null, "Principal": {}, "RecursiveLoop": 1,'
           b' "ProvisionedConcurrentExecutions": "9", "ReservedConcurrentExecutions": 1e400}']
_QUERY_VALUES = ["", "%00", "-1", "99999999999999999999", "%FF%FE", "1.5", "a" * 300, "%0d%0aX:1"]
_QUERIES = ["/2015-03-31/functions/{f}/versions?MaxItems={q}&Marker={q}",
            "/2015-03-31/functions/{f}/aliases?MaxItems={q}&FunctionVersion={q}",
            "/2018-10-31/layers?MaxItems={q}&Marker={q}&CompatibleRuntime={q}",
            "/2015-03-31/functions/{f}?Qualifier={q}",
            "/2019-09-25/functions/{f}/event-invoke-config/list?MaxItems={q}",
            "/2015-03-31/functions/{f}/policy?Qualifier={q}", "/2018-10-31/layers/l/versions/{q}",
            "/2018-10-31/layers?find=LayerVersion&Arn={q}",
            "/2019-09-30/functions/{f}/provisioned-concurrency?Qualifier={q}"]


def test_hostile_input_to_every_newer_operation_is_a_4xx_never_a_5xx(server):
    """Nested, malformed and mistyped bodies, and garbage query values, on the version, alias, layer,
    tag, policy and configuration operations: each is answered in AWS's shape, never a 500."""
    name = unique_name("hostile")
    create_function(server, name, make_zip({"bootstrap": PY_LOOP}), Publish=True)
    host, port = server.endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    answers = []
    for method, path in _OPERATIONS:
        for body in _BODIES:
            conn.request(method, path.format(f=name), body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answers.append((resp.status, method, path, body[:20], resp.read()))
    for path in _QUERIES:
        for q in _QUERY_VALUES:
            for method in ("GET", "DELETE"):
                conn.request(method, path.format(f=name, q=q))
                resp = conn.getresponse()
                answers.append((resp.status, method, path, q[:20], resp.read()))
    conn.close()
    assert [a[:4] for a in answers if a[0] >= 500] == []
    assert all(b'"Type"' in a[4] or a[0] < 400 or a[4] == b"" for a in answers if a[0] != 204), \
        [a for a in answers if a[0] >= 400 and b'"Type"' not in a[4]][:3]
