"""lambdalet's built-in Node.js runtimes through boto3 and plain HTTP against a real `lambdalet serve`."""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import time
from urllib.parse import urlsplit

import pytest
from conftest import Server, create_function, log_messages, make_zip, unique_name, wait_for_log

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
CALLBACK_DEPRECATED = (
    "ERROR: AWS Lambda has removed support for callback-based function handlers starting with Node.js 24. "
    "You need to modify this function to use a supported handler signature to use Node.js 24 or later. "
    "For more information see https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html."
)


def deploy(server: Server, files: dict[str, str], handler: str = "index.handler", runtime: str = "nodejs22.x",
           **kw) -> str:
    name = unique_name("node")
    create_function(server, name, make_zip(files, executable=tuple(kw.pop("executable", ()))),
                    runtime=runtime, handler=handler, **kw)
    return name


def invoke(server: Server, name: str, event: object = None) -> tuple[object, str | None]:
    resp = server.lambda_client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    raw = resp["Payload"].read()
    try:
        return json.loads(raw), resp.get("FunctionError")
    except ValueError:
        return raw, resp.get("FunctionError")


def function_url(server: Server, name: str, mode: str = "BUFFERED") -> str:
    cfg = server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode=mode)
    return cfg["FunctionUrl"]


def test_esm_handler_context_and_warm_reuse(server: Server) -> None:
    code = """let count = 0;
    export const handler = async (event, context) => ({ event, count: ++count, fn: context.functionName,
      rid: context.awsRequestId, left: context.getRemainingTimeInMillis(), env: process.env.AWS_EXECUTION_ENV,
      arn: context.invokedFunctionArn });"""
    name = deploy(server, {"index.mjs": code}, runtime="nodejs20.x", timeout=5)
    first, err = invoke(server, name, {"k": 1})
    assert err is None
    assert first["event"] == {"k": 1} and first["count"] == 1 and first["fn"] == name
    assert 0 < first["left"] <= 5000
    assert first["env"] == "AWS_Lambda_nodejs20.x"
    assert first["arn"].endswith(f":function:{name}")
    second, _ = invoke(server, name)
    assert second["count"] == 2 and second["rid"] != first["rid"]


def test_cjs_handler(server: Server) -> None:
    name = deploy(server, {"index.js": "exports.handler = async (e) => ({ cjs: typeof module, e });"})
    assert invoke(server, name, [1]) == ({"cjs": "object", "e": [1]}, None)


def test_subfolder_and_nested_handler(server: Server) -> None:
    files = {"src/app/main.mjs": "export const api = { v1: { handler: async () => 'nested in src/app' } };"}
    name = deploy(server, files, handler="src/app/main.api.v1.handler", runtime="nodejs24.x")
    assert invoke(server, name) == ("nested in src/app", None)


def test_invoke_error_document(server: Server) -> None:
    code = "export const handler = async () => { const e = new Error('nope'); e.name = 'MyError'; throw e; };"
    name = deploy(server, {"index.mjs": code})
    doc, err = invoke(server, name)
    assert err == "Unhandled"
    assert list(doc) == ["errorType", "errorMessage", "trace"]
    assert (doc["errorType"], doc["errorMessage"]) == ("MyError", "nope")
    messages = wait_for_log(server, name, lambda m: any("Invoke Error" in x for x in m))
    line = next(x for x in messages if "Invoke Error" in x)
    assert re.match(rf"{ISO}\t[0-9a-f-]{{36}}\tERROR\tInvoke Error \t{{\"errorType\":\"MyError\"", line)


@pytest.mark.parametrize("files,handler,error_type,message", [
    ({"index.mjs": ""}, "index", "Runtime.MalformedHandlerName", "Bad handler"),
    ({"readme.txt": "x"}, "missing.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'missing'"),
    ({"index.mjs": "export const handler = async () => {"}, "index.handler", "Runtime.UserCodeSyntaxError",
     "SyntaxError: "),
    ({"index.mjs": "export const x = 1;"}, "index.handler", "Runtime.HandlerNotFound",
     "index.handler is undefined or not exported"),
    ({"index.mjs": "export const handler = 'str';"}, "index.handler", "Runtime.HandlerNotFound",
     "index.handler is not a function"),
])
def test_init_errors(server: Server, files: dict, handler: str, error_type: str, message: str) -> None:
    name = deploy(server, files, handler=handler)
    doc, err = invoke(server, name)
    assert err == "Unhandled"
    assert doc["errorType"] == error_type
    assert doc["errorMessage"].startswith(message)


