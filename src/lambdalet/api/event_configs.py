"""Event invoke configuration: Put/Update/Get/Delete/ListFunctionEventInvokeConfigs, and the settings
(retries, maximum event age, destinations) they give a function's asynchronous invocations."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from lambdalet.api.code_upload import read_json
from lambdalet.api.errors import AwsError, invalid, not_found, validation
from lambdalet.api.functions import FunctionManager, parse_function_name
from lambdalet.api.rest import query_params, send_json
from lambdalet.api.validation import check_range
from lambdalet.http11 import Request, Response
from lambdalet.store import EventConfigStore, FunctionRecord

DEFAULT_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice
DEFAULT_MAX_AGE_S = 21600  # and keeps an event for up to 6 hours
# botocore's DestinationArn pattern, as AWS's validation message quotes it
DESTINATION_PATTERN = (r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:"
                       r"((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)")
_DESTINATION = re.compile(DESTINATION_PATTERN)
_SERVICES = {"OnSuccess": ("lambda", "sqs", "sns", "events"), "OnFailure": ("lambda", "sqs", "sns", "events", "s3")}


@dataclass(frozen=True)
class AsyncSettings:
    """What governs a function's Event invocations."""

    max_retries: int = DEFAULT_RETRIES
    max_age_s: int = DEFAULT_MAX_AGE_S
    on_success: str | None = None
    on_failure: str | None = None


