"""The CloudWatch Logs subset (JSON protocol, X-Amz-Target: Logs_20140328.<Operation>)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from lambdalet.api.errors import AwsError
from lambdalet.store import LogStore

TARGET_PREFIX = "Logs_20140328."


def _bad(message: str) -> AwsError:
    return AwsError(400, "InvalidParameterException", message)


def _no_group() -> AwsError:
    return AwsError(400, "ResourceNotFoundException", "The specified log group does not exist.")


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
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise AwsError(400, "SerializationException", f"Could not parse request: {exc}") from exc
        if not isinstance(body, dict):
            raise AwsError(400, "SerializationException", "Request body must be a JSON object")
        return handler(body)

    def _group_arn(self, name: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}"

    def describe_log_groups(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = body.get("logGroupNamePrefix") or body.get("logGroupNamePattern") or ""
        limit = _limit(body, 50, 50)
        start = int(_token(body) or 0)
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
        prefix = body.get("logStreamNamePrefix") or ""
        if prefix and order == "LastEventTime":
            raise _bad("Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = _limit(body, 50, 50)
        start = int(_token(body) or 0)
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
        start, end = body.get("startTime"), body.get("endTime")
        after = before = None
        from_head = bool(body.get("startFromHead"))
        if token:
            kind, _, value = token.partition("/")
            if kind not in ("f", "b") or not value.isdigit():
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
        prefix = body.get("logStreamNamePrefix") or ""
        if names and prefix:
            raise _bad("logStreamNames and logStreamNamePrefix are mutually exclusive")
        pattern = FilterPattern(body.get("filterPattern") or "")
        limit = _limit(body, 10000, 10000)
        token = _token(body)
        after = int(token) if token and token.isdigit() else 0
        if token and not token.isdigit():
            raise _bad("The specified nextToken is invalid.")
        found: list[dict[str, Any]] = []
        last_id = after
        exhausted = False
        while len(found) < limit:
            batch = self.logs.group_events(group, streams=names, stream_prefix=prefix,
                                           start=body.get("startTime"), end=body.get("endTime"), after_id=last_id)
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