def test_callback_handler_on_20(server: Server) -> None:
    code = """exports.handler = (event, context, callback) => {
      setTimeout(() => console.log('timer ran'), 100);
      callback(null, { via: 'callback' });
    };"""
    name = deploy(server, {"index.js": code}, runtime="nodejs20.x")
    assert invoke(server, name) == ({"via": "callback"}, None)
    # callbackWaitsForEmptyEventLoop: the timer's log line belongs to the invoke, before END
    messages = wait_for_log(server, name, lambda m: any(x.startswith("END") for x in m))
    timer_at = next(i for i, x in enumerate(messages) if "timer ran" in x)
    assert timer_at < next(i for i, x in enumerate(messages) if x.startswith("END"))


def test_callback_handler_refused_on_24(server: Server) -> None:
    name = deploy(server, {"index.js": "exports.handler = (e, c, cb) => cb(null, 1);"}, runtime="nodejs24.x")
    doc, err = invoke(server, name)
    assert err == "Unhandled"
    assert (doc["errorType"], doc["errorMessage"]) == ("Runtime.CallbackHandlerDeprecated", CALLBACK_DEPRECATED)


def test_uncaught_exception_fails_invoke_then_recovers(server: Server) -> None:
    code = """const token = Math.random();  // (pids repeat across sandboxed environments)
    export const handler = async (e) => {
      if (e.crash) { setTimeout(() => { throw new Error('async crash'); }, 5); await new Promise(() => {}); }
      return token;
    };"""
    name = deploy(server, {"index.mjs": code}, runtime="nodejs20.x")
    pid, _ = invoke(server, name)
    doc, err = invoke(server, name, {"crash": True})
    assert err == "Unhandled" and doc["errorMessage"] == "async crash"
    new_pid, err = invoke(server, name)
    assert err is None and new_pid != pid


def test_text_logs_one_event_per_record(server: Server) -> None:
    code = """console.log('at init');
    export const handler = async () => { console.info('two\\nlines', { a: 1 }); console.warn('w'); return 1; };"""
    name = deploy(server, {"index.mjs": code}, runtime="nodejs20.x")
    invoke(server, name)
    messages = wait_for_log(server, name, lambda m: any("\tWARN\tw" in x for x in m))
    assert any(re.fullmatch(rf"{ISO}\tundefined\tINFO\tat init", x) for x in messages)
    assert any(re.fullmatch(rf"{ISO}\t[0-9a-f-]{{36}}\tINFO\ttwo\nlines {{ a: 1 }}", x) for x in messages)


