"""The CloudWatch Logs subset (JSON protocol, X-Amz-Target: Logs_20140328.<Operation>)."""

from __future__ import annotations

import re
import shlex
from typing import Any

from lambdalet.api.errors import AwsError
from lambdalet.store import LogStore
from lambdalet.store.request_body import NOT_AN_OBJECT, BodyError, heavy_error, is_light, loads_object

TARGET_PREFIX = "Logs_20140328."


def _bad(message: str) -> AwsError:
    return AwsError(400, "InvalidParameterException", message)


def _no_group() -> AwsError:
    return AwsError(400, "ResourceNotFoundException", "The specified log group does not exist.")


def _parse(raw: bytes) -> dict[str, Any]:
    """The request's JSON object. A body too heavy to parse in a few milliseconds is refused unparsed:
    no Logs request comes near that (at most 100 stream names, a 1024-character pattern)."""
    try:
        if raw.strip() and not is_light(raw):
            raise heavy_error()
        return loads_object(raw)
    except BodyError as err:
        if err.message == NOT_AN_OBJECT:
            raise AwsError(400, "SerializationException", "Request body must be a JSON object") from err
        raise AwsError(400, "SerializationException", f"Could not parse request: {err.message}") from err


def _string(body: dict[str, Any], key: str) -> str:
    """An optional string field ("" when absent)."""
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    return value


def _time(body: dict[str, Any], key: str) -> int | None:
    """An optional time in epoch milliseconds, within what SQLite stores."""
    value = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 62):
        raise _bad(f"{key} must be a number of milliseconds since the epoch")
    return value


def _offset(body: dict[str, Any]) -> int:
    """The position a numeric nextToken stands for (0 without one)."""
    token = _token(body)
    if token is not None and not (token.isascii() and token.isdigit() and len(token) < 19):
        raise _bad("The specified nextToken is invalid.")
    return int(token or 0)


def _group_name(body: dict[str, Any]) -> str:
    name = body.get("logGroupName") or body.get("logGroupIdentifier")
    if not isinstance(name, str) or not name:
        raise _bad("logGroupName or logGroupIdentifier is required")
    if name.startswith("arn:"):
        match = re.search(r":log-group:([^:]+)", name)
        name = match.group(1) if match else name
    return name


