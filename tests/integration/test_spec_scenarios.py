"""Every scenario the spec measured on AWS Lambda, with its bootstrap verbatim, against a real server."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
import spec_bootstraps as sb
from conftest import create_function, log_events, log_messages, make_zip, sandboxed, unique_name, wait_for_log

REPORT = re.compile(
    r"^REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: (?P<d>[\d.]+) ms\tBilled Duration: (?P<b>\d+) ms\t"
    r"Memory Size: 128 MB\tMax Memory Used: (?P<m>\d+) MB\t(?:Init Duration: (?P<i>[\d.]+) ms\t)?$")
INIT_START = re.compile(r"^INIT_START Runtime Version: provided:al2023\.v\d+\tRuntime Version ARN: arn:aws:lambda:"
                        r"us-east-1::runtime:[0-9a-f]{64}$")


def deploy(server, script: str, timeout: int = 3, url: bool = False, files: dict | None = None) -> tuple[str, str]:
    name = unique_name("spec")
    create_function(server, name, make_zip(files or {"bootstrap": script}), timeout=timeout)
    url_str = ""
    if url:
        url_str = server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    return name, url_str


def invoke(server, name: str, payload: dict | None = None, tail: bool = False) -> tuple[dict, bytes, float]:
    started = time.monotonic()
    kwargs = {"FunctionName": name, "Payload": json.dumps(payload if payload is not None else {}).encode()}
    if tail:
        kwargs["LogType"] = "Tail"
    resp = server.lambda_client.invoke(**kwargs)
    body = resp["Payload"].read()
    return resp, body, time.monotonic() - started


def curl(url: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - started


def streams(server, name: str) -> list[str]:
    return [s["logStreamName"] for s in
            server.logs_client.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]]


def index_of(messages: list[str], prefix: str, start: int = 0) -> int:
    for i in range(start, len(messages)):
        if messages[i].startswith(prefix):
            return i
    raise AssertionError(f"no line starting with {prefix!r} after {start} in:\n" + "\n".join(messages))


def reports(messages: list[str]) -> list[re.Match]:
    found = [REPORT.match(m) for m in messages if m.startswith("REPORT")]
    assert all(found), [m for m in messages if m.startswith("REPORT")]
    return found  # type: ignore[return-value]


# ---------------------------------------------------------------- article 1: the bootstrap


def test_bootstrap_that_only_echoes_fails_with_exit_error(server):
    name, _ = deploy(server, sb.ECHO_ONLY)
    resp, body, _ = invoke(server, name, tail=True)
    assert resp["FunctionError"] == "Unhandled"
    doc = json.loads(body)
    assert doc["errorType"] == "Runtime.ExitError"
    assert doc["errorMessage"] == f"RequestId: {resp['ResponseMetadata']['RequestId']} Error: Runtime exited " \
                                  "without providing a reason"
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    assert INIT_START.match(msgs[0])
    assert msgs[1] == "bootstrap is executed!"
    assert re.match(r"^INIT_REPORT Init Duration: [\d.]+ ms\tPhase: init\tStatus: error\tError Type: "
                    r"Runtime.ExitError$", msgs[2])
    assert msgs[3] == "bootstrap is executed!"
    assert re.match(r"^INIT_REPORT Init Duration: [\d.]+ ms\tPhase: invoke\tStatus: error\tError Type: "
                    r"Runtime.ExitError$", msgs[4])
    rid = resp["ResponseMetadata"]["RequestId"]
    assert msgs[5] == f"START RequestId: {rid} Version: $LATEST"
    assert msgs[6] == f"RequestId: {rid} Error: Runtime exited without providing a reason\nRuntime.ExitError"
    assert msgs[7] == f"END RequestId: {rid}"
    (report,) = reports(msgs)
    assert report["i"] is None  # no Init Duration: init never succeeded
    assert int(report["b"]) == max(1, int(float(report["d"]) + 0.999999))
    tail = __import__("base64").b64decode(resp["LogResult"]).decode()
    assert "Runtime exited without providing a reason" in tail and f"REPORT RequestId: {rid}" in tail


def test_next_returns_the_event_then_exit_is_an_exit_error(server):
    name, _ = deploy(server, sb.NEXT_THEN_EXIT)
    resp, body, _ = invoke(server, name, {"user-data": "hello, I'm jack!"})
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(body)["errorType"] == "Runtime.ExitError"
    rid = resp["ResponseMetadata"]["RequestId"]
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    start = index_of(msgs, "START RequestId")
    assert msgs[start + 1] == "The event data is: {\"user-data\": \"hello, I'm jack!\"}"
    assert msgs[start + 2] == f"RequestId: {rid} Error: Runtime exited without providing a reason\nRuntime.ExitError"
    (report,) = reports(msgs)
    assert report["i"] is not None  # a cold start whose init succeeded reports Init Duration
    billed = float(report["d"]) + float(report["i"])
    assert int(report["b"]) == int(billed) + (0 if billed.is_integer() else 1)


def test_runtime_api_address_is_loopback_host_and_port(server):
    name, _ = deploy(server, sb.PRINT_RUNTIME_API)
    invoke(server, name)
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    line = next(m for m in msgs if m.startswith("AWS_LAMBDA_RUNTIME_API value:"))
    assert re.match(r"^AWS_LAMBDA_RUNTIME_API value: 127\.0\.0\.1:\d+$", line)


def test_process_list_script_runs_verbatim(server):
    # In the sandbox (issue 10; root here) the script sees its environment's PID namespace only: what AWS
    # listed, with PID 1 and the bootstrap, once. Without one (not root) it walks every process of the
    # host under `set -e`, and one that exits between the glob and its `tr < /proc/$pid/cmdline` ends the
    # script early: there, the walk is tried again (each invoke runs it anew), for up to two minutes.
    in_sandbox = sandboxed()
    name, _ = deploy(server, sb.PROCESS_LIST, timeout=60)
    deadline = time.monotonic() + 120
    while True:
        resp, _, _ = invoke(server, name, {"k": 1})
        assert resp["FunctionError"] == "Unhandled"
        rid = resp["ResponseMetadata"]["RequestId"]
        msgs = wait_for_log(server, name, lambda m, rid=rid: any(x.startswith(f"REPORT RequestId: {rid}")
                                                                  for x in m))
        if in_sandbox or 'The event data is: {"k": 1}' in msgs or time.monotonic() > deadline:
            break
    assert "--- Process List ---" in msgs
    pid_lines = [m for m in msgs if m.startswith("PID ")]
    if in_sandbox:
        start = msgs.index("--- Process List ---")
        assert msgs[start + 1:start + 3] == [
            "PID 1: /var/runtime/init --enable-extensions --logs-egress-api fluxpump --disable-tracing ",
            "PID 2: /bin/sh /var/task/bootstrap ",
        ]
        assert not msgs[start + 3].startswith("PID ")
        # and port 9001 is PID 1's, as on AWS
        match = msgs.index("[MATCH FOUND]")
        assert msgs[match + 1:match + 4] == [
            "PID: 1", "Process Name: init",
            "Command Line: /var/runtime/init --enable-extensions --logs-egress-api fluxpump --disable-tracing "]
    assert any("/bin/sh" in m and "bootstrap" in m for m in pid_lines), pid_lines
    assert 'The event data is: {"k": 1}' in msgs


def test_respond_once_then_exit_delivers_response_and_logs_exit_error(server):
    name, _ = deploy(server, sb.RESPOND_ONCE)
    resp, body, _ = invoke(server, name, {"user-data": "hello, I'm jack!"})
    assert "FunctionError" not in resp
    assert json.loads(body) == {"message": "Hello from bootstrap!", "echo": {"user-data": "hello, I'm jack!"}}
    rid = resp["ResponseMetadata"]["RequestId"]
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("INIT_START") for x in m[2:]))
    i = index_of(msgs, "START RequestId")
    assert msgs[i + 1:i + 5] == ["The event data is: {\"user-data\": \"hello, I'm jack!\"}",
                                 f"The Request ID is: {rid}", '{"status":"OK"}', "Response sent successfully!"]
    assert msgs[i + 5] == f"RequestId: {rid} Error: Runtime exited without providing a reason\nRuntime.ExitError"
    assert msgs[i + 6] == f"END RequestId: {rid}"
    assert msgs[i + 7].startswith(f"REPORT RequestId: {rid}")
    assert INIT_START.match(msgs[i + 8])  # restarted in the background


def test_event_loop_bootstrap_stays_warm_in_one_environment(server):
    name, _ = deploy(server, sb.EVENT_LOOP)
    first = None
    for n in range(3):
        resp, body, _ = invoke(server, name, {"n": n})
        assert json.loads(body) == {"message": "Hello from bootstrap!", "echo": {"n": n}}
        first = first or resp
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 3)
    assert msgs.count("bootstrap is executed!") == 1
    assert len(streams(server, name)) == 1
    found = reports(msgs)
    assert found[0]["i"] is not None and found[1]["i"] is None and found[2]["i"] is None


# ---------------------------------------------------------------- article 2: init stage failures


def test_missing_bootstrap_is_invalid_entrypoint_and_not_restarted(server):
    name, url = deploy(server, "", url=True, files={"bootstrap2": sb.EVENT_LOOP})
    status, body, _ = curl(url)
    assert (status, body) == (502, b"Internal Server Error")
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    task_root = next(m for m in msgs if "Couldn't find valid bootstrap(s)" in m)
    assert re.match(r"^RequestId: [0-9a-f-]{36} Error: Couldn't find valid bootstrap\(s\): \[\S+/bootstrap "
                    r"\S+/bootstrap\]\nRuntime.InvalidEntrypoint$", task_root)
    inits = [m for m in msgs if m.startswith("INIT_REPORT")]
    assert [re.sub(r"[\d.]+ ms", "X ms", m) for m in inits] == [
        "INIT_REPORT Init Duration: X ms\tPhase: init\tStatus: error\tError Type: Runtime.InvalidEntrypoint",
        "INIT_REPORT Init Duration: X ms\tPhase: invoke\tStatus: error\tError Type: Runtime.InvalidEntrypoint",
    ]
    time.sleep(0.3)
    assert sum(m.startswith("INIT_START") for m in log_messages(server, name)) == 1  # no background restart
    status, body, _ = curl(url)
    assert (status, body) == (502, b"Internal Server Error")
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 2)
    assert len(streams(server, name)) == 1  # the same environment is reused
    resp, body, _ = invoke(server, name)
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(body)["errorType"] == "Runtime.InvalidEntrypoint"


@pytest.mark.parametrize(("script", "reason"), [
    (sb.INIT_EXIT_0, "Runtime exited without providing a reason"),
    (sb.INIT_EXIT_1, "Runtime exited with error: exit status 1"),
])
def test_init_exit_is_retried_once_then_502(server, script, reason):
    name, url = deploy(server, script, url=True)
    status, body, _ = curl(url)
    assert (status, body) == (502, b"Internal Server Error")
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    i = index_of(msgs, "INIT_START")
    assert msgs[i + 1] == "bootstrap is executed!"
    assert msgs[i + 2].endswith("Phase: init\tStatus: error\tError Type: Runtime.ExitError")
    assert msgs[i + 3] == "bootstrap is executed!"
    assert msgs[i + 4].endswith("Phase: invoke\tStatus: error\tError Type: Runtime.ExitError")
    assert msgs[i + 5].startswith("START RequestId: ")
    rid = msgs[i + 5].split()[2]
    assert msgs[i + 6] == f"RequestId: {rid} Error: {reason}\nRuntime.ExitError"
    assert msgs[i + 7] == f"END RequestId: {rid}"
    assert msgs[i + 8].startswith(f"REPORT RequestId: {rid}\t")
    # The next request reuses the environment: same stream.
    status, _, _ = curl(url)
    assert status == 502
    wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 2)
    assert len(streams(server, name)) == 1


@pytest.mark.slow
def test_init_timeout_retries_with_function_timeout_then_restores_in_background(server):
    name, url = deploy(server, sb.INIT_SLEEP_15, url=True)
    status, body, took = curl(url)
    assert (status, body) == (502, b"Internal Server Error")
    assert 12.5 < took < 15.5  # 10 s init + 3 s retry inside the invoke
    msgs = log_messages(server, name)
    init = [m for m in msgs if m.startswith("INIT_REPORT")]
    assert re.match(r"^INIT_REPORT Init Duration: 10\d\d\d\.\d\d ms\tPhase: init\tStatus: timeout$", init[0])
    assert re.match(r"^INIT_REPORT Init Duration: 30\d\d\.\d\d ms\tPhase: invoke\tStatus: timeout$", init[1])
    assert "bootstrap sleep done" not in msgs  # the tree was killed
    timed_out = [m for m in msgs if "Task timed out after" in m]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9a-f-]{36} Task timed out after 3\.\d\d seconds$",
                    timed_out[0])
    report = reports(msgs)[0]
    assert int(report["b"]) == 3000  # billed duration is capped at the timeout
    # A third attempt, in the background, with the 10 s budget again (its first line may still be on its way).
    msgs = wait_for_log(server, name, lambda m: m[-1] == "bootstrap is executed! sleep 15s", timeout=2)
    assert INIT_START.match(msgs[-2])
    assert len(streams(server, name)) == 1


@pytest.mark.slow
def test_init_timeout_with_long_function_timeout_lets_the_retry_finish(server):
    name, _ = deploy(server, sb.INIT_SLEEP_15, timeout=30)
    resp, body, took = invoke(server, name)
    assert 24 < took < 28  # 10 s init timeout + the 15 s sleep of the retry
    assert json.loads(body)["errorType"] == "Runtime.ExitError"
    msgs = log_messages(server, name)
    assert "bootstrap sleep done" in msgs
    inits = [m for m in msgs if m.startswith("INIT_REPORT")]
    assert inits[0].endswith("Phase: init\tStatus: timeout")
    assert inits[1].endswith("Phase: invoke\tStatus: error\tError Type: Runtime.ExitError")
    rid = resp["ResponseMetadata"]["RequestId"]
    assert f"RequestId: {rid} Error: Runtime exited without providing a reason\nRuntime.ExitError" in msgs


def test_init_error_is_runtime_unknown_and_payload_is_the_posted_document(server):
    name, url = deploy(server, sb.INIT_ERROR_EXIT, url=True)
    resp, body, _ = invoke(server, name)
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(body) == {"errorMessage": "Failed to load function.", "errorType": "InvalidFunctionException",
                                "stackTrace": []}
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    msgs = msgs[: index_of(msgs, "REPORT") + 1]  # then the background restart may already be logging
    assert msgs.count('{"status":"OK"}') == 2 and msgs.count("HTTP 202") == 2
    inits = [m for m in msgs if m.startswith("INIT_REPORT")]
    assert inits[0].endswith("Phase: init\tStatus: error\tError Type: Runtime.Unknown")
    assert inits[1].endswith("Phase: invoke\tStatus: error\tError Type: Runtime.Unknown")
    assert "Unknown application error occurred\nRuntime.Unknown" in msgs
    status, text, _ = curl(url)
    assert (status, text) == (502, b"Internal Server Error")


def test_next_after_init_error_is_an_invalid_state_transition(server):
    name, _ = deploy(server, sb.INIT_ERROR_THEN_NEXT)
    resp, _, _ = invoke(server, name)
    assert resp["FunctionError"] == "Unhandled"
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    msgs = msgs[: index_of(msgs, "REPORT") + 1]  # then the background restart may already be logging
    expected = ('The event data is: {"errorMessage":"State transition from InitError to Ready failed for runtime. '
                'Error: State transition is not allowed","errorType":"InvalidStateTransition"}')
    assert msgs.count(expected) == 2
    assert index_of(msgs, expected) < index_of(msgs, "INIT_REPORT")


# ---------------------------------------------------------------- article 2: invocation stage failures


def test_crash_during_invoke_fails_fast_and_restarts(server):
    name, url = deploy(server, sb.INVOKE_CRASH, url=True)
    status, body, took = curl(url)
    assert (status, body) == (502, b"Internal Server Error")
    assert took < 2
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("INIT_START") for x in m) == 2
                        and m[-1] == "bootstrap is executed!")
    rid = msgs[index_of(msgs, "START RequestId")].split()[2]
    assert f"RequestId: {rid} Error: Runtime exited with error: exit status 1\nRuntime.ExitError" in msgs
    assert msgs[index_of(msgs, "REPORT")].count("Init Duration") == 1
    assert msgs[-1] == "bootstrap is executed!"  # restarted, blocked in /next
    status, _, _ = curl(url)
    assert status == 502
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 2)
    second = reports(msgs)[1]
    assert second["i"] is None  # a restart is not a cold start
    assert len(streams(server, name)) == 1


def test_invoke_timeout_kills_and_restarts(server):
    name, url = deploy(server, sb.INVOKE_TIMEOUT, url=True)
    status, body, took = curl(url)
    assert (status, body) == (502, b"Internal Server Error")
    assert 2.9 < took < 4.5
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("INIT_START") for x in m) == 2)
    line = next(m for m in msgs if "Task timed out" in m)
    assert re.match(r"^\S+Z [0-9a-f-]{36} Task timed out after 3\.0\d seconds$", line)
    assert "Response sent successfully!" not in msgs
    _resp, body, _ = invoke(server, name)
    assert json.loads(body)["errorType"] == "Sandbox.Timedout"
    assert re.match(r"^RequestId: \S+ Error: Task timed out after 3\.0\d seconds$", json.loads(body)["errorMessage"])
    assert len(streams(server, name)) == 1


def test_next_again_before_response_returns_the_same_event(server):
    name, _ = deploy(server, sb.NEXT_THREE_TIMES)
    resp, _, _ = invoke(server, name, {"x": "same"})
    rid = resp["ResponseMetadata"]["RequestId"]
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    assert msgs.count(f"The Request ID is: {rid}") == 3
    assert msgs.count('The event data is: {"x": "same"}') == 3
    assert f"RequestId: {rid} Error: Runtime exited without providing a reason\nRuntime.ExitError" in msgs


def test_invocation_error_keeps_the_environment_warm(server):
    name, url = deploy(server, sb.INVOCATION_ERROR_LOOP, url=True)
    resp, body, _ = invoke(server, name)
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(body) == {"errorMessage": "Error parsing event data.", "errorType": "InvalidEventDataException",
                                "stackTrace": []}
    status, text, _ = curl(url)
    assert (status, text) == (502, b"Internal Server Error")
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 2)
    assert 'Invocation error API response: {"status":"OK"}' in msgs
    assert not any("Runtime.ExitError" in m for m in msgs)
    assert msgs.count("bootstrap is executed!") == 1
    # END comes only once the runtime is back in /next.
    first_end = index_of(msgs, "END RequestId")
    assert msgs[first_end - 1] == "start to call /next api..."


def test_crash_after_response_still_delivers_the_response(server):
    name, url = deploy(server, sb.CRASH_AFTER_RESPONSE, url=True)
    status, body, _ = curl(url + "some/path?q=1")
    assert status == 200
    doc = json.loads(body)
    assert doc["message"] == "Hello from bootstrap!"
    assert doc["echo"]["rawPath"] == "/some/path" and doc["echo"]["rawQueryString"] == "q=1"
    assert list(doc) == sorted(doc)  # a result without statusCode is re-serialized as Lambda does
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("INIT_START") for x in m) == 2)
    rid = msgs[index_of(msgs, "START RequestId")].split()[2]
    i = msgs.index("Response sent successfully!")
    assert msgs[i + 1] == f"RequestId: {rid} Error: Runtime exited with error: exit status 1\nRuntime.ExitError"


def test_work_after_response_counts_against_the_timeout(server):
    name, url = deploy(server, sb.SLEEP_AFTER_RESPONSE, url=True)
    status, _body, took = curl(url)
    assert status == 200 and took < 2  # the caller is answered at /response
    msgs = wait_for_log(server, name, lambda m: sum(x.startswith("INIT_START") for x in m) == 2, timeout=10)
    assert any(re.search(r"Task timed out after 3\.\d\d seconds$", m) for m in msgs)
    report = reports(msgs)[0]
    assert 3000 <= float(report["d"]) < 3600  # a timed-out invoke lasted its whole timeout
    init = float(report["i"])
    assert int(report["b"]) == int(3000 + init) + (0 if (3000 + init).is_integer() else 1)
    assert "sleep 15s over" not in msgs


@pytest.mark.slow
def test_work_after_response_within_a_long_timeout_continues(server):
    name, _ = deploy(server, sb.SLEEP_AFTER_RESPONSE, timeout=30)
    resp, _body, took = invoke(server, name)
    assert "FunctionError" not in resp and took < 2
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m), timeout=25)
    i = msgs.index("sleep 15s over")
    assert msgs[i + 1] == "now to call /next API" and msgs[i + 2].startswith("END RequestId")
    assert not any("Task timed out" in m for m in msgs)
    assert 15000 < float(reports(msgs)[0]["d"]) < 16500  # the invoke ends at the next /next
    assert len(log_events(server, name)) == len(msgs)


# ---------------------------------------------------------------- Runtime API errors over HTTP

RUNTIME_API_ERRORS = r"""#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
H=$(mktemp)
echo "early response: $(curl -s -w ' %{http_code}' -X POST "$API/invocation/nope/response" -d '{}' | tr -d '\n')"
while true; do
  curl -sS -D "$H" -o /dev/null "$API/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  echo "late init error: $(curl -s -w ' %{http_code}' -X POST "$API/init/error" -d '{}' | tr -d '\n')"
  echo "wrong id: $(curl -s -w ' %{http_code}' -X POST "$API/invocation/wrong-id/response" -d '{}' | tr -d '\n')"
  echo "chunked: $(printf '{"chunked": true}' | curl -s -w ' %{http_code}' -X POST -H 'Transfer-Encoding: chunked' \
      -H 'Content-Type: text/plain' --data-binary @- "$API/invocation/$ID/response" | tr -d '\n')"
  echo "duplicate: $(curl -s -w ' %{http_code}' -X POST "$API/invocation/$ID/response" -d '{}' | tr -d '\n')"
  echo "duplicate error: $(curl -s -w ' %{http_code}' -X POST "$API/invocation/$ID/error" -d '{}' | tr -d '\n')"
  echo "bad mode: $(curl -s -w ' %{http_code}' -X POST -H 'Lambda-Runtime-Function-Response-Mode: nope' \
      "$API/invocation/$ID/response" -d '{}' | tr -d '\n')"
done
"""


def test_runtime_api_rejects_wrong_stale_and_duplicate_answers(server):
    name, _ = deploy(server, RUNTIME_API_ERRORS)
    resp, body, _ = invoke(server, name)
    assert "FunctionError" not in resp and body == b'{"chunked": true}'
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "text/plain"
    msgs = wait_for_log(server, name, lambda m: any(x.startswith("bad mode") for x in m))
    invalid_id = '{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}'
    assert f"early response: {invalid_id} 400" in msgs
    assert ("late init error: {\"errorMessage\":\"State transition from Running to InitError failed for runtime. "
            "Error: State transition is not allowed\",\"errorType\":\"InvalidStateTransition\"} 403") in msgs
    assert f"wrong id: {invalid_id} 400" in msgs
    assert 'chunked: {"status":"OK"} 202' in msgs
    assert any(m.startswith("duplicate: ") and m.endswith(" 403") and "InvalidStateTransition" in m for m in msgs)
    assert any(m.startswith("duplicate error: ") and m.endswith(" 403") for m in msgs)
    assert any(m.startswith("bad mode: ") and m.endswith(" 403") for m in msgs)