def test_json_logs_and_level(server: Server) -> None:
    code = "export const handler = async () => { console.debug('hidden'); console.info('shown'); return 1; };"
    name = deploy(server, {"index.mjs": code}, env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    invoke(server, name)
    messages = wait_for_log(server, name, lambda m: any('"shown"' in x for x in m))
    records = [json.loads(x) for x in messages if x.startswith("{")]
    assert [r["message"] for r in records] == ["shown"]
    assert records[0]["level"] == "INFO" and re.fullmatch(ISO, records[0]["timestamp"])


def test_function_url_buffered_plain_http(server: Server) -> None:
    code = """export const handler = async (event) => ({ statusCode: 201, headers: { 'x-test': 'yes' },
      body: JSON.stringify({ path: event.rawPath, method: event.requestContext.http.method }) });"""
    name = deploy(server, {"index.mjs": code})
    url = function_url(server, name)
    status, headers, body = http_get(url + "hello?x=1")
    assert status == 201 and headers.get("x-test") == "yes"
    assert json.loads(body) == {"path": "/hello", "method": "GET"}


STREAM_CODE = """export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const s = awslambda.HttpResponseStream.from(responseStream, { statusCode: 202, headers: { 'x-s': '1' } });
  s.write('first;');
  await new Promise((r) => setTimeout(r, 500));
  s.write('second');
  if (event.fail || (event.rawQueryString ?? '').includes('fail')) throw new TypeError('mid-stream');
  s.end();
});"""


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_streaming_via_function_url(server: Server) -> None:
    name = deploy(server, {"index.mjs": STREAM_CODE}, timeout=10)
    url = urlsplit(function_url(server, name, "RESPONSE_STREAM"))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    start = time.monotonic()
    conn.request("GET", url.path)
    resp = conn.getresponse()
    assert resp.status == 202 and resp.getheader("x-s") == "1"
    first = resp.read1(100)
    first_at = time.monotonic() - start
    rest = resp.read()
    total = time.monotonic() - start
    conn.close()
    assert first + rest == b"first;second"
    assert first == b"first;"
    assert total - first_at >= 0.3  # the first chunk arrived before the handler finished


def test_streaming_via_invoke_with_response_stream(server: Server) -> None:
    name = deploy(server, {"index.mjs": STREAM_CODE}, timeout=10)
    resp = server.lambda_client.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
    chunks, complete = [], None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append(event["PayloadChunk"]["Payload"])
        if "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    body = b"".join(chunks)
    assert body.endswith(b"first;second")
    assert body.startswith(b'{"statusCode":202')
    assert complete is not None and not complete.get("ErrorCode")


def test_streaming_mid_stream_error_via_invoke_with_response_stream(server: Server) -> None:
    name = deploy(server, {"index.mjs": STREAM_CODE}, timeout=10)
    resp = server.lambda_client.invoke_with_response_stream(FunctionName=name, Payload=b'{"fail":true}')
    complete = None
    for event in resp["EventStream"]:
        if "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert complete is not None and complete.get("ErrorCode") == "TypeError"
    details = complete.get("ErrorDetails", "")
    assert "mid-stream" in details or "mid-stream" in base64.b64decode(details or b"").decode(errors="replace")


def test_exec_wrapper(server: Server) -> None:
    wrapper = '#!/bin/bash\nexport WRAPPED_ARGS="$*"\nexec "$@"\n'
    code = "export const handler = async () => process.env.WRAPPED_ARGS;"
    name = deploy(server, {"index.mjs": code, "wrapper.sh": wrapper}, executable=("wrapper.sh",),
                  env={"AWS_LAMBDA_EXEC_WRAPPER": "./wrapper.sh"})
    args, err = invoke(server, name)
    assert err is None
    node, *rest = args.split(" ")
    assert node.endswith("node")
    assert rest[:3] == ["--expose-gc", "--max-http-header-size", "81920"]
    assert rest[-1].endswith("/runtimes/nodejs/index.mjs") or rest[-1] == "/var/runtime/index.mjs"  # (sandbox)


def test_exec_wrapper_missing(server: Server) -> None:
    name = deploy(server, {"index.mjs": "export const handler = async () => 1;"},
                  env={"AWS_LAMBDA_EXEC_WRAPPER": "/no/such/wrapper"})
    _doc, err = invoke(server, name)
    assert err == "Unhandled"
    wait_for_log(server, name, lambda m: "/no/such/wrapper: does not exist" in m)


def test_version_warning_in_log(server: Server) -> None:
    from lambdalet.environment.managed.nodejs import find_node, node_major

    host = node_major(find_node("nodejs24.x"))
    other = "nodejs18.x" if host != 18 else "nodejs24.x"
    name = deploy(server, {"index.mjs": "export const handler = async () => 1;"}, runtime=other)
    invoke(server, name)
    messages = log_messages(server, name)
    assert any("LAMBDALET_WARNING" in x and other in x for x in messages)


def test_plain_http_invoke_api(server: Server) -> None:
    code = "export const handler = async (e) => { if (e.fail) throw new SyntaxError('bad input'); return e; };"
    name = deploy(server, {"index.mjs": code}, runtime="nodejs24.x")
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    path = f"/2015-03-31/functions/{name}/invocations"
    conn.request("POST", path, body=b'{"a":[1,2]}')
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("X-Amz-Function-Error"), resp.read()) == (200, None, b'{"a":[1,2]}')
    conn.request("POST", path, body=b'{"fail":true}')
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    assert resp.status == 200 and resp.getheader("X-Amz-Function-Error") == "Unhandled"
    assert (doc["errorType"], doc["errorMessage"]) == ("SyntaxError", "bad input")
    conn.close()
