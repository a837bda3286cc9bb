"""Response streaming at the platform level: a bootstrap streams with curl; chunks reach callers live."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.parse

import pytest
from conftest import create_function, make_zip, unique_name

# Streams "first;" at once and "second" a second later, as chunks on the wire; HTTP-integration prelude
# for function URL events; error trailers for the /fail path.
STREAMER = f"""#!{os.path.realpath(sys.executable)} -S
import base64, http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
def chunk(data):
    conn.send(b"%x\\r\\n%b\\r\\n" % (len(data), data))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    url_event = isinstance(event, dict) and "rawPath" in event
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Body")
    conn.putheader("Content-Type", "application/vnd.awslambda.http-integration-response" if url_event
                   else "text/plain")
    conn.endheaders()
    if url_event:
        chunk(json.dumps({{"statusCode": 201, "headers": {{"x-a": "b", "content-type": "text/plain"}}}}).encode())
        chunk(bytes(8))
    if event.get("rawPath") == "/fail" or event.get("fail"):
        chunk(b"partial")
        body = base64.b64encode(json.dumps({{"errorType": "Boom", "errorMessage": "mid-stream"}}).encode())
        conn.send(b"0\\r\\nLambda-Runtime-Function-Error-Type: Boom\\r\\n"
                  b"Lambda-Runtime-Function-Error-Body: " + body + b"\\r\\n\\r\\n")
    else:
        chunk(b"first;")
        time.sleep(1)
        chunk(b"second")
        conn.send(b"0\\r\\n\\r\\n")
    conn.getresponse().read()
"""


@pytest.fixture(scope="module")
def streamer(server):
    name = unique_name("stream")
    create_function(server, name, make_zip({"bootstrap": STREAMER}), timeout=10)
    url = server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                          InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    return name, url


def test_invoke_with_response_stream_delivers_chunks_as_written(server, streamer):
    name, _ = streamer
    started = time.monotonic()
    resp = server.lambda_client.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
    arrivals, chunks, complete = [], [], None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append(event["PayloadChunk"]["Payload"])
            arrivals.append(time.monotonic() - started)
        if "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert b"".join(chunks) == b"first;second"
    assert arrivals[0] < 0.9 and arrivals[-1] > 0.9  # the first chunk came before the function finished
    assert complete is not None and "ErrorCode" not in complete


def test_buffered_invoke_of_a_streaming_function_gets_the_whole_body(server, streamer):
    name, _ = streamer
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert resp["Payload"].read() == b"first;second"


def test_function_url_streams_with_the_http_integration_prelude(streamer):
    _, url = streamer
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    started = time.monotonic()
    conn.request("GET", parts.path + "live")
    resp = conn.getresponse()
    assert resp.status == 201 and resp.getheader("x-a") == "b" and resp.getheader("content-type") == "text/plain"
    first = resp.read1(100)
    first_at = time.monotonic() - started
    rest = resp.read()
    assert first + rest == b"first;second"
    assert first == b"first;" and first_at < 0.9 and time.monotonic() - started > 0.9


def test_streamed_error_trailers_reach_invoke_complete(server, streamer):
    name, url = streamer
    resp = server.lambda_client.invoke_with_response_stream(
        FunctionName=name, Payload=json.dumps({"fail": True}).encode())
    events = list(resp["EventStream"])
    complete = next(e["InvokeComplete"] for e in events if "InvokeComplete" in e)
    assert complete.get("ErrorCode") == "Boom" and "mid-stream" in complete.get("ErrorDetails", "")
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e) == b"partial"
    status = http.client.HTTPConnection(*urllib.parse.urlsplit(url).netloc.split(":"))
    status.request("GET", urllib.parse.urlsplit(url).path + "fail")
    resp = status.getresponse()
    assert resp.status == 201 and resp.read() == b"partial"  # headers were sent: the stream just ends
