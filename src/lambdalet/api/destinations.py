"""Where an asynchronous invocation's result goes: AWS's invocation record, as an Event invocation of a
destination function hosted here. Targets lambdalet cannot reach (SQS, SNS, EventBridge, S3, a dead-letter
queue) get a LAMBDALET_WARNING line in the function's log with what would have been sent, never nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from lambdalet.api.errors import AwsError
from lambdalet.api.event_configs import AsyncSettings
from lambdalet.api.functions import FunctionManager, Target, parse_function_name
from lambdalet.invocation import Outcome, new_request_id
from lambdalet.store import AsyncEvent, LogStore

WARNING_STREAM = "[$LATEST]lambdalet-async-invocations"  # after the date, as a log stream name
_KINDS = {"sqs": "an SQS queue", "sns": "an SNS topic", "events": "an EventBridge event bus", "s3": "an S3 bucket"}


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _json_or_text(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace")


def invocation_record(function_arn: str, executed_version: str, event: AsyncEvent, condition: str,
                      invoke_count: int, outcome: Outcome | None) -> dict[str, Any]:
    """AWS's invocation record ("Capturing records of Lambda asynchronous invocations")."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": _timestamp(),
        "requestContext": {"requestId": event.request_id, "functionArn": function_arn, "condition": condition,
                           "approximateInvokeCount": invoke_count},
        "requestPayload": _json_or_text(event.payload),
    }
    if outcome is not None:  # (an event that expired unrun has no response)
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": executed_version}
        if outcome.function_error:
            context["functionError"] = outcome.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(outcome.payload)
    return record


class Destinations:
    """Routes invocation records to the destinations of an event invoke configuration."""

    def __init__(self, functions: FunctionManager, sink: LogStore) -> None:
        self.functions = functions
        self.sink = sink

    def deliveries(self, rec: Target, qualifier: str, event: AsyncEvent, condition: str, invoke_count: int,
                   outcome: Outcome | None, settings: AsyncSettings) -> list[tuple[str, str, bytes]]:
        """The Event invocations (function, request id, payload) that carry the result of event onwards;
        what cannot be carried is written to the function's log."""
        success = condition == "Success"
        destination = settings.on_success if success else settings.on_failure
        out: list[tuple[str, str, bytes]] = []
        if destination:
            record = invocation_record(f"{self.functions.arn(rec.name)}:{qualifier}", rec.version, event,
                                       condition, invoke_count, outcome)
            target = self._function(destination)
            if target is not None:
                out.append((target, new_request_id(), json.dumps(record).encode()))
            else:
                role = "OnSuccess" if success else "OnFailure"
                self._warn(rec, f"the {role} destination {destination} of request {event.request_id} is "
                                f"{self._kind(destination)}, which lambdalet cannot deliver to. The invocation record "
                                f"was: {json.dumps(record)}")
        dead_letter = (rec.config.get("DeadLetterConfig") or {}).get("TargetArn")
        if not success and dead_letter:
            self._warn(rec, f"the dead-letter queue {dead_letter} (DeadLetterConfig) of request {event.request_id} "
                            f"({condition}) is {self._kind(dead_letter)}, which lambdalet cannot deliver to. The "
                            f"event was: {event.payload.decode('utf-8', 'replace')}")
        return out

    def _function(self, arn: str) -> str | None:
        """The function here that arn names (`name`, or `name:qualifier` for a version or alias), if it does."""
        if arn.split(":")[2:3] != ["lambda"]:
            return None
        try:
            name, qualifier = parse_function_name(arn)
        except AwsError:
            return None
        rec = self.functions.store.get(name)
        if rec is None or not arn.startswith(self.functions.arn(name)) \
                or not self.functions.qualifier_exists(rec, qualifier):
            return None
        return f"{name}:{qualifier}" if qualifier else name

    @staticmethod
    def _kind(arn: str) -> str:
        service = arn.split(":")[2] if arn.count(":") >= 2 else ""
        return _KINDS.get(service, "a function that does not exist here" if service == "lambda" else "not a target")

    def _warn(self, rec: Target, text: str) -> None:
        now = datetime.now(UTC)
        self.sink.append(f"/aws/lambda/{rec.name}", now.strftime("%Y/%m/%d/") + WARNING_STREAM,
                         f"LAMBDALET_WARNING: {text}", int(now.timestamp() * 1000))
