"""The Lambda REST API through boto3: management, invoke modes, errors in AWS's shape."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import time
import urllib.request
import zipfile

import pytest
import spec_bootstraps as sb
from botocore.exceptions import ClientError
from conftest import create_function, log_messages, make_zip, unique_name, wait_for_log

# A bootstrap that echoes the event and the Runtime API headers it was given.
ECHO_HEADERS = r"""#!/bin/bash
set -euo pipefail
H=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$H" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  HDRS=$(grep -i '^Lambda-Runtime' "$H" | tr -d '\r' | sed 's/"/\\"/g' | awk '{n=$1; sub(/:$/,"",n); sub(/^[^:]*: /,""); printf "%s\"%s\":\"%s\"", (NR>1?",":""), tolower(n), $0}')
  ENVV="\"fn\":\"$AWS_LAMBDA_FUNCTION_NAME\",\"mem\":\"$AWS_LAMBDA_FUNCTION_MEMORY_SIZE\",\"greeting\":\"${GREETING:-}\",\"cwd\":\"$PWD\",\"root\":\"$LAMBDA_TASK_ROOT\",\"stream\":\"$AWS_LAMBDA_LOG_STREAM_NAME\",\"handler\":\"$_HANDLER\",\"mc\":\"${AWS_LAMBDA_MAX_CONCURRENCY:-unset}\""
  echo "handled $ID"
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "{\"event\":$EVENT,\"headers\":{$HDRS},$ENVV}"
done
"""

SLOW_ECHO = r"""#!/bin/bash
H=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$H" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  sleep 0.5
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "{\"event\":$EVENT,\"stream\":\"$AWS_LAMBDA_LOG_STREAM_NAME\"}"
done
"""


def error_code(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def echo_fn(server):
    name = unique_name("echo")
    create_function(server, name, make_zip({"bootstrap": ECHO_HEADERS}), env={"GREETING": "hi"}, memory=256)
    return name


def test_create_get_list_update_delete(server):
    lam = server.lambda_client
    name = unique_name("crud")
    cfg = create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}), Description="d",
                          Architectures=["arm64"])
    assert cfg["FunctionName"] == name
    assert cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert (cfg["Runtime"], cfg["Timeout"], cfg["MemorySize"], cfg["Version"]) == ("provided.al2023", 3, 128, "$LATEST")
    assert cfg["State"] == "Pending" and cfg["Architectures"] == ["arm64"] and cfg["Description"] == "d"
    assert cfg["CodeSha256"] and cfg["CodeSize"] > 0
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["RevisionId"] == cfg["RevisionId"] and got["Configuration"]["State"] == "Active"
    with urllib.request.urlopen(got["Code"]["Location"]) as r:
        assert zipfile.ZipFile(io.BytesIO(r.read())).namelist() == ["bootstrap"]
    assert lam.get_function_configuration(FunctionName=cfg["FunctionArn"])["FunctionName"] == name
    updated = lam.update_function_configuration(FunctionName=name, Timeout=10, MemorySize=512,
                                                Environment={"Variables": {"AB": "1"}})
    assert (updated["Timeout"], updated["MemorySize"]) == (10, 512)
    assert updated["RevisionId"] != cfg["RevisionId"]
    code = lam.update_function_code(FunctionName=name, ZipFile=make_zip({"bootstrap": sb.ECHO_ONLY}))
    assert code["CodeSha256"] != cfg["CodeSha256"] and code["Timeout"] == 10
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=name, Runtime="provided.al2", Role="arn:aws:iam::000000000000:role/r",
                            Handler="h",
                            Code={"ZipFile": make_zip({"bootstrap": "x"})})
    assert error_code(exc.value) == ("ResourceConflictException", 409)
    lam.delete_function(FunctionName=name)
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=name)
    assert error_code(exc.value) == ("ResourceNotFoundException", 404)
    assert "Function not found: arn:aws:lambda:us-east-1:000000000000:function:" in str(exc.value)


def test_list_functions_pages_with_marker(server):
    prefix = unique_name("page")
    for i in range(5):
        create_function(server, f"{prefix}-{i}", make_zip({"bootstrap": sb.EVENT_LOOP}))
    names, marker = [], None
    while True:
        kwargs = {"MaxItems": 2, **({"Marker": marker} if marker else {})}
        page = server.lambda_client.list_functions(**kwargs)
        assert len(page["Functions"]) <= 2
        names += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert [n for n in names if n.startswith(prefix)] == [f"{prefix}-{i}" for i in range(5)]
    paginated = [f["FunctionName"] for p in server.lambda_client.get_paginator("list_functions").paginate()
                 for f in p["Functions"]]
    assert paginated == names


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"Runtime": "java8"}, "InvalidParameterValueException"),
    ({"Timeout": 0}, "ValidationException"),
    ({"Timeout": 901}, "InvalidParameterValueException"),
    ({"MemorySize": 64}, "ValidationException"),
    ({"MemorySize": 10241}, "InvalidParameterValueException"),
    ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, "InvalidParameterValueException"),
    ({"Environment": {"Variables": {"1BAD": "x"}}}, "InvalidParameterValueException"),
    ({"Environment": {"Variables": {"G": "x"}}}, "InvalidParameterValueException"),  # AWS: 2 characters at least
    ({"Code": {"ZipFile": b"not a zip"}}, "InvalidParameterValueException"),
    ({"LoggingConfig": {"LogFormat": "XML"}}, "InvalidParameterValueException"),
    ({"TracingConfig": {"Mode": "Sometimes"}}, "InvalidParameterValueException"),
    ({"EphemeralStorage": {"Size": 1}}, "InvalidParameterValueException"),
    ({"Description": 7}, "InvalidParameterValueException"),
])
def test_create_function_rejects_bad_input(server, kwargs, code):
    args = {"FunctionName": unique_name("bad"), "Runtime": "provided.al2023", "Role": "arn:aws:iam::000000000000:role/x",
            "Handler": "h", "Code": {"ZipFile": make_zip({"bootstrap": sb.EVENT_LOOP})}, **kwargs}
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).create_function(**args)
    assert error_code(exc.value) == (code, 400)


def test_update_configuration_validates_and_keeps_the_function_usable(server):
    name = unique_name("upd")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    raw = server.client("lambda", validate=False)
    for bad in ({"EphemeralStorage": {"Size": "x"}}, {"Environment": {"Variables": {"AB": 1}}}):
        with pytest.raises(ClientError) as exc:
            raw.update_function_configuration(FunctionName=name, **bad)
        assert error_code(exc.value) == ("InvalidParameterValueException", 400)
    for bad in ({"LoggingConfig": -1}, {"Environment": []}, {"TracingConfig": None, "Description": 0}):
        req = urllib.request.Request(f"{server.endpoint}/2015-03-31/functions/{name}/configuration",
                                     data=json.dumps(bad).encode(), method="PUT")
        with pytest.raises(urllib.error.HTTPError) as http_exc:
            urllib.request.urlopen(req)
        assert http_exc.value.code == 400
    cfg = raw.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "JSON"})
    assert cfg["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": f"/aws/lambda/{name}",
                                    "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}
    assert server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


@pytest.mark.parametrize("entry", ["../evil", "a/../../evil", "/abs/evil"])
def test_zip_with_paths_outside_the_package_is_rejected(server, entry):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bootstrap", sb.EVENT_LOOP)
        zf.writestr(zipfile.ZipInfo(entry), "x")
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("zip"), buf.getvalue())
    assert error_code(exc.value) == ("InvalidParameterValueException", 400)
    assert "outside the package" in exc.value.response["Error"]["Message"]


def test_malformed_json_and_unknown_routes_get_aws_errors(server):
    req = urllib.request.Request(server.endpoint + "/2015-03-31/functions", data=b"{not json",
                                 method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    assert exc.value.code == 400
    assert exc.value.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert "message" in json.loads(exc.value.read())
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(server.endpoint + "/nope")
    assert exc.value.code == 404
    # Garbage on the socket does not hurt the server.
    import socket

    with socket.create_connection(("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1]))) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert server.lambda_client.list_functions()["Functions"] is not None


def test_invoke_passes_event_context_headers_and_environment(server, echo_fn):
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    resp = server.lambda_client.invoke(FunctionName=echo_fn, Payload=b'{"hello": "world"}', ClientContext=context)
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == "$LATEST"
    doc = json.loads(resp["Payload"].read())
    rid = resp["ResponseMetadata"]["RequestId"]
    assert doc["event"] == {"hello": "world"}
    h = doc["headers"]
    assert h["lambda-runtime-aws-request-id"] == rid
    assert h["lambda-runtime-invoked-function-arn"].endswith(f":function:{echo_fn}")
    assert abs(int(h["lambda-runtime-deadline-ms"]) - (time.time() + 3) * 1000) < 3000
    assert h["lambda-runtime-trace-id"].startswith("Root=1-")
    assert json.loads(h["lambda-runtime-client-context"]) == {"custom": {"k": "v"}}
    assert (doc["fn"], doc["mem"], doc["greeting"], doc["handler"]) == (echo_fn, "256", "hi", "function.handler")
    assert doc["cwd"] == doc["root"] and doc["mc"] == "unset"
    assert doc["stream"].endswith("]" + doc["stream"].split("]")[1]) and "[$LATEST]" in doc["stream"]


def test_empty_payload_is_an_empty_object_and_bad_payload_is_rejected(server, echo_fn):
    resp = server.lambda_client.invoke(FunctionName=echo_fn)
    assert json.loads(resp["Payload"].read())["event"] == {}
    with pytest.raises(ClientError) as exc:
        server.lambda_client.invoke(FunctionName=echo_fn, Payload=b"{oops")
    assert error_code(exc.value) == ("InvalidRequestContentException", 400)


def test_oversized_payload_is_request_too_large(server, echo_fn):
    payload = json.dumps({"x": "a" * 6291556}).encode()
    with pytest.raises(ClientError) as exc:
        server.lambda_client.invoke(FunctionName=echo_fn, Payload=payload)
    assert error_code(exc.value) == ("RequestTooLargeException", 413)
    resp = server.lambda_client.invoke(FunctionName=echo_fn, Payload=b"{}")  # still serving
    assert resp["StatusCode"] == 200


def test_unknown_function_and_qualifier(server, echo_fn):
    with pytest.raises(ClientError) as exc:
        server.lambda_client.invoke(FunctionName="does-not-exist", Payload=b"{}")
    assert error_code(exc.value) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        server.lambda_client.invoke(FunctionName=echo_fn, Qualifier="7", Payload=b"{}")
    assert error_code(exc.value) == ("ResourceNotFoundException", 404)
    resp = server.lambda_client.invoke(FunctionName=f"{echo_fn}:$LATEST", Payload=b"{}")
    assert resp["StatusCode"] == 200


def test_dry_run_and_tail(server, echo_fn):
    assert server.lambda_client.invoke(FunctionName=echo_fn, InvocationType="DryRun")["StatusCode"] == 204
    resp = server.lambda_client.invoke(FunctionName=echo_fn, Payload=b"{}", LogType="Tail")
    tail = base64.b64decode(resp["LogResult"]).decode()
    rid = resp["ResponseMetadata"]["RequestId"]
    lines = tail.splitlines()
    assert f"START RequestId: {rid} Version: $LATEST" in lines
    assert f"handled {rid}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\t")


def test_event_invocation_runs_in_the_background(server, echo_fn):
    resp = server.lambda_client.invoke(FunctionName=echo_fn, InvocationType="Event", Payload=b'{"async": 1}')
    assert resp["StatusCode"] == 202
    rid = resp["ResponseMetadata"]["RequestId"]
    wait_for_log(server, echo_fn, lambda m: f"handled {rid}" in m and f"END RequestId: {rid}" in m)


def test_failed_event_invocation_is_retried_twice(server):
    name = unique_name("retry")
    create_function(server, name, make_zip({"bootstrap": sb.INVOCATION_ERROR_LOOP}))
    server.lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) >= 3, timeout=20)
    time.sleep(3.5)
    msgs = log_messages(server, name)
    starts = [m for m in msgs if m.startswith("START")]
    assert len(starts) == 3 and len({s.split()[2] for s in starts}) == 1  # same request id each attempt


def test_concurrent_invokes_scale_out_and_never_mix_up(server):
    name = unique_name("scale")
    create_function(server, name, make_zip({"bootstrap": SLOW_ECHO}))

    def call(i: int) -> tuple[int, dict]:
        resp = server.client("lambda").invoke(FunctionName=name, Payload=json.dumps({"i": i}).encode())
        return i, json.loads(resp["Payload"].read())

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(4)))
    assert all(doc["event"] == {"i": i} for i, doc in results)
    assert len({doc["stream"] for _, doc in results}) == 4  # one environment each
    wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 4)  # all back in /next
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # warm now: no new environment
        again = list(pool.map(call, range(4)))
    assert {doc["stream"] for _, doc in again} <= {doc["stream"] for _, doc in results}


def test_reserved_concurrency_throttles(server):
    name = unique_name("throttle")
    create_function(server, name, make_zip({"bootstrap": SLOW_ECHO}))
    lam = server.lambda_client
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)[
        "ReservedConcurrentExecutions"] == 1
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1

    def call(_):
        try:
            server.client("lambda").invoke(FunctionName=name, Payload=b"{}")
            return "ok"
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(call, range(3)))
    assert outcomes.count("ok") >= 1 and "TooManyRequestsException" in outcomes
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert error_code(exc.value) == ("TooManyRequestsException", 429)
    lam.delete_function_concurrency(FunctionName=name)
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


def test_update_code_replaces_running_environments(server):
    name = unique_name("update")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    first = json.loads(server.lambda_client.invoke(FunctionName=name, Payload=b'{"v": 1}')["Payload"].read())
    assert first["message"] == "Hello from bootstrap!"
    server.lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip({"bootstrap": ECHO_HEADERS}))
    second = json.loads(server.lambda_client.invoke(FunctionName=name, Payload=b'{"v": 2}')["Payload"].read())
    assert second["event"] == {"v": 2}
    assert len(server.logs_client.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]) == 2


def test_response_too_large_is_a_function_error(server):
    big = r"""#!/bin/bash
