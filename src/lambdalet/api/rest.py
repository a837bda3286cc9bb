"""Small helpers shared by the REST operations' modules: JSON answers and query parameters."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from lambdalet.api.errors import AwsError
from lambdalet.api.validation import max_value_error, min_value_error
from lambdalet.http11 import Request, Response


def send_json(resp: Response, status: int, doc: Any, request_id: str) -> None:
    body = b"" if doc is None else json.dumps(doc).encode()
    resp.send(status, body, {"Content-Type": "application/json", "x-amzn-RequestId": request_id})


def query_params(req: Request) -> dict[str, str]:
    if not req.query:
        return {}
    return {k: v[-1] for k, v in parse_qs(req.query, keep_blank_values=True).items()}


def validation_error(problems: list[str]) -> AwsError:
    """AWS's ValidationException for the request members that failed their constraints."""
    count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
    return AwsError(400, "ValidationException", count + "; ".join(problems))


def check_range(problems: list[str], value: Any, member: str, low: int, high: int) -> None:
    """Note a problem when value (if given) is not an integer in [low, high], worded as AWS does."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(f"Value '{value}' at '{member}' failed to satisfy constraint: Member must be an integer")
    elif value > high:
        problems.append(max_value_error(value, member, high))
    elif value < low:
        problems.append(min_value_error(value, member, low))