def _limit(body: dict[str, Any], default: int, maximum: int) -> int:
    value = body.get("limit", default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise _bad(f"limit must be between 1 and {maximum}")
    return value


def _token(body: dict[str, Any], key: str = "nextToken") -> str | None:
    token = body.get(key)
    if token is not None and not isinstance(token, str):
        raise _bad("Invalid nextToken")
    return token


class FilterPattern:
    """CloudWatch's plain-text filter pattern: terms must all appear; ?terms any; -terms none; "quoted"."""

    def __init__(self, pattern: str) -> None:
        self.all: list[str] = []
        self.any: list[str] = []
        self.none: list[str] = []
        pattern = pattern.strip()
        if pattern.startswith(("{", "[")):
            raise _bad("lambdalet supports plain-text filter patterns only")
        try:
            terms = shlex.split(pattern)
        except ValueError as exc:
            raise _bad(f"Invalid filter pattern: {exc}") from exc
        for term in terms:
            if term.startswith("?") and len(term) > 1:
                self.any.append(term[1:])
            elif term.startswith("-") and len(term) > 1:
                self.none.append(term[1:])
            else:
                self.all.append(term)

    def matches(self, message: str) -> bool:
        if self.any and not any(t in message for t in self.any):
            return False
        return all(t in message for t in self.all) and not any(t in message for t in self.none)


class LogsApi:
    """DescribeLogGroups, DescribeLogStreams, GetLogEvents and FilterLogEvents."""

    def __init__(self, logs: LogStore, region: str, account: str) -> None:
        self.logs = logs
        self.region = region
        self.account = account

    def handle(self, target: str, raw: bytes) -> dict[str, Any]:
        operation = target[len(TARGET_PREFIX):]
        handler = {
            "DescribeLogGroups": self.describe_log_groups,
            "DescribeLogStreams": self.describe_log_streams,
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
        }.get(operation)
        if handler is None:
            raise AwsError(400, "UnknownOperationException", f"lambdalet does not implement {operation}")
        return handler(_parse(raw))

    def _group_arn(self, name: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}"

    def describe_log_groups(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = _string(body, "logGroupNamePrefix") or _string(body, "logGroupNamePattern")
        limit = _limit(body, 50, 50)
        start = _offset(body)
        groups = self.logs.groups(prefix if body.get("logGroupNamePrefix") else "")
        if body.get("logGroupNamePattern"):
            groups = [g for g in groups if prefix in g[0]]
        page = groups[start:start + limit]
        doc: dict[str, Any] = {"logGroups": [
            {"logGroupName": name, "creationTime": created, "metricFilterCount": 0,
             "arn": self._group_arn(name) + ":*", "logGroupArn": self._group_arn(name), "storedBytes": size,
             "logGroupClass": "STANDARD"} for name, created, size in page]}
        if start + limit < len(groups):
            doc["nextToken"] = str(start + limit)
        return doc

    def describe_log_streams(self, body: dict[str, Any]) -> dict[str, Any]:
        group = _group_name(body)
        if not self.logs.group_exists(group):
            raise _no_group()
        order = body.get("orderBy", "LogStreamName")
        if order not in ("LogStreamName", "LastEventTime"):
            raise _bad("orderBy must be LogStreamName or LastEventTime")
        prefix = _string(body, "logStreamNamePrefix")
        if prefix and order == "LastEventTime":
            raise _bad("Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = _limit(body, 50, 50)
        start = _offset(body)
        rows = self.logs.streams(group, prefix, order == "LastEventTime", bool(body.get("descending")))
        page = rows[start:start + limit]
        streams = []
        for name, created, first, last, ingest, size in page:
            item: dict[str, Any] = {"logStreamName": name, "creationTime": created,
                                    "arn": f"{self._group_arn(group)}:log-stream:{name}", "storedBytes": size}
            if first is not None:
                item.update(firstEventTimestamp=first, lastEventTimestamp=last, lastIngestionTime=ingest)
            streams.append(item)
        doc: dict[str, Any] = {"logStreams": streams}
        if start + limit < len(rows):
            doc["nextToken"] = str(start + limit)
        return doc

    def get_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        group = _group_name(body)
        stream = body.get("logStreamName")
        if not isinstance(stream, str) or not stream:
            raise _bad("logStreamName is required")
        if not self.logs.group_exists(group):
            raise _no_group()
        if not self.logs.stream_exists(group, stream):
            raise AwsError(400, "ResourceNotFoundException", "The specified log stream does not exist.")
        limit = _limit(body, 10000, 10000)
        token = _token(body)
        start, end = _time(body, "startTime"), _time(body, "endTime")
        after = before = None
        from_head = bool(body.get("startFromHead"))
        if token:
            kind, _, value = token.partition("/")
            if kind not in ("f", "b") or not (value.isascii() and value.isdigit()) or len(value) > 60 \
                    or int(value) >= 1 << 62:
                raise _bad("The specified nextToken is invalid.")
            if kind == "f":
                after, from_head = int(value), True
            else:
                before, from_head = int(value), False
        events = self.logs.stream_events(group, stream, after_id=after, before_id=before, start=start, end=end,
                                         limit=limit, from_head=from_head)
        if events:
            forward, backward = events[-1].id, events[0].id
        else:
            forward = after if after is not None else (before - 1 if before is not None else 0)
            backward = before if before is not None else (after + 1 if after is not None else 0)
        return {
            "events": [{"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion}
                       for e in events],
            "nextForwardToken": f"f/{forward:056d}",
            "nextBackwardToken": f"b/{backward:056d}",
        }

    def filter_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        group = _group_name(body)
        if not self.logs.group_exists(group):
            raise _no_group()
        names = body.get("logStreamNames")
        if names is not None and (not isinstance(names, list) or len(names) > 100
                                  or not all(isinstance(n, str) for n in names)):
            raise _bad("logStreamNames must be a list of at most 100 stream names")
        prefix = _string(body, "logStreamNamePrefix")
        if names and prefix:
            raise _bad("logStreamNames and logStreamNamePrefix are mutually exclusive")
        pattern = FilterPattern(_string(body, "filterPattern"))
        limit = _limit(body, 10000, 10000)
        after = _offset(body)
        start, end = _time(body, "startTime"), _time(body, "endTime")
        found: list[dict[str, Any]] = []
        last_id = after
        exhausted = False
        while len(found) < limit:
            batch = self.logs.group_events(group, streams=names, stream_prefix=prefix, start=start, end=end,
                                           after_id=last_id)
            if not batch:
                exhausted = True
                break
            for event in batch:
                last_id = event.id
                if pattern.matches(event.message):
                    found.append({"logStreamName": event.stream, "timestamp": event.timestamp,
                                  "message": event.message, "ingestionTime": event.ingestion,
                                  "eventId": f"{event.timestamp}{event.id:020d}"})
                    if len(found) >= limit:
                        break
        found.sort(key=lambda e: (e["timestamp"], e["eventId"]))
        doc: dict[str, Any] = {"events": found, "searchedLogStreams": []}
        if not exhausted:
            doc["nextToken"] = str(last_id)
        return doc
