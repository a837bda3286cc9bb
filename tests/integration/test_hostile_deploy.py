"""Hostile and huge requests to the Lambda and Logs APIs: AWS-shaped 4xx answers, code that cannot
escape its directory, limits, and an event loop that keeps serving while they are handled."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import http.client
import io
import json
import os
import stat
import struct
import threading
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import spec_bootstraps as sb
from botocore.exceptions import ClientError
from conftest import create_function, make_zip, unique_name

from lambdalet.limits import MAX_API_REQUEST, MAX_CODE_REQUEST, MAX_UNZIPPED, MAX_ZIP

UNZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."
LINK = (stat.S_IFLNK | 0o777) << 16
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000

READ_THROUGH_LINKS = r"""#!/bin/bash
H=$(mktemp)
while true; do
  curl -sS -D "$H" -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  OUT="$("$LAMBDA_TASK_ROOT/node_modules/.bin/greet") $(cat "$LAMBDA_TASK_ROOT/lib/msg.txt")"
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "\"$OUT\""
done
"""


def error_of(exc: ClientError) -> tuple[str, int, str]:
    err = exc.response["Error"]
    return err["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], err["Message"]


def raw_zip(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A zip of (name, external_attr, content) entries in order (duplicates allowed)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # "Duplicate name", on purpose
        for name, attr, content in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = attr
            zf.writestr(info, content)
    return buf.getvalue()


def request(server, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], dict]:
    """One request on a fresh connection; (status, headers, JSON body)."""
    req = urllib.request.Request(server.endpoint + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


def code_dir_is_clean(server) -> None:
    leftovers = [n for n in os.listdir(server.data_dir / "code") if n.startswith((".unpack-", ".zip-"))]
    assert leftovers == []


@pytest.fixture(scope="module")
def target(server) -> str:
    """A function for the update endpoints."""
    name = unique_name("hostile")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    return name


# -- JSON nested 100,000 deep, on every endpoint that parses a body
ENDPOINTS = [
    ("POST", "/2015-03-31/functions"),
    ("PUT", "/2015-03-31/functions/{name}/configuration"),
    ("PUT", "/2015-03-31/functions/{name}/code"),
    ("POST", "/2021-10-31/functions/{name}/url"),
    ("PUT", "/2021-10-31/functions/{name}/url"),
    ("PUT", "/2017-10-31/functions/{name}/concurrency"),
    ("POST", "/2015-03-31/functions/{name}/invocations"),
]


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_deep_json_is_invalid_request_content(server, target, method, path, body):
    status, headers, doc = request(server, method, path.format(name=target), body)
    assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestContentException")
    assert doc["message"].startswith("Could not parse request body into json: ")


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT, b'{"limit": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
                         ids=["array", "object", "nested-field"])
def test_deep_json_to_the_logs_api_is_a_serialization_error(server, body):
    status, _, doc = request(server, "POST", "/", body, {
        "X-Amz-Target": "Logs_20140328.DescribeLogGroups", "Content-Type": "application/x-amz-json-1.1"})
    assert status == 400 and doc["__type"] == "SerializationException"
    assert server.logs_client.describe_log_groups()["logGroups"] is not None


@pytest.mark.parametrize("args", [{"nextToken": "x"}, {"nextToken": "²"}, {"logGroupNamePrefix": 7}])
def test_logs_api_bad_values_are_400(server, args):
    status, _, doc = request(server, "POST", "/", json.dumps(args).encode(), {
        "X-Amz-Target": "Logs_20140328.DescribeLogGroups", "Content-Type": "application/x-amz-json-1.1"})
    assert status == 400 and doc["__type"] == "InvalidParameterException"


def test_a_deep_payload_is_refused_and_the_function_still_answers(server, target):
    with pytest.raises(ClientError) as exc:
        server.lambda_client.invoke(FunctionName=target, Payload=DEEP_ARRAY)
    assert error_of(exc.value)[:2] == ("InvalidRequestContentException", 400)
    assert server.lambda_client.invoke(FunctionName=target, Payload=b"{}")["StatusCode"] == 200


# -- broken zips
def _bad_crc() -> bytes:
    data = bytearray(raw_zip([("bootstrap", 0o100755 << 16, b"#!/bin/sh\necho hi\n")]))
    at = data.index(b"echo hi")
    data[at] ^= 1
    return bytes(data)


BROKEN_ZIPS = {
    "bad-crc": _bad_crc(),
    "truncated": make_zip({"bootstrap": sb.EVENT_LOOP, "x": "y" * 1000})[:400],
    "duplicate-names": raw_zip([("bootstrap", 0o100755 << 16, b"a"), ("bootstrap", 0o100755 << 16, b"b")]),
    "file-where-a-dir-is": raw_zip([("lib", 0o100644 << 16, b"x"), ("lib/mod.py", 0o100644 << 16, b"y")]),
    "link-with-children": raw_zip([("lib", LINK, b"."), ("lib/x", 0o100644 << 16, b"y")]),
    "name-too-long": raw_zip([("n" * 300, 0o100644 << 16, b"x")]),
}


@pytest.mark.parametrize("name", sorted(BROKEN_ZIPS))
def test_broken_zips_are_invalid_parameter_values(server, name):
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("broken"), BROKEN_ZIPS[name])
    assert error_of(exc.value) == ("InvalidParameterValueException", 400, UNZIP)
    code_dir_is_clean(server)


def test_broken_zip_through_update_function_code(server, target):
    with pytest.raises(ClientError) as exc:
        server.lambda_client.update_function_code(FunctionName=target, ZipFile=BROKEN_ZIPS["bad-crc"])
    assert error_of(exc.value) == ("InvalidParameterValueException", 400, UNZIP)
    assert server.lambda_client.invoke(FunctionName=target, Payload=b"{}")["StatusCode"] == 200


# -- links
def test_chained_links_cannot_write_outside_the_code_directory(server):
    attack = raw_zip([("a", LINK, b"b/c/d/../../.."), ("b", LINK, b"."), ("c", LINK, b"."), ("d", LINK, b"."),
                      ("a/X", 0o100644 << 16, b"written outside"), ("bootstrap", 0o100755 << 16, b"#!/bin/sh\n")])
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("escape"), attack)
    assert error_of(exc.value) == ("InvalidParameterValueException", 400, UNZIP)
    # Three levels above the staging directory <data>/code/.unpack-*: the data dir's parent.
    for where in (server.data_dir.parent, server.data_dir, server.data_dir / "code"):
        assert not (where / "X").exists()
    code_dir_is_clean(server)


@pytest.mark.parametrize("target_path", [b"../../../../etc", b"/etc", b"x/../..", b"self/.."])
def test_links_pointing_outside_are_refused(server, target_path):
    zipped = raw_zip([("bootstrap", 0o100755 << 16, b"#!/bin/sh\n"), ("self", LINK, b"."), ("out", LINK, target_path)])
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("outlink"), zipped)
    code, status, message = error_of(exc.value)
    assert (code, status) == ("InvalidParameterValueException", 400) and "points outside the package" in message


def test_relative_links_inside_the_package_work(server):
    name = unique_name("links")
    create_function(server, name, raw_zip([
        ("bootstrap", 0o100755 << 16, READ_THROUGH_LINKS.encode()),
        ("node_modules/greet/bin/greet.sh", 0o100755 << 16, b"#!/bin/sh\necho hello\n"),
        ("node_modules/greet/msg.txt", 0o100644 << 16, b"via-a-dir-link"),
        ("node_modules/.bin/greet", LINK, b"../greet/bin/greet.sh"),
        ("lib", LINK, b"node_modules/greet"),
    ]))
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(resp["Payload"].read()) == "hello via-a-dir-link"


# -- limits
def test_unzipped_size_of_exactly_the_limit_is_refused(server):
    data = bytearray(raw_zip([("bootstrap", 0o100755 << 16, b"#!/bin/sh\n"), ("big", 0o100644 << 16, b"x")]))
    at = data.index(b"PK\x01\x02")
    data[at + 24:at + 28] = struct.pack("<I", MAX_UNZIPPED - 1)  # bootstrap declares 262143999 bytes
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("unzipped"), bytes(data))
    assert error_of(exc.value) == ("InvalidParameterValueException", 400,
                                   "Unzipped size must be smaller than 262144000 bytes")


@pytest.mark.parametrize("operation", ["CreateFunction", "UpdateFunctionCode"])
def test_code_request_over_the_limit_is_request_entity_too_large(server, target, operation):
    zipped = b"\0" * (MAX_CODE_REQUEST * 3 // 4 + 1000)  # its base64 alone is over the limit
    lam = server.client("lambda", validate=False)
    with pytest.raises(ClientError) as exc:
        if operation == "CreateFunction":
            create_function(server, unique_name("huge"), zipped)
        else:
            lam.update_function_code(FunctionName=target, ZipFile=zipped)
    assert error_of(exc.value) == (
        "RequestEntityTooLargeException", 413,
        f"Request must be smaller than {MAX_CODE_REQUEST} bytes for the {operation} operation")
    assert server.lambda_client.invoke(FunctionName=target, Payload=b"{}")["StatusCode"] == 200


def test_chunked_code_request_over_the_limit_is_refused_too(server):
    conn = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=120)
    conn.putrequest("POST", "/2015-03-31/functions")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    piece = b"A" * (1 << 20)
    try:
        for chunk in [b'{"Code": {"ZipFile": "'] + [piece] * (MAX_CODE_REQUEST // len(piece) + 2):
            conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer and close before taking it all
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["message"] == (
        f"Request must be smaller than {MAX_CODE_REQUEST} bytes for the CreateFunction operation")
    conn.close()


def _unpackers(pid: int) -> list[int]:
    """The server's code-request children still running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid and b"lambdalet.store.request_body" in cmdline:
            found.append(int(entry))
    return found


