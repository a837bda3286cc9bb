"""Platform log lines, billing, exit wording, zip validation, filter patterns, event-stream framing, HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import struct
import zipfile
import zlib

import pytest

from lambdalet.api.eventstream import encode_message, payload_chunk
from lambdalet.api.function_urls import map_result
from lambdalet.api.logs_api import FilterPattern
from lambdalet.environment import platform_log
from lambdalet.environment.process import exit_reason
from lambdalet.http11 import HttpServer
from lambdalet.store.code import CodeStore, InvalidCode


def test_report_line_layout_and_init_duration_last():
    line = platform_log.report("id-1", 13.694, 42, 128, 25, 27.341)
    assert line == ("REPORT RequestId: id-1\tDuration: 13.69 ms\tBilled Duration: 42 ms\tMemory Size: 128 MB\t"
                    "Max Memory Used: 25 MB\tInit Duration: 27.34 ms\t")
    assert "Init Duration" not in platform_log.report("id-1", 1.0, 1, 128, 3, None)


@pytest.mark.parametrize(("duration", "timeout", "init", "billed"), [
    (13.69, 3, 27.34, 42),  # spec: cold start of a provided runtime bills init too
    (3009.44, 3, None, 3000),  # spec: capped at the timeout
    (3004.24, 3, 32.33, 3033),  # spec: capped, plus init
    (88.56, 3, None, 89),
    (0.2, 3, None, 1),
    (4.004, 3, None, 4),  # the line shows "Duration: 4.00 ms": billed as shown, not 5
    (4.006, 3, None, 5),
])
def test_billed_duration_matches_the_spec(duration, timeout, init, billed):
    assert platform_log.billed_ms(duration, timeout, init) == billed


def test_init_report_and_start_lines():
    assert platform_log.init_report(10008.79, "init", "timeout", None) == \
        "INIT_REPORT Init Duration: 10008.79 ms\tPhase: init\tStatus: timeout"
    assert platform_log.init_report(0.35, "invoke", "error", "Runtime.InvalidEntrypoint").endswith(
        "\tPhase: invoke\tStatus: error\tError Type: Runtime.InvalidEntrypoint")
    assert platform_log.start("x") == "START RequestId: x Version: $LATEST"
    assert platform_log.runtime_version("provided.al2") == "provided:al2.v1"
    assert platform_log.runtime_version("python3.12") == "python:3.12.v1"
    assert platform_log.runtime_version("nodejs20.x") == "nodejs:20.v1"


def test_exit_reasons_use_lambdas_wording():
    assert exit_reason(1) == "exit status 1"
    assert exit_reason(-signal.SIGKILL) == "signal: killed"
    assert exit_reason(-signal.SIGSEGV) == "signal: segmentation fault"


def _zip(entries: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_code_store_unpacks_with_modes_and_symlinks(tmp_path):
    store = CodeStore(str(tmp_path))
    stored = store.put(_zip({"bootstrap": (b"#!/bin/sh\n", 0o100755), "lib/a.txt": (b"a", 0o100644),
                             "lib/link": (b"a.txt", 0o120777)}))
    assert os.access(os.path.join(stored.task_root, "bootstrap"), os.X_OK)
    assert not os.access(os.path.join(stored.task_root, "lib/a.txt"), os.X_OK)
    for path in (stored.task_root, os.path.join(stored.task_root, "lib"), os.path.join(stored.task_root, "bootstrap")):
        assert os.stat(path).st_mode & 0o222 == 0  # read-only, like Lambda's /var/task
    with open(os.path.join(stored.task_root, "lib/link")) as f:
        assert f.read() == "a"
    assert store.put(store.read_zip(stored.sha_hex)).task_root == stored.task_root


@pytest.mark.parametrize("entries", [
    {"../x": (b"", 0o100644)},
    {"/etc/x": (b"", 0o100644)},
    {"a/../../x": (b"", 0o100644)},
    {"link": (b"../../etc/passwd", 0o120777)},
])
def test_code_store_rejects_escaping_entries(tmp_path, entries):
    with pytest.raises(InvalidCode):
        CodeStore(str(tmp_path)).put(_zip(entries))
    assert [p for p in os.listdir(tmp_path) if not p.startswith(".")] == []


def test_code_store_rejects_non_zips(tmp_path):
    with pytest.raises(InvalidCode, match="Could not unzip"):
        CodeStore(str(tmp_path)).put(b"PK but not really")


@pytest.mark.parametrize(("pattern", "message", "match"), [
    ("ERROR", "an ERROR here", True),
    ("ERROR timeout", "ERROR: timeout", True),
    ("ERROR timeout", "ERROR only", False),
    ('"exact phrase"', "an exact phrase", True),
    ("?a ?b", "b only", True),
    ("?a ?b", "neither", False),
    ("ERROR -ignore", "ERROR ignore", False),
    ("", "anything", True),
])
def test_filter_pattern(pattern, message, match):
    assert FilterPattern(pattern).matches(message) is match


def test_event_stream_message_framing():
    msg = payload_chunk(b"hello")
    total, headers_len, prelude_crc = struct.unpack(">III", msg[:12])
    assert total == len(msg) and prelude_crc == zlib.crc32(msg[:8])
    assert struct.unpack(">I", msg[-4:])[0] == zlib.crc32(msg[:-4])
    assert msg[12 + headers_len:-4] == b"hello"
    assert b":event-type\x07\x00\x0cPayloadChunk" in msg
    assert len(encode_message({}, b"")) == 16


def test_function_url_result_mapping():
    assert map_result(b'{"statusCode": 201, "body": "x"}') == (201, [("Content-Type", "application/json")], b"x")
    assert map_result(b'{"b": 1, "a": 2}') == (200, [("Content-Type", "application/json")], b'{"a":2,"b":1}')
    status, headers, body = map_result(b'{"statusCode": 200, "cookies": ["c=1"], "isBase64Encoded": true, '
                                       b'"body": "AAE=", "headers": {"content-type": "x/y"}}')
    assert (status, body) == (200, b"\x00\x01") and ("Set-Cookie", "c=1") in headers


def test_http_server_reads_chunked_bodies_with_trailers_and_keeps_alive():
    async def scenario():
        seen = []

        async def handler(req, resp):
            body = await req.read()
            seen.append((req.method, req.path, body, dict(req.trailers)))
            resp.send(202, b"ok")

        server = HttpServer(handler)
        host, port = await server.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n"
                     b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = b""
        while data.count(b"HTTP/1.1 202") < 2:
            data += await asyncio.wait_for(reader.read(1000), 5)
        writer.close()
        server.close()
        assert seen == [("POST", "/a", b"abcde", {"x-t": "v"}), ("GET", "/b", b"", {})]

    asyncio.run(scenario())


def test_request_and_trace_ids_are_unique_uuid4s_and_x_ray_headers_even_across_a_fork():
    import os
    import re

    from lambdalet.invocation import new_request_id, new_trace_id

    uuid4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    ids = [new_request_id() for _ in range(5000)]  # (several refills of the pooled randomness)
    assert len(set(ids)) == len(ids) and all(uuid4.match(i) for i in ids)
    assert re.match(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$", new_trace_id())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must not hand out the ids the parent is about to
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child != new_request_id()
