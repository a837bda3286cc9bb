"""lambdalet's built-in Python runtime through boto3 against a real `lambdalet serve` (one zip per case)."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from conftest import (
    Server,
    create_function,
    log_messages,
    make_zip,
    start_server,
    stop_server,
    unique_name,
    wait_for_log,
)

from lambdalet.environment.managed.python import find_interpreter

RUNTIME = "python3.12"


def invoke(server: Server, name: str, event: object = None, **extra) -> tuple[object, str | None, dict]:
    resp = server.lambda_client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra)
    raw = resp["Payload"].read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = raw
    return payload, resp.get("FunctionError"), resp


def deploy(server: Server, files: dict[str, str], handler: str, runtime: str = RUNTIME, **kw) -> str:
    name = unique_name("py")
    create_function(server, name, make_zip(files, executable=tuple(kw.pop("executable", ()))),
                    runtime=runtime, handler=handler, **kw)
    return name


ECHO_APP = """
import os

def handler(event, context):
    print("event received:", event)
    return {"event": event, "pid": os.getpid()}
"""


def test_result_print_and_warm_reuse(server: Server) -> None:
    name = deploy(server, {"lambda_function.py": ECHO_APP}, "lambda_function.handler")
    first, error, _ = invoke(server, name, {"n": 1})
    assert error is None and first["event"] == {"n": 1}
    second, error, _ = invoke(server, name, {"n": 2})
    assert error is None and second["pid"] == first["pid"]
    wait_for_log(server, name, lambda m: any("event received: {'n': 2}" in line for line in m))


ERROR_APP = """
class Boom(Exception):
    pass

def handler(event, context):
    raise Boom("bad thing")
"""


def test_handler_exception_payload_and_log(server: Server) -> None:
    name = deploy(server, {"app.py": ERROR_APP}, "app.handler")
    payload, error, resp = invoke(server, name, {})
    assert error == "Unhandled"
    assert list(payload) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert payload["errorType"] == "Boom" and payload["errorMessage"] == "bad thing"
    assert payload["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert payload["stackTrace"][0].endswith('in handler\n    raise Boom("bad thing")\n')
    payload, error, _ = invoke(server, name, {})  # still warm, still failing the same way
    assert error == "Unhandled" and payload["errorType"] == "Boom"
    messages = wait_for_log(server, name, lambda m: sum(x.startswith("[ERROR] Boom") for x in m) == 2)
    record = next(m for m in messages if m.startswith("[ERROR] Boom"))
    lines = record.rstrip("\n").split("\n")
    assert lines[0] == "[ERROR] Boom: bad thing"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[2].startswith("\u00a0\u00a0File ") and lines[3] == '\u00a0\u00a0\u00a0\u00a0raise Boom("bad thing")'


INIT_CASES = [
    ("handler", {"app.py": ECHO_APP}, "Runtime.MalformedHandlerName",
     "Bad handler 'handler': not enough values to unpack (expected 2, got 1)"),
    ("x.handler", {"app.py": ECHO_APP}, "Runtime.ImportModuleError",
     "Unable to import module 'x': No module named 'x'"),
    ("app.handler", {"app.py": "def handler(event, context)\n    return 1\n"}, "Runtime.UserCodeSyntaxError",
     "Syntax error in module 'app': "),
    ("app.f", {"app.py": ECHO_APP}, "Runtime.HandlerNotFound", "Handler 'f' missing on module 'app'"),
    ("sys.handler", {"app.py": ECHO_APP}, "Runtime.BuiltInModuleConflict",
     "Cannot use built-in module sys as a handler module"),
    ("app.handler", {"app.py": "import os\nraise LookupError('config missing: ' + 'DB_URL')\n"}, "LookupError",
     "config missing: DB_URL"),
]


@pytest.mark.parametrize(("handler", "files", "error_type", "message"), INIT_CASES,
                         ids=[case[2] for case in INIT_CASES])
def test_init_errors_reach_the_caller(server: Server, handler: str, files: dict[str, str], error_type: str,
                                      message: str) -> None:
    name = deploy(server, files, handler)
    payload, error, _ = invoke(server, name, {})
    assert error == "Unhandled"
    assert payload["errorType"] == error_type
    assert payload["errorMessage"].startswith(message)
    assert payload["requestId"] == ""
    messages = wait_for_log(server, name, lambda m: any(x.startswith(f"[ERROR] {error_type}:") for x in m))
    assert any("LAMBDA_WARNING: Unhandled exception." in m for m in messages)


def test_handler_strings(server: Server) -> None:
    files = {
        "src/handlers/api.py": "def main(event, context):\n    return 'from path'\n",
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "def fn(event, context):\n    return 'from package'\n",
    }
    for handler, expected in [("src/handlers/api.main", "from path"), ("pkg.sub.mod.fn", "from package")]:
        name = deploy(server, files, handler)
        payload, error, _ = invoke(server, name, {})
        assert (payload, error) == (expected, None)


def test_marshal_error(server: Server) -> None:
    name = deploy(server, {"app.py": "def handler(event, context):\n    return {'s': {1, 2}}\n"}, "app.handler")
    payload, error, _ = invoke(server, name, {})
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.MarshalError"
    assert payload["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


CONTEXT_APP = """
import os

