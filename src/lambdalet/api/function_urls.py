"""Function URLs: an HTTP request becomes a payload-format-2.0 event; the result becomes the HTTP response.

Served path-based on the server's own address (/lambda-url/<url-id>/...) and host-based
(<url-id>.lambda-url.<region>.localhost), so a FunctionUrl works with curl and no DNS set-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from lambdalet.api.errors import AwsError
from lambdalet.api.functions import FunctionManager
from lambdalet.api.invoker import Invoker
from lambdalet.http11 import BodyTooLarge, Request, Response, valid_field
from lambdalet.invocation import Invocation, Outcome, ResponseStream
from lambdalet.limits import MAX_PAYLOAD

if TYPE_CHECKING:
    from lambdalet.api.auth import ApiAuth

PATH_PREFIX = "/lambda-url/"
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml",
               "application/x-www-form-urlencoded", "+json", "+xml")
_DELIMITER = b"\x00" * 8
_SLASHES = re.compile(r"/{2,}")
_FORBIDDEN = (b'{"Message":"Forbidden. For troubleshooting Function URL authorization issues, see: '
              b'https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"}')


def url_target(req: Request) -> tuple[str, str] | None:
    """(url id, raw path below the URL) when the request is for a function URL."""
    host = req.headers.get("host", "")
    if ".lambda-url." in host:
        return host.split(":")[0].split(".", 1)[0], req.raw_path or "/"
    if req.raw_path.startswith(PATH_PREFIX):
        rest = req.raw_path[len(PATH_PREFIX):]
        url_id, slash, path = rest.partition("/")
        return url_id, slash + path if slash else "/"
    return None


def _is_text(content_type: str) -> bool:
    ct = content_type.lower()
    return any(t in ct for t in _TEXT_TYPES)


def build_event(req: Request, url_id: str, raw_path: str, body: bytes, request_id: str, account: str,
                region: str) -> dict[str, Any]:
    headers = {k: v for k, v in req.headers.items() if k != "cookie"}
    host = req.headers.get("host", "")
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-for", req.client_host)
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": req.query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": host.split(":")[0] or f"{url_id}.lambda-url.{region}.localhost",
            "domainPrefix": url_id,
            "http": {"method": req.method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": req.client_host, "userAgent": req.headers.get("user-agent", "")},
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    cookies = req.headers.get("cookie")
    if cookies:
        event["cookies"] = [c.strip() for c in cookies.split(";") if c.strip()]
    if req.query:
        params: dict[str, str] = {}
        for k, v in parse_qsl(req.query, keep_blank_values=True):
            params[k] = f"{params[k]},{v}" if k in params else v
        event["queryStringParameters"] = params
    if body:
        if _is_text(req.headers.get("content-type", "")):
            try:
                event["body"] = body.decode()
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def map_result(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Lambda's mapping of a function result to an HTTP response (status, headers, body)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return 200, [("Content-Type", "application/json")], payload
    if isinstance(doc, dict) and "statusCode" in doc:
        status = doc.get("statusCode")
        if isinstance(status, str) and status.isdecimal():  # Lambda takes "418" as 418
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise ValueError("bad statusCode")
        headers = [(str(k), str(v)) for k, v in (doc.get("headers") or {}).items()]
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        for cookie in doc.get("cookies") or []:
            headers.append(("Set-Cookie", str(cookie)))
        _check_headers(headers)
        body = doc.get("body")
        if body is None:
            data = b""
        elif not isinstance(body, str):
            data = json.dumps(body).encode()
        elif doc.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = body.encode()
        return status, headers, data
    if isinstance(doc, dict | list):
        payload = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    elif isinstance(doc, str):  # a JSON string is the body itself
        payload = doc.encode()
    return 200, [("Content-Type", "application/json")], payload


def _check_headers(headers: list[tuple[str, str]]) -> None:
    """A header that cannot be one header line (CR, LF, NUL, a bad name) makes the result invalid: 502."""
    for name, value in headers:
        if not valid_field(name, value):
            raise ValueError(f"invalid response header {name!r}")


def cors_headers(cors: dict[str, Any] | None, req: Request, preflight: bool = False) -> list[tuple[str, str]]:
    """The CORS headers Lambda adds for a function URL's Cors configuration, for an allowed Origin."""
    origin = req.headers.get("origin")
    if not cors or not origin:
        return []
    origins = cors.get("AllowOrigins") or []
    credentials = bool(cors.get("AllowCredentials"))
    if origin in origins:
        allow = origin
    elif "*" in origins:
        allow = origin if credentials else "*"
    else:
        return []
    headers = [("Access-Control-Allow-Origin", allow)]
    if credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if preflight:
        if cors.get("AllowMethods"):
            headers.append(("Access-Control-Allow-Methods", ",".join(cors["AllowMethods"])))
        if cors.get("AllowHeaders"):
            headers.append(("Access-Control-Allow-Headers", ",".join(cors["AllowHeaders"])))
        if cors.get("MaxAge") is not None:
            headers.append(("Access-Control-Max-Age", str(cors["MaxAge"])))
    elif cors.get("ExposeHeaders"):
        headers.append(("Access-Control-Expose-Headers", ",".join(cors["ExposeHeaders"])))
    if allow != "*":
        headers.append(("Vary", "Origin"))
    return headers