H=$(mktemp)
while true; do
  curl -sS -D "$H" -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  head -c 7000000 /dev/zero | tr '\0' 'a' > "$H.body"
  curl -sS -w '%{http_code}\n' -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    --data-binary "@$H.body"
done
"""
    name = unique_name("big")
    create_function(server, name, make_zip({"bootstrap": big}))
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert resp["FunctionError"] == "Unhandled"
    doc = json.loads(resp["Payload"].read())
    assert doc["errorType"] == "Function.ResponseSizeTooLarge"
    assert doc["errorMessage"] == "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    wait_for_log(server, name, lambda m: any("RequestEntityTooLarge" in x or x.endswith("413") for x in m))


def test_provided_function_without_a_handler(server):
    name = unique_name("nohandler")
    server.lambda_client.create_function(FunctionName=name, Runtime="provided.al2023", Role="arn:aws:iam::000000000000:role/x",
                                         Code={"ZipFile": make_zip({"bootstrap": ECHO_HEADERS})})
    doc = json.loads(server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert doc["handler"] == ""


def test_tail_of_a_cold_start_begins_at_start(server):
    """LogType=Tail returns the invocation's log from START on: no INIT_START, no line printed in init."""
    name = unique_name("tail")
    code = "print('init says hi')\ndef handler(event, context):\n    print('handler says hi')\n    return 1\n"
    create_function(server, name, make_zip({"app.py": code}), runtime="python3.11", handler="app.handler")
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    lines = base64.b64decode(resp["LogResult"]).decode().splitlines()
    rid = resp["ResponseMetadata"]["RequestId"]
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert "handler says hi" in lines and "init says hi" not in lines
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\t") and "Init Duration" in lines[-1]