def handler(event, context):
    cc = context.client_context
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client_context": None if cc is None else {"custom": cc.custom, "env": cc.env},
        "tenant_id": context.tenant_id,
        "remaining": context.get_remaining_time_in_millis(),
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
    }
"""


def test_context_object(server: Server) -> None:
    name = deploy(server, {"app.py": CONTEXT_APP}, "app.handler", timeout=7, memory=256)
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}, "env": {"e": "1"}}).encode()).decode()
    payload, error, resp = invoke(server, name, {}, ClientContext=client_context)
    assert error is None, payload
    function_arn = server.lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    assert payload["aws_request_id"] == resp["ResponseMetadata"]["RequestId"]
    assert payload["function_name"] == name
    assert payload["function_version"] == "$LATEST"
    assert payload["invoked_function_arn"] == function_arn
    assert payload["memory_limit_in_mb"] == "256"
    assert payload["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in payload["log_stream_name"]
    assert payload["identity"] == [None, None]
    assert payload["client_context"] == {"custom": {"k": "v"}, "env": {"e": "1"}}
    assert payload["tenant_id"] is None
    assert 5000 < payload["remaining"] <= 7000
    assert payload["trace_id"] and payload["trace_id"].startswith("Root=1-")
    assert payload["execution_env"] == "AWS_Lambda_python3.12"
    again, _, _ = invoke(server, name, {})
    assert again["trace_id"] != payload["trace_id"] and again["client_context"] is None


LOGGING_APP = """
import logging
logger = logging.getLogger()

def handler(event, context):
    logger.debug("debug hidden")
    logger.info("info line")
    logger.warning("first line\\nsecond line")
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    return context.aws_request_id
"""


def test_text_logging(server: Server) -> None:
    name = deploy(server, {"app.py": LOGGING_APP}, "app.handler", env={"AWS_LAMBDA_LOG_LEVEL": "INFO"})
    request_id, error, _ = invoke(server, name, {})
    assert error is None
    messages = wait_for_log(server, name, lambda m: any("lookup failed" in x for x in m))
    info = next(m for m in messages if "info line" in m)
    level, stamp, rid, text = info.split("\t")
    assert (level, rid, text.rstrip("\n")) == ("[INFO]", request_id, "info line")
    assert time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S") and stamp.endswith("Z") and len(stamp) == 24
    multi = next(m for m in messages if "first line" in m)
    assert multi.rstrip("\n").endswith("\tfirst line\nsecond line")  # one event, both lines
    failed = next(m for m in messages if "lookup failed" in m)
    assert "Traceback (most recent call last):" in failed and "KeyError: 'missing'" in failed
    assert not any("debug hidden" in m for m in messages)


def test_json_logging(server: Server) -> None:
    name = deploy(server, {"app.py": LOGGING_APP, "fail.py": ERROR_APP}, "app.handler",
                  env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    request_id, error, _ = invoke(server, name, {})
    assert error is None
    messages = wait_for_log(server, name, lambda m: any("lookup failed" in x for x in m))
    records = [json.loads(m) for m in messages if m.startswith("{")]
    debug = next(r for r in records if r.get("message") == "debug hidden")
    assert debug == {"timestamp": debug["timestamp"], "level": "DEBUG", "message": "debug hidden",
                     "logger": "root", "requestId": request_id}
    failed = next(r for r in records if r.get("message") == "lookup failed")
    assert failed["errorType"] == "KeyError" and failed["errorMessage"] == "'missing'"
    assert failed["stackTrace"] and failed["location"].endswith(":handler:" + failed["location"].rsplit(":", 1)[1])


def test_json_uncaught_error_record(server: Server) -> None:
    name = deploy(server, {"app.py": ERROR_APP}, "app.handler", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    _, error, resp = invoke(server, name, {})
    assert error == "Unhandled"
    messages = wait_for_log(server, name, lambda m: any('"errorType": "Boom"' in x for x in m))
    record = json.loads(next(m for m in messages if '"errorType": "Boom"' in m))
    assert record["level"] == "ERROR" and record["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert record["errorMessage"] == "bad thing" and record["stackTrace"]


WRAPPER = """#!/bin/sh
echo "wrapper args: $*"
export FROM_WRAPPER=yes
exec "$@"
"""


def test_exec_wrapper(server: Server) -> None:
    app = "import os\ndef handler(event, context):\n    return os.environ.get('FROM_WRAPPER')\n"
    files = {"app.py": app, "wrapper.sh": WRAPPER, "not_exec.sh": WRAPPER}
    name = deploy(server, files, "app.handler", executable=("wrapper.sh",),
                  env={"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrapper.sh"})
    payload, error, _ = invoke(server, name, {})
    assert (payload, error) == ("yes", None)
    messages = wait_for_log(server, name, lambda m: any("wrapper args:" in x for x in m))
    line = next(m for m in messages if "wrapper args:" in m)
    assert "python3.12 -s -u " in line and line.rstrip().endswith("bootstrap.py app.handler")

    for wrapper, code, text in [("/nowhere/wrap.sh", 127, "/nowhere/wrap.sh: does not exist"),
                                ("/var/task/not_exec.sh", 126, "/var/task/not_exec.sh: is not an executable")]:
        name = deploy(server, files, "app.handler", executable=("wrapper.sh",),
                      env={"AWS_LAMBDA_EXEC_WRAPPER": wrapper})
        payload, error, _ = invoke(server, name, {})
        assert error == "Unhandled"
        assert payload["errorType"] == "Runtime.ExitError", payload
        assert f"exit status {code}" in payload["errorMessage"]
        wait_for_log(server, name, lambda m, text=text: any(text in x for x in m))


BOTO3_APP = """
import os
import sys
import boto3