def with_cors(headers: list[tuple[str, str]], cors_hdrs: list[tuple[str, str]], cors: dict[str, Any] | None
              ) -> list[tuple[str, str]]:
    """The function's headers, where a Cors configuration replaces the function's own CORS headers."""
    if not cors:
        return headers
    return [(k, v) for k, v in headers if not k.lower().startswith("access-control-")] + cors_hdrs


def _server_error(resp: Response) -> None:
    resp.send(502, b"Internal Server Error", {"Content-Type": "text/plain"})


class FunctionUrls:
    """Serves function URLs for every function that has one."""

    def __init__(self, functions: FunctionManager, invoker: Invoker, auth: ApiAuth | None = None) -> None:
        self.functions = functions
        self.invoker = invoker
        self.auth = auth  # None: an AWS_IAM URL only needs to look signed

    async def handle(self, req: Request, resp: Response, url_id: str, raw_path: str) -> None:
        found = self.functions.url_target(url_id)
        if found is None:  # an unknown URL id is forbidden, as on AWS
            resp.send(403, _FORBIDDEN, {"Content-Type": "application/json",
                                        "x-amzn-ErrorType": "AccessDeniedException"})
            return
        url_config, rec, arn = found
        raw_path = _SLASHES.sub("/", raw_path)
        if url_config.get("AuthType") == "AWS_IAM":
            if self.auth is not None:
                if await self.auth.refuse_url(req, resp):
                    return
            elif "authorization" not in req.headers and "X-Amz-Signature=" not in req.query:
                resp.send(403, b'{"Message":"Forbidden"}', {"Content-Type": "application/json"})
                return
        cors = url_config.get("Cors")
        if cors and req.method == "OPTIONS" and "access-control-request-method" in req.headers:
            resp.send(200, b"", cors_headers(cors, req, preflight=True))  # answered by Lambda itself
            return
        try:
            body = await req.read(MAX_PAYLOAD)
        except BodyTooLarge:
            resp.send(413, b'{"Message":"Request Entity Too Large"}', {"Content-Type": "application/json"})
            return
        inv = Invocation(payload=b"", invoked_arn=arn, executed_version=rec.version)
        event = build_event(req, url_id, raw_path, body, inv.request_id, self.functions.account,
                            self.functions.region)
        inv.payload = json.dumps(event).encode()
        if len(inv.payload) > MAX_PAYLOAD:
            resp.send(413, b'{"Message":"Request Entity Too Large"}', {"Content-Type": "application/json"})
            return
        try:
            await self.invoker.start(rec, inv)
        except AwsError as err:
            if err.status == 429:
                resp.send(429, b'{"Message":"Rate Exceeded."}', {"Content-Type": "application/json"})
                return
            raise
        outcome = await inv.outcome
        extra = cors_headers(cors, req)
        if outcome.stream is not None and url_config.get("InvokeMode") == "RESPONSE_STREAM":
            await self._stream(resp, outcome.stream, inv, lambda h: with_cors(h, extra, cors))
            return
        if outcome.stream is not None:
            outcome = await self._buffer_stream(outcome.stream)
        if outcome.function_error:
            _server_error(resp)
            return
        try:
            status, headers, data = map_result(outcome.payload)
        except (ValueError, TypeError, binascii.Error):
            _server_error(resp)
            return
        headers.append(("x-amzn-RequestId", inv.request_id))
        resp.send(status, data, with_cors(headers, extra, cors))

    @staticmethod
    async def _buffer_stream(stream: ResponseStream) -> Outcome:
        from lambdalet.api.invoker import collect

        outcome = await collect(stream)
        if outcome.function_error or stream.content_type != HTTP_INTEGRATION:
            return outcome
        prelude, _, rest = outcome.payload.partition(_DELIMITER)
        try:
            meta = json.loads(prelude or b"{}")
        except ValueError:
            meta = {}
        doc = {"statusCode": meta.get("statusCode", 200), "headers": meta.get("headers") or {},
               "cookies": meta.get("cookies") or [], "body": base64.b64encode(rest).decode(),
               "isBase64Encoded": True}
        return Outcome(payload=json.dumps(doc).encode())

    @staticmethod
    async def _stream(resp: Response, stream: ResponseStream, inv: Invocation,
                      finish_headers: Callable[[list[tuple[str, str]]], list[tuple[str, str]]]) -> None:
        chunks = stream.chunks()
        status, headers = 200, [("Content-Type", stream.content_type)]
        pending = b""
        received = False
        if stream.content_type == HTTP_INTEGRATION:
            headers = []
            async for chunk in chunks:
                pending += chunk
                received = True
                if _DELIMITER in pending:
                    break
            prelude, found, pending = pending.partition(_DELIMITER)
            if not found:  # the function ended without writing a full prelude
                pending, prelude = b"", prelude or b"{}"
            try:
                meta = json.loads(prelude or b"{}")
                status = int(meta.get("statusCode", 200))
                headers = [(str(k), str(v)) for k, v in (meta.get("headers") or {}).items()]
                headers += [("Set-Cookie", str(c)) for c in meta.get("cookies") or []]
            except (ValueError, TypeError, AttributeError):
                status, headers = 200, []
            if not all(valid_field(k, v) for k, v in headers):
                _server_error(resp)
                return
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "application/octet-stream"))
        if not received and stream.closed and stream.error_type is not None and stream.size == 0:
            _server_error(resp)  # failed before writing anything
            return
        headers.append(("x-amzn-RequestId", inv.request_id))
        resp.start(status, finish_headers(headers))
        resp.write(pending)
        async for chunk in chunks:
            resp.write(chunk)
            await resp.drain()
        resp.end()