def test_timeout_and_memory_out_of_range_are_validation_errors(server):
    lam = server.client("lambda", validate=False)  # (botocore would refuse the minimums itself)
    name = unique_name("range")
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="x", Timeout=0,
                            Role="arn:aws:iam::000000000000:role/x",
                            Code={"ZipFile": make_zip({"bootstrap": "#!/bin/sh\n"})})
    assert error_code(exc.value) == ("ValidationException", 400)
    assert exc.value.response["Error"]["Message"] == (
        "1 validation error detected: Value '0' at 'timeout' failed to satisfy constraint: Member must have "
        "value greater than or equal to 1")
    create_function(server, name, make_zip({"bootstrap": "#!/bin/sh\n"}))
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=name, Timeout=6000, MemorySize=64)
    assert exc.value.response["Error"]["Message"] == (
        "2 validation errors detected: Value '6000' at 'timeout' failed to satisfy constraint: Member must have "
        "value less than or equal to 5400; Value '64' at 'memorySize' failed to satisfy constraint: Member must "
        "have value greater than or equal to 128")
    with pytest.raises(ClientError) as exc:  # within the model's bounds, beyond Lambda's own limit
        lam.update_function_configuration(FunctionName=name, Timeout=901)
    assert error_code(exc.value) == ("InvalidParameterValueException", 400)