def handler(event, context):
    lam = boto3.client("lambda")
    logs = boto3.client("logs")
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate()
             for f in page["Functions"]]
    groups = [g["logGroupName"]
              for g in logs.describe_log_groups(logGroupNamePrefix=context.log_group_name)["logGroups"]]
    return {"me": context.function_name in names, "group": context.log_group_name in groups,
            "task_root_first": os.path.exists(os.path.join(sys.path[0], "app.py"))}
"""


def test_boto3_inside_function_reaches_lambdalet(server: Server) -> None:
    name = deploy(server, {"app.py": BOTO3_APP}, "app.handler", timeout=30)
    invoke(server, name, {})  # creates the log group
    payload, error, _ = invoke(server, name, {})
    assert error is None, payload
    assert payload == {"me": True, "group": True, "task_root_first": True}


INTERPRETER_APP = """
import sys

def handler(event, context):
    with open("/proc/self/cmdline", "rb") as f:
        argv0 = f.read().split(b"\\0")[0].decode()
    return {"version": list(sys.version_info[:2]), "executable": sys.executable, "argv0": argv0}
"""


def test_matching_host_interpreter_is_spawned(server: Server) -> None:
    runtime = next((r for r in ("python3.12", "python3.13", "python3.11") if find_interpreter(r)), None)
    if runtime is None:
        pytest.skip("no python3.11-3.13 on this host")
    name = deploy(server, {"app.py": INTERPRETER_APP}, "app.handler", runtime=runtime)
    payload, error, _ = invoke(server, name, {})
    assert error is None, payload
    assert payload["version"] == [3, int(runtime.split(".")[1])]
    assert payload["argv0"] == os.path.realpath(payload["argv0"]) == find_interpreter(runtime)
    assert "/shims/" not in payload["argv0"]


def test_missing_interpreter_falls_back_with_warning(server: Server) -> None:
    missing = next((f"python3.{m}" for m in range(14, 8, -1) if not find_interpreter(f"python3.{m}")), None)
    if missing is None:
        pytest.skip("every python3.x is installed here")
    name = deploy(server, {"app.py": INTERPRETER_APP}, "app.handler", runtime=missing)
    payload, error, _ = invoke(server, name, {})
    assert error is None, payload
    messages = wait_for_log(server, name, lambda m: any("LAMBDALET_WARNING" in x for x in m))
    warning = next(m for m in messages if "LAMBDALET_WARNING" in m)
    assert f"no {missing} interpreter" in warning and payload["argv0"] in warning


@pytest.mark.slow
def test_runtime_interpreter_option(tmp_path) -> None:
    available = [r for r in (f"python3.{m}" for m in range(9, 15)) if find_interpreter(r)]
    if not available:
        pytest.skip("no python3.x interpreter found")
    target = find_interpreter(available[0])
    srv = start_server(tmp_path / "data", "--runtime-interpreter", f"python3.14={target}")
    try:
        name = deploy(srv, {"app.py": INTERPRETER_APP}, "app.handler", runtime="python3.14")
        payload, error, _ = invoke(srv, name, {})
        assert error is None, payload
        assert payload["argv0"] == target
        assert not any("LAMBDALET_WARNING" in m for m in log_messages(srv, name))
    finally:
        stop_server(srv)
