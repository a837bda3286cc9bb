"""Event invokes under their event invoke config: retries counted exactly, event age, and AWS's invocation
record delivered to destination functions (or, for targets lambdalet cannot reach, to the function's log)."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest
from conftest import create_function, log_messages, make_zip, start_server, stop_server, unique_name, wait_for_log

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

SOURCE = """
def handler(event, context):
    print("RAN " + context.aws_request_id)
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event}
"""
RECORDER = """
import json
def handler(event, context):
    print("RECORD " + json.dumps(event))
"""


def python_function(server, prefix: str, code: str, **extra) -> str:
    name = unique_name(prefix)
    create_function(server, name, make_zip({"app.py": code}), runtime="python3.11", handler="app.handler", **extra)
    return name


def records(server, name: str, count: int = 1, timeout: float = 30) -> list[dict]:
    """The invocation records the recorder function `name` received (waits for `count` of them)."""
    def found(messages: list[str]) -> list[dict]:
        return [json.loads(m[len("RECORD "):]) for m in messages if m.startswith("RECORD ")]
    return found(wait_for_log(server, name, lambda m: len(found(m)) >= count, timeout=timeout))


def runs(server, name: str) -> int:
    return sum(m.startswith("RAN ") for m in log_messages(server, name))


@pytest.fixture
def recorder(server) -> str:
    return python_function(server, "recorder", RECORDER)


def test_success_is_delivered_to_the_on_success_function(server, recorder):
    lam = server.lambda_client
    source = python_function(server, "ok", SOURCE)
    lam.put_function_event_invoke_config(FunctionName=source, DestinationConfig={
        "OnSuccess": {"Destination": ARN + recorder}, "OnFailure": {"Destination": ARN + recorder}})
    resp = lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"n": 1, "s": "x"}')
    rid = resp["ResponseMetadata"]["RequestId"]
    (record,) = records(server, recorder)
    assert TIMESTAMP.match(record.pop("timestamp"))
    assert record == {
        "version": "1.0",
        "requestContext": {"requestId": rid, "functionArn": f"{ARN}{source}:$LATEST", "condition": "Success",
                           "approximateInvokeCount": 1},
        "requestPayload": {"n": 1, "s": "x"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"echo": {"n": 1, "s": "x"}},
    }
    assert runs(server, source) == 1


def test_retries_follow_maximum_retry_attempts_then_go_to_on_failure(server, recorder):
    lam = server.lambda_client
    source = python_function(server, "fail", SOURCE)
    lam.put_function_event_invoke_config(FunctionName=source, MaximumRetryAttempts=1,
                                         DestinationConfig={"OnFailure": {"Destination": ARN + recorder}})
    rid = lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"fail": true}')[
        "ResponseMetadata"]["RequestId"]
    (record,) = records(server, recorder)
    assert record["requestContext"] == {"requestId": rid, "functionArn": f"{ARN}{source}:$LATEST",
                                        "condition": "RetriesExhausted", "approximateInvokeCount": 2}
    assert record["requestPayload"] == {"fail": True}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                         "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "asked to fail"
    time.sleep(2.5)  # (the retry delay is 1 s in tests: a third run would have happened by now)
    assert runs(server, source) == 2
    assert [m for m in log_messages(server, source) if m.startswith("START")] == \
        [f"START RequestId: {rid} Version: $LATEST"] * 2


def test_no_retries_at_zero_and_no_record_without_a_destination(server, recorder):
    lam = server.lambda_client
    source = python_function(server, "once", SOURCE)
    lam.put_function_event_invoke_config(FunctionName=source, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": ARN + recorder}})
    lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"fail": true}')
    (record,) = records(server, recorder)
    assert record["requestContext"]["approximateInvokeCount"] == 1
    # a success has no OnSuccess destination here: nothing more is recorded
    lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{}')
    wait_for_log(server, source, lambda m: sum(x.startswith("RAN ") for x in m) == 2)
    time.sleep(1.5)
    assert len(records(server, recorder)) == 1
    assert runs(server, source) == 2


def test_default_is_two_retries(server, recorder):
    lam = server.lambda_client
    source = python_function(server, "default", SOURCE)
    lam.put_function_event_invoke_config(FunctionName=source,
                                         DestinationConfig={"OnFailure": {"Destination": ARN + recorder}})
    lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"fail": true}')
    (record,) = records(server, recorder, timeout=40)
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert runs(server, source) == 3


def test_throttles_are_retried_and_not_counted(server, recorder):
    lam = server.lambda_client
    source = python_function(server, "throttled", SOURCE)
    lam.put_function_event_invoke_config(FunctionName=source, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnSuccess": {"Destination": ARN + recorder}})
    lam.put_function_concurrency(FunctionName=source, ReservedConcurrentExecutions=0)
    lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"late": true}')
    time.sleep(2)  # throttled all along: retried, never run, never given up
    assert runs(server, source) == 0
    lam.delete_function_concurrency(FunctionName=source)
    (record,) = records(server, recorder)
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responsePayload"] == {"echo": {"late": True}}


def test_unreachable_destinations_and_dead_letter_queues_are_logged(server):
    lam = server.lambda_client
    queue, topic = "arn:aws:sqs:us-east-1:000000000000:failures", "arn:aws:sns:us-east-1:000000000000:dlq"
    source = python_function(server, "unreachable", SOURCE, DeadLetterConfig={"TargetArn": topic})
    lam.put_function_event_invoke_config(FunctionName=source, MaximumRetryAttempts=0, DestinationConfig={
        "OnSuccess": {"Destination": "arn:aws:events:us-east-1:000000000000:event-bus/default"},
        "OnFailure": {"Destination": queue}})
    ok = lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"a": 1}')["ResponseMetadata"]["RequestId"]
    bad = lam.invoke(FunctionName=source, InvocationType="Event", Payload=b'{"fail": true}')[
        "ResponseMetadata"]["RequestId"]
    messages = wait_for_log(server, source, lambda m: sum(x.startswith("LAMBDALET_WARNING") for x in m) >= 3)
    warnings = [m for m in messages if m.startswith("LAMBDALET_WARNING")]
    success = next(w for w in warnings if ok in w)
    assert success.startswith("LAMBDALET_WARNING: the OnSuccess destination arn:aws:events:us-east-1:000000000000:"
                              f"event-bus/default of request {ok} is an EventBridge event bus, which lambdalet cannot "
                              "deliver to. The invocation record was: {")
    record = json.loads(success.split("The invocation record was: ", 1)[1])
    assert record["requestContext"]["condition"] == "Success" and record["requestPayload"] == {"a": 1}
    failure = next(w for w in warnings if bad in w and "OnFailure" in w)
    assert f"the OnFailure destination {queue} of request {bad} is an SQS queue" in failure
    assert json.loads(failure.split("The invocation record was: ", 1)[1])["requestContext"]["condition"] == \
        "RetriesExhausted"
    dead = next(w for w in warnings if "dead-letter" in w)
    assert dead == (f"LAMBDALET_WARNING: the dead-letter queue {topic} (DeadLetterConfig) of request {bad} "
                    "(RetriesExhausted) is an SNS topic, which lambdalet cannot deliver to. The event was: "
                    '{"fail": true}')


def test_a_destination_deleted_since_is_logged_not_lost(server):
    lam = server.lambda_client
    source = python_function(server, "orphan", SOURCE)
    gone = python_function(server, "gone", RECORDER)
    lam.put_function_event_invoke_config(FunctionName=source,
                                         DestinationConfig={"OnSuccess": {"Destination": ARN + gone}})
    lam.delete_function(FunctionName=gone)
    rid = lam.invoke(FunctionName=source, InvocationType="Event", Payload=b"{}")["ResponseMetadata"]["RequestId"]
    messages = wait_for_log(server, source, lambda m: any(x.startswith("LAMBDALET_WARNING") for x in m))
    (warning,) = [m for m in messages if m.startswith("LAMBDALET_WARNING")]
    assert warning.startswith(f"LAMBDALET_WARNING: the OnSuccess destination {ARN}{gone} of request {rid} is a "
                              "function that does not exist here")


def test_an_event_older_than_its_maximum_age_is_dropped_not_run(tmp_path):
    """MaximumEventAgeInSeconds is at least 60: the queued event is made an hour old while the server is down."""
    data = tmp_path / "data"
    srv = start_server(data, "--async-retry-delay", "1")
    try:
        lam = srv.lambda_client
        create_function(srv, "aging", make_zip({"app.py": SOURCE}), runtime="python3.11", handler="app.handler")
        create_function(srv, "late-records", make_zip({"app.py": RECORDER}), runtime="python3.11",
                        handler="app.handler")
        lam.put_function_event_invoke_config(FunctionName="aging", MaximumEventAgeInSeconds=60,
                                             DestinationConfig={"OnFailure": {"Destination": ARN + "late-records"}})
        lam.put_function_concurrency(FunctionName="aging", ReservedConcurrentExecutions=0)  # it waits in the queue
        old = lam.invoke(FunctionName="aging", InvocationType="Event", Payload=b'{"old": 1}')[
            "ResponseMetadata"]["RequestId"]
    finally:
        assert stop_server(srv) == 0
    db = sqlite3.connect(data / "lambdalet.db")
    with db:
        assert db.execute("UPDATE async_events SET created = created - 3600 WHERE request_id = ?", (old,)).rowcount == 1
    db.close()
    srv = start_server(data, "--async-retry-delay", "1")
    try:
        lam = srv.lambda_client
        lam.delete_function_concurrency(FunctionName="aging")
        young = lam.invoke(FunctionName="aging", InvocationType="Event", Payload=b'{"young": 1}')[
            "ResponseMetadata"]["RequestId"]
        (record,) = records(srv, "late-records")
        assert TIMESTAMP.match(record.pop("timestamp"))
        assert record == {"version": "1.0",
                          "requestContext": {"requestId": old, "functionArn": f"{ARN}aging:$LATEST",
                                             "condition": "EventAgeExceeded", "approximateInvokeCount": 0},
                          "requestPayload": {"old": 1}}
        wait_for_log(srv, "aging", lambda m: f"RAN {young}" in m)
        assert f"RAN {old}" not in log_messages(srv, "aging")
    finally:
        stop_server(srv)


def test_records_queued_for_a_destination_survive_kill_9(tmp_path):
    """A record handed to a throttled destination waits in the durable queue, across a kill -9."""
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        lam = srv.lambda_client
        create_function(srv, "src", make_zip({"app.py": SOURCE}), runtime="python3.11", handler="app.handler")
        create_function(srv, "rec", make_zip({"app.py": RECORDER}), runtime="python3.11", handler="app.handler")
        lam.put_function_concurrency(FunctionName="rec", ReservedConcurrentExecutions=0)
        lam.put_function_event_invoke_config(FunctionName="src",
                                             DestinationConfig={"OnSuccess": {"Destination": ARN + "rec"}})
        rid = lam.invoke(FunctionName="src", InvocationType="Event", Payload=b'{"k": 9}')[
            "ResponseMetadata"]["RequestId"]
        wait_for_log(srv, "src", lambda m: any(x.startswith("REPORT") for x in m))
        time.sleep(0.5)
    finally:
        srv.process.kill()
        srv.process.wait()
    srv = start_server(data)
    try:
        srv.lambda_client.delete_function_concurrency(FunctionName="rec")
        (record,) = records(srv, "rec")
        assert record["requestContext"]["requestId"] == rid and record["responsePayload"] == {"echo": {"k": 9}}
        assert runs(srv, "src") == 1  # the source did not run again
    finally:
        stop_server(srv)
