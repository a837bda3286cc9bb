"""Pure pieces of asynchronous invocation: the invocation record, the durable queue's hand-over, the
validation wording, the event invoke configuration's effective settings."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from lambdalet.api.destinations import invocation_record
from lambdalet.api.errors import validation
from lambdalet.api.event_configs import AsyncSettings, EventInvokeConfigs
from lambdalet.api.function_urls import map_result
from lambdalet.api.invoker import collect
from lambdalet.api.validation import check_range
from lambdalet.invocation import Outcome, ResponseStream
from lambdalet.store import AsyncEvent, AsyncEventQueue, EventConfigStore
from lambdalet.store.database import SCHEMA

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"


def event(payload: bytes = b'{"a": 1}') -> AsyncEvent:
    return AsyncEvent(id=1, function="f", request_id="rid", payload=payload, client_context=None, attempts=2,
                      created=0.0)


def test_invocation_record_of_a_failure():
    outcome = Outcome(payload=b'{"errorMessage":"no","errorType":"E"}', function_error="Unhandled")
    record = invocation_record(ARN, "$LATEST", event(), "RetriesExhausted", 3, outcome)
    assert record.pop("timestamp").endswith("Z")
    assert record == {
        "version": "1.0",
        "requestContext": {"requestId": "rid", "functionArn": ARN, "condition": "RetriesExhausted",
                           "approximateInvokeCount": 3},
        "requestPayload": {"a": 1},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "no", "errorType": "E"},
    }


def test_invocation_record_of_a_success_with_a_non_json_response_and_of_an_expired_event():
    record = invocation_record(ARN, "$LATEST", event(), "Success", 1, Outcome(payload=b"plain text"))
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == "plain text"
    expired = invocation_record(ARN, "$LATEST", event(), "EventAgeExceeded", 0, None)
    assert "responseContext" not in expired and "responsePayload" not in expired


def test_validation_wording():
    problems: list[str] = []
    for value in (None, 1):
        check_range(problems, value, "m", 0, 2)
    assert problems == []
    check_range(problems, 3, "maximumRetryAttempts", 0, 2)
    check_range(problems, 59, "maximumEventAgeInSeconds", 60, 21600)
    err = validation(problems)
    assert (err.status, err.code) == (400, "ValidationException")
    assert err.message == ("2 validation errors detected: Value '3' at 'maximumRetryAttempts' failed to satisfy "
                           "constraint: Member must have value less than or equal to 2; Value '59' at "
                           "'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value greater "
                           "than or equal to 60")
    assert validation(problems[:1]).message.startswith("1 validation error detected: ")


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    return conn


def test_completing_an_event_queues_its_destinations_in_the_same_transaction():
    queue = AsyncEventQueue(db())
    queue.put("f", "rid", b"{}", None)
    (first,) = queue.due()
    queue.complete(first.id, [("dest", "rid-2", b'{"record": 1}')])
    (follow_up,) = queue.due()
    assert (follow_up.function, follow_up.request_id, follow_up.payload, follow_up.attempts) == \
        ("dest", "rid-2", b'{"record": 1}', 0)


def test_settings_default_to_lambdas_and_follow_the_stored_configuration():
    conn = db()
    configs = EventInvokeConfigs(EventConfigStore(conn), None)  # type: ignore[arg-type]  (settings() needs no functions)
    assert configs.settings("f") == AsyncSettings(2, 21600, None, None)
    configs.store.put("f", "$LATEST", {"LastModified": 1.0, "MaximumRetryAttempts": 0,
                                       "DestinationConfig": {"OnSuccess": {}, "OnFailure": {"Destination": "arn:x"}}})
    assert configs.settings("f") == AsyncSettings(0, 21600, None, "arn:x")
    assert EventInvokeConfigs(EventConfigStore(conn), None).settings("f").max_retries == 0  # type: ignore[arg-type]


def test_function_url_result_mapping_of_strings_and_string_status_codes():
    assert map_result(b'"hello"') == (200, [("Content-Type", "application/json")], b"hello")
    assert map_result(b'{"statusCode": "418"}')[0] == 418
    for bad in (b'{"statusCode": "teapot"}', b'{"statusCode": true}', b'{"statusCode": 99}'):
        with pytest.raises(ValueError):
            map_result(bad)


def test_a_streamed_response_over_the_limit_is_worded_as_aws_does():
    async def scenario() -> Outcome:
        stream = ResponseStream("application/json", maxsize=0)
        for _ in range(7):
            await stream.put(b"a" * 1_000_000)
        stream.close()
        return await collect(stream)

    outcome = asyncio.run(scenario())
    assert (outcome.function_error, outcome.error_type) == ("Unhandled", "Function.ResponseSizeTooLarge")
    assert json.loads(outcome.payload)["errorMessage"] == \
        "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