def test_a_client_that_hangs_up_mid_body_leaves_nothing_behind(server):
    conn = http.client.HTTPConnection("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]), timeout=30)
    conn.putrequest("POST", "/2015-03-31/functions")
    conn.putheader("Content-Length", str(60 << 20))
    conn.endheaders()
    conn.send(b'{"FunctionName": "gone", "Code": {"ZipFile": "' + b"A" * (8 << 20))
    deadline = time.time() + 10
    while not _unpackers(server.process.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _unpackers(server.process.pid)  # the body is being streamed into a child
    conn.close()
    deadline = time.time() + 10
    while _unpackers(server.process.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _unpackers(server.process.pid) == []
    code_dir_is_clean(server)
    assert server.lambda_client.list_functions()["Functions"] is not None


def test_other_api_request_over_the_limit(server, target):
    lam = server.client("lambda", validate=False)
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=target, Description="d" * (MAX_API_REQUEST + 1))
    assert error_of(exc.value) == (
        "RequestEntityTooLargeException", 413,
        f"Request must be smaller than {MAX_API_REQUEST} bytes for the UpdateFunctionConfiguration operation")


def test_zip_over_max_zip(server):
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("zipped"), os.urandom(MAX_ZIP + 1))
    assert error_of(exc.value) == ("RequestEntityTooLargeException", 413,
                                   f"Zipped size must be smaller than {MAX_ZIP} bytes")


# -- big deploys that are fine
def _big_zip(blob_size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, sb.EVENT_LOOP)
        zf.writestr("blob", os.urandom(blob_size))
    return buf.getvalue()


def _many_files_zip(count: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, sb.EVENT_LOOP)
        for i in range(count):
            zf.writestr(f"node_modules/p{i % 200}/f{i}.js", "module.exports = 1;\n")
    return buf.getvalue()


def test_a_48_mb_zip_deploys_and_runs(server):
    name = unique_name("big")
    zipped = _big_zip(48 << 20)
    cfg = create_function(server, name, zipped)
    assert cfg["CodeSize"] == len(zipped)
    assert server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    updated = server.lambda_client.update_function_code(FunctionName=name, ZipFile=_big_zip(1 << 20))
    assert updated["CodeSha256"] != cfg["CodeSha256"]
    assert server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    code_dir_is_clean(server)


def test_a_20000_file_zip_deploys_and_runs(server):
    name = unique_name("many")
    create_function(server, name, _many_files_zip(20_000))
    assert server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    with urllib.request.urlopen(server.lambda_client.get_function(FunctionName=name)["Code"]["Location"]) as r:
        assert len(zipfile.ZipFile(io.BytesIO(r.read())).namelist()) == 20_001


def test_invalid_config_is_answered_before_the_zip_is_unpacked(server):
    zipped = _many_files_zip(5000)
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).create_function(
            FunctionName=unique_name("cfg"), Runtime="java8", Role="arn:aws:iam::000000000000:role/x", Handler="h",
            Code={"ZipFile": zipped})
    assert error_of(exc.value)[:2] == ("InvalidParameterValueException", 400)
    assert "java8" in error_of(exc.value)[2]
    assert not (server.data_dir / "code" / hashlib.sha256(zipped).hexdigest()).exists()
    code_dir_is_clean(server)


