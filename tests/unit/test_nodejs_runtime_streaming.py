"""Response streaming from lambdalet's Node.js runtime: the exact bytes of the chunked POST /response."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from test_nodejs_runtime_stub import Event, run_runtime

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
NUL8 = b"\x00" * 8


def run(tmp_path: Path, body: str, events: list[Event] | None = None, **kw: object):
    code = ("export const handler = awslambda.streamifyResponse("
            f"async (event, responseStream, context) => {{\n{body}\n}});")
    return run_runtime(tmp_path, {"index.mjs": code}, "index.handler", events or [Event("req-1")], **kw)  # type: ignore[arg-type]


def head_lines(rec) -> list[str]:
    return rec.head.decode().split("\r\n")[1:-2]


def test_http_integration_stream_exact_bytes(tmp_path: Path) -> None:
    body = """
    const s = awslambda.HttpResponseStream.from(responseStream, { statusCode: 201, headers: { "x-a": "b" } });
    s.write("chunk1");
    s.write("chunk2");
    s.end();"""
    (rec,) = run(tmp_path, body).answers
    assert rec.method == "POST" and rec.path == "/2018-06-01/runtime/invocation/req-1/response"
    lines = head_lines(rec)
    assert lines[0].startswith("Host: ")
    assert lines[1:] == [
        "Lambda-Runtime-Function-Response-Mode: streaming",
        "Trailer: Lambda-Runtime-Function-Error-Type",
        "Trailer: Lambda-Runtime-Function-Error-Body",
        "Content-Type: application/vnd.awslambda.http-integration-response",
        "Transfer-Encoding: chunked",
        "Connection: keep-alive",
    ]
    assert rec.raw == (b'28\r\n{"statusCode":201,"headers":{"x-a":"b"}}\r\n8\r\n' + NUL8 +
                       b"\r\n6\r\nchunk1\r\n6\r\nchunk2\r\n0\r\n\r\n")
    assert rec.trailers == []


def test_plain_stream_default_content_type(tmp_path: Path) -> None:
    (rec,) = run(tmp_path, 'responseStream.write("a"); responseStream.end("bc");').answers
    assert rec.header("Content-Type") == "application/octet-stream"
    assert rec.header("Content-Length") is None
    assert rec.chunks == [b"a", b"bc"]


def test_set_content_type_and_object_write(tmp_path: Path) -> None:
    body = 'responseStream.setContentType("text/plain"); responseStream.write({ k: 1 }); responseStream.end();'
    (rec,) = run(tmp_path, body).answers
    assert rec.header("Content-Type") == "text/plain"
    assert rec.body == b'{"k":1}'


def test_prelude_only_written_with_first_write(tmp_path: Path) -> None:
    body = 'awslambda.HttpResponseStream.from(responseStream, { statusCode: 204 }).end();'
    (rec,) = run(tmp_path, body).answers
    assert rec.header("Content-Type") == "application/vnd.awslambda.http-integration-response"
    assert rec.raw == b"0\r\n\r\n"


def test_chunks_are_sent_as_written(tmp_path: Path) -> None:
    body = """
    responseStream.write("first");
    await new Promise((r) => setTimeout(r, 400));
    responseStream.write("second");
    responseStream.end();"""
    (rec,) = run(tmp_path, body).answers
    assert rec.chunks == [b"first", b"second"]
    assert rec.chunk_times[1] - rec.chunk_times[0] >= 0.3


def test_pipeline_from_readable(tmp_path: Path) -> None:
    code = """import { pipeline } from 'node:stream/promises';
    import { Readable } from 'node:stream';
    export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
      await pipeline(Readable.from(['x', 'y', 'z']), responseStream);
    }, { highWaterMark: 4 });"""
    (rec,) = run_runtime(tmp_path, {"index.mjs": code}, "index.handler", [Event("req-1")]).answers
    assert rec.body == b"xyz" and rec.trailers == []


def test_mid_stream_failure_sends_trailers(tmp_path: Path) -> None:
    body = 'responseStream.write("partial"); throw new TypeError("broke");'
    result = run(tmp_path, body, [Event("r1"), Event("r2")])
    rec = result.answers[0]
    assert rec.raw.startswith(b"7\r\npartial\r\n0\r\nLambda-Runtime-Function-Error-Type: TypeError\r\n"
                              b"Lambda-Runtime-Function-Error-Body: ")
    assert rec.raw.endswith(b"\r\n\r\n")
    doc = json.loads(base64.b64decode(rec.trailer("Lambda-Runtime-Function-Error-Body")))
    assert list(doc) == ["errorType", "errorMessage", "trace"]
    assert (doc["errorType"], doc["errorMessage"]) == ("TypeError", "broke")
    assert len(result.answers) == 2  # the runtime carries on
    assert "\tr1\tERROR\tInvoke Error \t{\"errorType\":\"TypeError\"" in result.output


def test_error_before_any_write(tmp_path: Path) -> None:
    (rec,) = run(tmp_path, 'throw new Error("early");').answers
    assert rec.raw.startswith(b"0\r\nLambda-Runtime-Function-Error-Type: Error\r\n")


def test_stream_not_finished(tmp_path: Path) -> None:
    (rec,) = run(tmp_path, 'responseStream.write("x");').answers
    doc = json.loads(base64.b64decode(rec.trailer("Lambda-Runtime-Function-Error-Body")))
    assert doc["errorMessage"] == "Response stream is not finished."


def test_set_content_type_too_late(tmp_path: Path) -> None:
    (rec,) = run(tmp_path, 'responseStream.write("x"); responseStream.setContentType("text/html");').answers
    assert rec.trailer("Lambda-Runtime-Function-Error-Type") == "Runtime.InvalidStreamingOperation"
    doc = json.loads(base64.b64decode(rec.trailer("Lambda-Runtime-Function-Error-Body")))
    assert doc["errorMessage"] == "Cannot set content-type, too late."


def test_non_async_streaming_handler(tmp_path: Path) -> None:
    code = "export const handler = awslambda.streamifyResponse((event, s) => { s.end('x'); });"
    (rec,) = run_runtime(tmp_path, {"index.mjs": code}, "index.handler", [Event("req-1")]).answers
    doc = json.loads(base64.b64decode(rec.trailer("Lambda-Runtime-Function-Error-Body")))
    assert doc["errorMessage"] == "Streaming does not support non-async handlers."


def test_return_value_ignored_with_warning(tmp_path: Path) -> None:
    result = run(tmp_path, 'responseStream.end("ok"); return "ignored";')
    assert result.answers[0].body == b"ok"
    assert "\treq-1\tWARN\tStreaming handlers ignore return values." in result.output


def test_uncaught_exception_mid_stream(tmp_path: Path) -> None:
    body = """responseStream.write("a");
    setTimeout(() => { throw new Error("kaboom"); }, 10);
    await new Promise(() => {});"""
    result = run(tmp_path, body, [Event("r1"), Event("r2")], expect_answers=1, expect_exit=True)
    (rec,) = result.answers
    assert rec.chunks == [b"a"]
    assert rec.trailer("Lambda-Runtime-Function-Error-Type") == "Error"
    assert result.returncode == 129


def test_streaming_and_buffered_share_one_connection(tmp_path: Path) -> None:
    result = run(tmp_path, 'responseStream.end("x");', [Event(f"r{i}") for i in range(3)])
    assert [a.body for a in result.answers] == [b"x", b"x", b"x"]
    assert result.api.connections == 1
