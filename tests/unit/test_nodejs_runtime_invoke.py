"""Invoke behaviour of lambdalet's Node.js runtime: context, errors, callbacks, crashes, awslambda global."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from test_nodejs_runtime_stub import Event, run_runtime

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
RESPONSE = "/2018-06-01/runtime/invocation/{}/response"
ERROR = "/2018-06-01/runtime/invocation/{}/error"
CALLBACK_DEPRECATED = (
    "ERROR: AWS Lambda has removed support for callback-based function handlers starting with Node.js 24. "
    "You need to modify this function to use a supported handler signature to use Node.js 24 or later. "
    "For more information see https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html."
)


def run(tmp_path: Path, code: str, events: list[Event] | None = None, *, file: str = "index.mjs", **kw: object):
    return run_runtime(tmp_path, {file: code}, "index.handler", events or [Event("req-1")], **kw)  # type: ignore[arg-type]


def answer(result, i: int = 0) -> tuple[str, object]:
    rec = result.answers[i]
    return rec.path, json.loads(rec.body)


def test_context_fields(tmp_path: Path) -> None:
    code = """export const handler = async (event, c) => ({
      awsRequestId: c.awsRequestId, invokedFunctionArn: c.invokedFunctionArn, functionName: c.functionName,
      functionVersion: c.functionVersion, memoryLimitInMB: c.memoryLimitInMB, logGroupName: c.logGroupName,
      logStreamName: c.logStreamName, clientContext: c.clientContext, identity: c.identity,
      xRayTraceId: c.xRayTraceId, tenantId: c.tenantId, remaining: c.getRemainingTimeInMillis(),
      traceEnv: process.env._X_AMZN_TRACE_ID, waits: c.callbackWaitsForEmptyEventLoop,
    });"""
    deadline = int(time.time() * 1000) + 5000
    event = Event("req-1", deadline_ms=deadline, headers={
        "Lambda-Runtime-Client-Context": '{"custom":{"k":"v"}}',
        "Lambda-Runtime-Cognito-Identity": '{"cognitoIdentityId":"id1","cognitoIdentityPoolId":"p1"}',
        "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "Lambda-Runtime-Aws-Tenant-Id": "tenant-a",
    })
    path, body = answer(run(tmp_path, code, [event, Event("req-2")]), 0)
    assert path == RESPONSE.format("req-1")
    remaining = body.pop("remaining")
    assert 3000 < remaining <= 5000
    assert body == {
        "awsRequestId": "req-1", "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
        "functionName": "fn", "functionVersion": "$LATEST", "memoryLimitInMB": "128",
        "logGroupName": "/aws/lambda/fn", "logStreamName": "2026/01/01/[$LATEST]0123456789abcdef",
        "clientContext": {"custom": {"k": "v"}},
        "identity": {"cognitoIdentityId": "id1", "cognitoIdentityPoolId": "p1"},
        "xRayTraceId": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "tenantId": "tenant-a",
        "traceEnv": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "waits": True,
    }


def test_trace_env_removed_when_header_absent(tmp_path: Path) -> None:
    code = "export const handler = async () => process.env._X_AMZN_TRACE_ID ?? 'unset';"
    result = run(tmp_path, code, [Event("r1", headers={"Lambda-Runtime-Trace-Id": "Root=1-a"}), Event("r2")])
    assert [json.loads(a.body) for a in result.answers] == ["Root=1-a", "unset"]


def test_undefined_result_is_null_and_state_survives(tmp_path: Path) -> None:
    code = "let n = 0; export const handler = async () => { n++; return n === 1 ? undefined : n; };"
    result = run(tmp_path, code, [Event("r1"), Event("r2")])
    assert [a.body for a in result.answers] == [b"null", b"2"]
    assert result.answers[0].header("Content-Type") == "application/json"


def test_thrown_error_posts_error_document(tmp_path: Path) -> None:
    code = """class CustomError extends Error { constructor(m) { super(m); this.name = 'CustomError'; } }
    export const handler = async () => { throw new CustomError('bad thing'); };"""
    result = run(tmp_path, code)
    path, doc = answer(result)
    assert path == ERROR.format("req-1")
    assert list(doc) == ["errorType", "errorMessage", "trace"]
    assert (doc["errorType"], doc["errorMessage"]) == ("CustomError", "bad thing")
    assert doc["trace"][0] == "CustomError: bad thing"
    assert '\treq-1\tERROR\tInvoke Error \t{"errorType":"CustomError","errorMessage":"bad thing",' in result.output


def test_thrown_non_error_value(tmp_path: Path) -> None:
    _, doc = answer(run(tmp_path, "export const handler = async () => { throw 'plain'; };"))
    assert doc == {"errorType": "string", "errorMessage": "plain", "trace": []}


def test_unstringifiable_result(tmp_path: Path) -> None:
    code = "export const handler = async () => { const a = {}; a.self = a; return a; };"
    path, doc = answer(run(tmp_path, code))
    assert path == ERROR.format("req-1")
    assert doc["errorType"] == "Runtime.JSONStringifyError"
    assert doc["errorMessage"] == "Unable to stringify response body"


@pytest.mark.parametrize("runtime", ["nodejs18.x", "nodejs20.x", "nodejs22.x"])
def test_callback_handler_works_up_to_22(tmp_path: Path, runtime: str) -> None:
    code = ("exports.handler = (event, context, callback) => "
            "{ callback(null, {ok: event.x}); callback(null, 'second'); };")
    result = run(tmp_path, code, [Event("r1", b'{"x":7}')], file="index.js", runtime=runtime)
    assert answer(result) == (RESPONSE.format("r1"), {"ok": 7})


def test_callback_error(tmp_path: Path) -> None:
    code = "exports.handler = (e, c, cb) => cb(new TypeError('cb failed'));"
    path, doc = answer(run(tmp_path, code, file="index.js"))
    assert path == ERROR.format("req-1")
    assert (doc["errorType"], doc["errorMessage"]) == ("TypeError", "cb failed")


def test_callback_waits_for_empty_event_loop(tmp_path: Path) -> None:
    # With the default (true) the response is sent only once the timer has run.
    code = """let fired = 0;
    exports.handler = (e, context, cb) => {
      if (e.check) return cb(null, fired);
      context.callbackWaitsForEmptyEventLoop = e.waits;
      setTimeout(() => { fired++; }, 300);
      cb(null, 'done');
    };"""
    start = time.monotonic()
    result = run(tmp_path, code, [Event("r1", b'{"waits":true}'), Event("r2", b'{"check":true}')], file="index.js")
    assert [json.loads(a.body) for a in result.answers] == ["done", 1]
    assert result.answers[0].chunk_times == []  # buffered
    assert time.monotonic() - start >= 0.3

    result = run(tmp_path / "b", code, [Event("r1", b'{"waits":false}'), Event("r2", b'{"check":true}')],
                 file="index.js")
    assert [json.loads(a.body) for a in result.answers] == ["done", 0]


@pytest.fixture(autouse=True)
def _b(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()


def test_callback_never_called_gives_null(tmp_path: Path) -> None:
    result = run(tmp_path, "exports.handler = (e, c, cb) => {};", file="index.js")
    assert answer(result) == (RESPONSE.format("req-1"), None)


def test_context_succeed_and_done(tmp_path: Path) -> None:
    code = """exports.handler = (e, context, cb) => {
      if (e.mode === 'succeed') context.succeed('s'); else context.done(new Error('d'));
    };"""
    result = run(tmp_path, code, [Event("r1", b'{"mode":"succeed"}'), Event("r2", b'{"mode":"done"}')],
                 file="index.js")
    assert answer(result, 0) == (RESPONSE.format("r1"), "s")
    path, doc = answer(result, 1)
    assert path == ERROR.format("r2") and doc["errorMessage"] == "d"


def test_async_handler_with_three_params_on_22(tmp_path: Path) -> None:
    code = "export const handler = async (e, c, cb) => 'async wins';"
    assert answer(run(tmp_path, code, runtime="nodejs22.x")) == (RESPONSE.format("req-1"), "async wins")


@pytest.mark.parametrize("code", [
    "exports.handler = (e, c, cb) => cb(null, 1);",
    "exports.handler = async (e, c, cb) => 1;",
])
def test_callback_handler_refused_on_24(tmp_path: Path, code: str) -> None:
    result = run(tmp_path, code, file="index.js", runtime="nodejs24.x", expect_answers=1, expect_exit=True)
    assert result.returncode == 1
    assert result.answers[0].path == "/2018-06-01/runtime/init/error"
    assert result.answers[0].header("Lambda-Runtime-Function-Error-Type") == "Runtime.CallbackHandlerDeprecated"
    doc = json.loads(result.answers[0].body)
    assert (doc["errorType"], doc["errorMessage"]) == ("Runtime.CallbackHandlerDeprecated", CALLBACK_DEPRECATED)


def test_context_succeed_absent_on_24(tmp_path: Path) -> None:
    code = ("export const handler = async (e, c) => "
            "[typeof c.succeed, typeof c.done, 'callbackWaitsForEmptyEventLoop' in c];")
    assert answer(run(tmp_path, code, runtime="nodejs24.x"))[1] == ["undefined", "undefined", False]


def test_uncaught_exception_fails_invoke_and_exits(tmp_path: Path) -> None:
    code = """export const handler = async () => {
      setTimeout(() => { throw new RangeError('async boom'); }, 10);
      return new Promise(() => {});
    };"""
    result = run(tmp_path, code, [Event("r1"), Event("r2")], expect_answers=1, expect_exit=True)
    path, doc = answer(result)
    assert path == ERROR.format("r1")
    assert (doc["errorType"], doc["errorMessage"]) == ("RangeError", "async boom")
    assert result.returncode == 129
    assert "\tr1\tERROR\tUncaught Exception \t{\"errorType\":\"RangeError\"" in result.output


def test_unhandled_rejection_fails_invoke_and_exits(tmp_path: Path) -> None:
    code = """export const handler = async () => {
      Promise.reject(new Error('nobody catches'));
      await new Promise((r) => setTimeout(r, 200));
      return 'too late';
    };"""
    result = run(tmp_path, code, [Event("r1"), Event("r2")], expect_answers=1, expect_exit=True)
    path, doc = answer(result)
    assert path == ERROR.format("r1")
    assert doc["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert doc["errorMessage"] == "Error: nobody catches"
    assert result.returncode == 128


def test_never_settling_promise_is_reported(tmp_path: Path) -> None:
    code = "export const handler = () => new Promise(() => {});"
    path, doc = answer(run(tmp_path, code, runtime="nodejs24.x"))
    assert path == ERROR.format("req-1")
    assert doc["errorType"] == "Runtime.NodeJsExit"


def test_invalid_json_event(tmp_path: Path) -> None:
    result = run(tmp_path, "export const handler = async (e) => e;", [Event("r1", b"not json"), Event("r2", b"3")])
    assert answer(result, 0)[0] == ERROR.format("r1")
    assert answer(result, 0)[1]["errorType"] == "Runtime.UnmarshalError"
    assert answer(result, 1) == (RESPONSE.format("r2"), 3)


def test_awslambda_global_and_opt_out(tmp_path: Path) -> None:
    code = """export const handler = async () => [typeof globalThis.awslambda?.streamifyResponse,
      typeof globalThis.awslambda?.HttpResponseStream?.from, globalThis.awslambda?.InvokeStore?.getRequestId()];"""
    assert answer(run(tmp_path, code))[1] == ["function", "function", "req-1"]
    for value in ("1", "true"):
        sub = tmp_path / value
        sub.mkdir()
        result = run(sub, code, env={"AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA": value})
        assert answer(result)[1] == ["undefined", "undefined", None]


def test_expose_gc_and_heap_flags(tmp_path: Path) -> None:
    code = """import v8 from 'node:v8';
    export const handler = async () => [typeof gc, process.execArgv, process.env.AWS_EXECUTION_ENV,
      process.env.NODE_PATH.split(':')[0]];"""
    result = run(tmp_path, code, runtime="nodejs22.x", memory_mb=512)
    gc, exec_argv, execution_env, first_path = answer(result)[1]
    assert gc == "function"
    assert exec_argv == ["--expose-gc", "--max-http-header-size", "81920", "--max-semi-space-size=8",
                         "--max-old-space-size=461"]
    assert execution_env == "AWS_Lambda_nodejs22.x"
    assert first_path == "/opt/nodejs/node22/node_modules"


def test_exec_wrapper_runs_node(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrap.sh"
    wrapper.write_text('#!/bin/bash\nexport FROM_WRAPPER="$1"\nexec "$@"\n')
    wrapper.chmod(0o755)
    code = "export const handler = async () => [process.env.FROM_WRAPPER === process.execPath, process.execArgv[0]];"
    result = run(tmp_path, code, env={"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)})
    assert answer(result)[1] == [True, "--expose-gc"]


def test_exec_wrapper_missing(tmp_path: Path) -> None:
    result = run(tmp_path, "export const handler = async () => 1;", env={"AWS_LAMBDA_EXEC_WRAPPER": "/no/such"},
                 expect_answers=0, expect_exit=True)
    assert result.returncode == 127
    assert result.output == "/no/such: does not exist\n"


def test_keep_alive_single_connection(tmp_path: Path) -> None:
    result = run(tmp_path, "export const handler = async () => 1;", [Event(f"r{i}") for i in range(5)])
    assert len(result.answers) == 5
    assert result.api.connections == 1
    nexts = [r for r in result.requests if r.path.endswith("/next")]
    assert all(r.header("User-Agent") is None for r in nexts)