# -- the event loop keeps serving: the real FrontDoor, in-process, with a 1 ms probe
class LagProbe:
    """Sleeps 1 ms in a loop, keeping (start, overshoot, loop-thread CPU) of every sleep."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []

    async def run(self) -> None:
        while True:
            start, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            self.samples.append((start, time.perf_counter() - start - 0.001, time.thread_time() - cpu))

    def worst(self, start: float, end: float) -> tuple[float, float]:
        """(max overshoot, loop CPU during that sleep) over the sleeps due to end in [start, end]."""
        inside = [s for s in self.samples if start <= s[0] + 0.002 and s[0] <= end]
        worst = max(inside, key=lambda s: s[1], default=(0.0, 0.0, 0.0))
        return worst[1], worst[2]


class InProcessServer:
    """FrontDoor on its own event loop (uvloop, as `lambdalet serve`) in a thread, with a LagProbe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.probe = LagProbe()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        assert self._ready.wait(20)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def _run(self) -> None:
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        from lambdalet.api.app import FrontDoor, Settings

        front = FrontDoor(Settings(host="127.0.0.1", port=0, data_dir=str(self.data_dir)))
        await front.start()
        self.port = front.address[1]
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        probe = asyncio.ensure_future(self.probe.run())
        self._ready.set()
        await self._stop.wait()
        probe.cancel()
        await front.close()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST on a fresh connection; the body goes out as a memoryview (http.client would copy it
        into one buffer, holding this process's GIL for tens of ms)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.sock.sendall(memoryview(body))
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def max_lag(self, send) -> tuple[float, float, object]:
        """Run send(); (max loop lag, loop CPU during it, what send returned)."""
        start = time.perf_counter()
        result = send()
        end = time.perf_counter()
        time.sleep(0.05)  # a stalled probe reports when the stall ends
        lag, cpu = self.probe.worst(start, end)
        return lag, cpu, result


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> Iterator[InProcessServer]:
    with InProcessServer(tmp_path_factory.mktemp("inproc") / "data") as srv:
        yield srv


def _create_body(name: str, zipped: bytes) -> bytes:
    return json.dumps({"FunctionName": name, "Runtime": "provided.al2023", "Role": "arn:aws:iam::000000000000:role/x",
                       "Code": {"ZipFile": base64.b64encode(zipped).decode()}}).encode()


HOSTILE = {
    "20000-file-zip": (lambda: _create_body("many", _many_files_zip(20_000)), 201),
    "2000-file-small-body": (lambda: _create_body("small", raw_zip([(str(i), 0, b"") for i in range(1900)])), 201),
    "66MB-body-50MB-zip": (lambda: _create_body("big", _big_zip(50_000_000 - 1000)), 201),
    "65MB-dense-json": (lambda: b"[" + b"0," * 32_500_000 + b"0]", 400),
    "65MB-not-base64": (lambda: _create_body("nb", b"")[:-3] + b"!" * 65_000_000 + b'"}}', 400),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_event_loop_keeps_running_while_a_hostile_deploy_is_served(in_process, case):
    make, want = HOSTILE[case]
    body = make()
    gc.collect()  # the client shares this process: none of its garbage is collected during the request
    time.sleep(0.2)  # building the body held the GIL: let the loop catch up first
    idle, _, _ = in_process.max_lag(lambda: time.sleep(1))  # this machine's scheduling noise, right now
    lag, cpu, (status, answer) = in_process.max_lag(lambda: in_process.post("/2015-03-31/functions", body))
    print(f"\n{case}: {len(body) / 1e6:.1f} MB body -> {status}; max event-loop lag {lag * 1000:.1f} ms "
          f"(loop thread on CPU {cpu * 1000:.1f} ms of it; idle lag {idle * 1000:.1f} ms)")
    assert status == want, answer[:300]
    # Before: 0.35 s (65 MB body) to 4-9 s (20,000 files), nearly all of it the loop's own CPU time.
    # Now the loop never works for more than ~3 ms in one go; what remains of the lag is the machine
    # (2 cores shared with the child that unpacks, and with the other pytest worker).
    assert cpu < 0.02  # what the server's own callbacks cost: the figure that does not depend on load
    assert lag < 1.0 + idle  # wall time also counts other processes on a loaded 2-core machine


def test_event_loop_keeps_running_while_a_heavy_invoke_payload_is_checked(in_process):
    """6 MB of `[0,0,...]` is ~360 ms of json.loads: checked by a child, the loop goes on."""
    bootstrap = b"#!/bin/sh\nexit 0\n"
    status, answer = in_process.post("/2015-03-31/functions",
                                     _create_body("heavy-payload", raw_zip([("bootstrap", 0o755, bootstrap)])))
    assert status == 201, answer[:300]
    payload = b"[" + b"0," * 3_100_000 + b"0]"
    gc.collect()
    time.sleep(0.2)
    lag, cpu, (status, answer) = in_process.max_lag(
        lambda: in_process.post("/2015-03-31/functions/heavy-payload/invocations", payload))
    print(f"\n6 MB dense payload -> {status}; max lag {lag * 1000:.1f} ms (loop CPU {cpu * 1000:.1f} ms)")
    assert status == 200, answer[:300]  # (the function's own error: its bootstrap exits)
    assert cpu < 0.02
