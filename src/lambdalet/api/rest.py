"""What the REST operations' modules share: JSON answers and query parameters."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from lambdalet.http11 import Request, Response


def send_json(resp: Response, status: int, doc: Any, request_id: str) -> None:
    body = b"" if doc is None else json.dumps(doc).encode()
    resp.send(status, body, {"Content-Type": "application/json", "x-amzn-RequestId": request_id})


def query_params(req: Request) -> dict[str, str]:
    if not req.query:
        return {}
    return {k: v[-1] for k, v in parse_qs(req.query, keep_blank_values=True).items()}