class EventInvokeConfigs:
    """The event invoke configurations of the functions, per qualifier, in Lambda's terms."""

    def __init__(self, store: EventConfigStore, functions: FunctionManager) -> None:
        self.store = store
        self.functions = functions

    def settings(self, function: str, qualifier: str = "$LATEST") -> AsyncSettings:
        cfg = self.store.get(function, qualifier)
        if cfg is None:
            return AsyncSettings()
        dest = cfg.get("DestinationConfig") or {}
        return AsyncSettings(cfg.get("MaximumRetryAttempts", DEFAULT_RETRIES),
                             cfg.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_S),
                             (dest.get("OnSuccess") or {}).get("Destination"),
                             (dest.get("OnFailure") or {}).get("Destination"))

    # -- operations
    def put(self, raw_name: str, qualifier: str | None, body: dict[str, Any], *, merge: bool) -> dict[str, Any]:
        """PutFunctionEventInvokeConfig (replaces) or, with merge, UpdateFunctionEventInvokeConfig."""
        self._validate(body)
        if all(body.get(k) is None for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")):
            raise invalid("You must specify at least one of error handling or destination setting.")
        rec, name, qualifier = self._target(raw_name, qualifier)
        if rec is None or not self.functions.qualifier_exists(rec, qualifier):
            raise not_found("The function doesn't exist.")
        current = self.store.get(name, qualifier)
        if merge and current is None:
            raise self._missing(name, qualifier)
        cfg: dict[str, Any] = dict(current or {}) if merge else {}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if body.get(key) is not None:
                cfg[key] = body[key]
        destinations = dict(cfg.get("DestinationConfig") or {}) if merge else {}
        for key in ("OnSuccess", "OnFailure"):
            given = (body.get("DestinationConfig") or {}).get(key)
            if given is not None or not merge:
                arn = (given or {}).get("Destination")
                if arn:
                    self._check_destination(name, key, arn, body["DestinationConfig"])
                destinations[key] = {"Destination": arn} if arn else {}
        cfg["DestinationConfig"] = destinations
        cfg["LastModified"] = round(time.time(), 3)
        self.store.put(name, qualifier, cfg)
        return self._doc(name, qualifier, cfg)

    def get(self, raw_name: str, qualifier: str | None) -> dict[str, Any]:
        _, name, qualifier = self._target(raw_name, qualifier)
        cfg = self.store.get(name, qualifier)
        if cfg is None:
            raise self._missing(name, qualifier)
        return self._doc(name, qualifier, cfg)

    def delete(self, raw_name: str, qualifier: str | None) -> None:
        _, name, qualifier = self._target(raw_name, qualifier)
        if not self.store.delete(name, qualifier):
            raise self._missing(name, qualifier)

    def list(self, raw_name: str, marker: str | None, max_items: str | None) -> dict[str, Any]:
        problems: list[str] = []
        limit = 50
        if max_items is not None:
            try:
                limit = int(max_items)
            except ValueError:
                raise AwsError(400, "ValidationException", "MaxItems must be an integer.") from None
            check_range(problems, limit, "maxItems", 1, 50)
        if problems:
            raise validation(problems)
        name, _ = self.functions.split_name(raw_name)
        if self.functions.store.get(name) is None:
            raise not_found("The function doesn't exist.")
        configs = [(q, c) for q, c in self.store.of_function(name) if not marker or q > marker]
        page = configs[:limit]
        doc: dict[str, Any] = {"FunctionEventInvokeConfigs": [self._doc(name, q, c) for q, c in page]}
        if len(configs) > limit:
            doc["NextMarker"] = page[-1][0]
        return doc

    def delete_function(self, name: str) -> None:
        self.store.delete_function(name)

    def delete_qualifier(self, name: str, qualifier: str) -> None:
        self.store.delete(name, qualifier)

    # -- helpers
    def _target(self, raw_name: str, qualifier: str | None) -> tuple[FunctionRecord | None, str, str]:
        name, derived = self.functions.split_name(raw_name)
        if qualifier and derived and qualifier != derived:
            raise invalid("The derived qualifier from the function name does not match the specified qualifier.")
        return self.functions.store.get(name), name, qualifier or derived or "$LATEST"

    def _missing(self, name: str, qualifier: str) -> AwsError:
        return not_found(f"The function {self.functions.arn(name)}:{qualifier} doesn't have an EventInvokeConfig")

    def _doc(self, name: str, qualifier: str, cfg: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {"LastModified": cfg["LastModified"],
                               "FunctionArn": f"{self.functions.arn(name)}:{qualifier}"}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
            if key in cfg:
                doc[key] = cfg[key]
        return doc

    @staticmethod
    def _validate(body: dict[str, Any]) -> None:
        """The request members' constraints (botocore's model), checked before anything else, as AWS does."""
        problems: list[str] = []
        check_range(problems, body.get("MaximumRetryAttempts"), "maximumRetryAttempts", 0, 2)
        check_range(problems, body.get("MaximumEventAgeInSeconds"), "maximumEventAgeInSeconds", 60, 21600)
        dest = body.get("DestinationConfig")
        if dest is not None and not isinstance(dest, dict):
            raise invalid("DestinationConfig must be an object.")
        for key in ("OnSuccess", "OnFailure"):
            item = (dest or {}).get(key)
            if item is None:
                continue
            arn = item.get("Destination") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(arn, str | None):
                raise invalid(f"DestinationConfig.{key} must be an object with a Destination ARN.")
            member = f"destinationConfig.{key[0].lower()}{key[1:]}.destination"
            if arn is not None and (len(arn) > 350 or not _DESTINATION.fullmatch(arn)):
                problems.append(f"Value '{arn}' at '{member}' failed to satisfy constraint: Member must satisfy "
                                f"regular expression pattern: {DESTINATION_PATTERN}")
        if problems:
            raise validation(problems)

    def _check_destination(self, name: str, key: str, arn: str, dest: dict[str, Any]) -> None:
        """A destination must be a function here (not the function itself), or a service Lambda delivers to."""
        service = arn.split(":")[2] if arn.startswith("arn:") else ""
        if service not in _SERVICES[key]:
            raise invalid(f"The provided destination config {_describe(dest)} is invalid.")
        if service != "lambda":
            return
        try:
            target, qualifier = parse_function_name(arn)
        except AwsError:
            raise invalid(f"The destination ARN {arn} is invalid.") from None
        rec = self.functions.store.get(target)
        if rec is None or not arn.startswith(self.functions.arn(target)) \
                or not self.functions.qualifier_exists(rec, qualifier):
            raise invalid(f"The destination ARN {arn} is invalid.")
        if target == name:
            raise invalid("You can't specify the function as a destination for itself.")


def _describe(dest: dict[str, Any]) -> str:
    """A DestinationConfig as AWS's error message prints it."""
    parts = []
    for key in ("OnSuccess", "OnFailure"):
        arn = (dest.get(key) or {}).get("Destination")
        parts.append(f"{key}(destination={arn})" if arn else "null")
    return f"DestinationConfig(onSuccess={parts[0]}, onFailure={parts[1]})"


class EventConfigApi:
    """The REST handlers of the event invoke configuration operations."""

    def __init__(self, configs: EventInvokeConfigs) -> None:
        self.configs = configs

    async def put(self, req: Request, resp: Response, rid: str, name: str) -> None:
        body = await read_json(req, "PutFunctionEventInvokeConfig")
        send_json(resp, 200, self.configs.put(name, query_params(req).get("Qualifier"), body, merge=False), rid)

    async def update(self, req: Request, resp: Response, rid: str, name: str) -> None:
        body = await read_json(req, "UpdateFunctionEventInvokeConfig")
        send_json(resp, 200, self.configs.put(name, query_params(req).get("Qualifier"), body, merge=True), rid)

    async def get(self, req: Request, resp: Response, rid: str, name: str) -> None:
        send_json(resp, 200, self.configs.get(name, query_params(req).get("Qualifier")), rid)

    async def delete(self, req: Request, resp: Response, rid: str, name: str) -> None:
        self.configs.delete(name, query_params(req).get("Qualifier"))
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def list(self, req: Request, resp: Response, rid: str, name: str) -> None:
        q = query_params(req)
        send_json(resp, 200, self.configs.list(name, q.get("Marker"), q.get("MaxItems")), rid)

    def delete_function(self, name: str) -> None:
        """A deleted function's configurations go with it."""
        self.configs.delete_function(name)

    def delete_qualifier(self, name: str, qualifier: str) -> None:
        """A deleted version's or alias's configuration goes with it."""
        self.configs.delete_qualifier(name, qualifier)
