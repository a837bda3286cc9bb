"""Who may call the API: with `--auth` (and always off loopback) every Lambda and Logs API call, and every
call to an AWS_IAM function URL, must carry a valid AWS Signature Version 4, and unsigned or wrongly
signed calls are answered as AWS answers them (Lambda's REST API: 403 with x-amzn-ErrorType; the Logs
JSON API: 400 with __type).

Open without a signature: function URLs of AuthType NONE, /lambdalet/health, and the code download
URLs GetFunction returns (as AWS's presigned S3 links need no credentials of their own).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket

from lambdalet.api.errors import AwsError
from lambdalet.api.function_urls import url_target
from lambdalet.api.logs_api import TARGET_PREFIX
from lambdalet.credentials import Credentials, CredentialStore
from lambdalet.http11 import Request, Response
from lambdalet.invocation import new_request_id
from lambdalet.limits import MAX_CODE_REQUEST, MAX_PAYLOAD
from lambdalet.sigv4 import MISMATCH_MESSAGE, MISSING_TOKEN, SignatureError, Verifier, sha256_hex

log = logging.getLogger("lambdalet.auth")
_OPEN_PATHS = ("/lambdalet/health", "/lambdalet/code/")  # (prefixes)
_HASH_IN_THREAD = 1 << 20  # bodies hashed off the event loop from this size on


def is_loopback(host: str) -> bool:
    """Whether every address host stands for is a loopback one ('' and 0.0.0.0 are every interface)."""
    try:
        infos = socket.getaddrinfo(host or None, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def _principal(creds: Credentials) -> str:
    if creds.environment is None:
        return f"operator [{creds.owner}]"
    return f"function {creds.owner}, environment {creds.environment}"


async def _body_hash(req: Request, limit: int) -> str | None:
    """The SHA-256 of the whole body, left in place for the handler; None past limit bytes."""
    body = await req.peek(limit)
    if body is None:
        return None
    if len(body) >= _HASH_IN_THREAD:
        return await asyncio.to_thread(sha256_hex, body)
    return sha256_hex(body)


class ApiAuth:
    """SigV4 verification at the front door, against the operator's keys and the environments' own."""

    def __init__(self, store: CredentialStore, region: str) -> None:
        self.verifier = Verifier(store, region)

    def refuse(self, req: Request, resp: Response) -> bool:
        """Check a request that has arrived whole; True when it is refused (and answered)."""
        if req.raw_path.startswith(_OPEN_PATHS) or url_target(req) is not None:
            return False
        service = "logs" if req.headers.get("x-amz-target", "").startswith(TARGET_PREFIX) else "lambda"
        verifier = self.verifier
        try:
            claim = verifier.claim(req.query, req.headers, service)
            body_hash = sha256_hex(req.peek_now()) if verifier.needs_body(claim) else None
            creds = verifier.check(claim, req.method, req.raw_path, req.query, req.headers, body_hash)
        except SignatureError as err:
            _answer(resp, err, service)
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s signed by %s", req.method, req.raw_path, _principal(creds))
        return False

    async def refuse_later(self, req: Request, resp: Response) -> bool:
        """refuse() for a request whose body is still arriving: what needs no body is checked first."""
        if req.raw_path.startswith(_OPEN_PATHS) or url_target(req) is not None:
            return False
        service = "logs" if req.headers.get("x-amz-target", "").startswith(TARGET_PREFIX) else "lambda"
        try:
            creds = await self._verify(req, service, MAX_CODE_REQUEST)
        except SignatureError as err:
            _answer(resp, err, service)
            return True
        except _TooLarge:
            err = AwsError(413, "RequestEntityTooLargeException", f"Request must be smaller than "
                                                                  f"{MAX_CODE_REQUEST} bytes for the operation")
            resp.send(err.status, err.body(), err.headers(new_request_id()))
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s signed by %s", req.method, req.raw_path, _principal(creds))
        return False

    async def refuse_url(self, req: Request, resp: Response) -> bool:
        """Check a call to an AWS_IAM function URL (signed for the service 'lambda')."""
        try:
            creds = await self._verify(req, "lambda", MAX_PAYLOAD)
        except SignatureError as err:
            if err.code == MISSING_TOKEN:
                resp.send(403, b'{"Message":"Forbidden"}', {"Content-Type": "application/json"})
            else:
                _answer(resp, err, "lambda")
            return True
        except _TooLarge:
            resp.send(413, b'{"Message":"Request Entity Too Large"}', {"Content-Type": "application/json"})
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug("function URL %s signed by %s", req.raw_path, _principal(creds))
        return False

    async def _verify(self, req: Request, service: str, limit: int) -> Credentials:
        claim = self.verifier.claim(req.query, req.headers, service)
        body_hash = None
        if self.verifier.needs_body(claim):
            body_hash = await _body_hash(req, limit)
            if body_hash is None:
                raise _TooLarge
        return self.verifier.check(claim, req.method, req.raw_path, req.query, req.headers, body_hash)


class _TooLarge(Exception):
    """The body is over what any operation takes: it is refused unverified."""


def _answer(resp: Response, err: SignatureError, service: str) -> None:
    """AWS's answer to a refused signature: Lambda's REST API says 403 with x-amzn-ErrorType and a
    {"message"} body; the Logs JSON API says 400 with {"__type", "message"}, and explains a mismatch."""
    request_id = new_request_id()
    if service == "lambda":
        message = err.message or "Missing Authentication Token"
        resp.send(403, json.dumps({"message": message}, separators=(",", ":")).encode(),
                  {"Content-Type": "application/json", "x-amzn-ErrorType": err.code, "x-amzn-RequestId": request_id})
        return
    message = err.message or "Request is missing Authentication Token"
    if err.message == MISMATCH_MESSAGE and err.canonical is not None:
        canonical, to_sign = err.canonical
        message += (f"\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                    f"The String-to-Sign should have been\n'{to_sign}'\n")
    resp.send(400, json.dumps({"__type": err.code, "message": message}, separators=(",", ":")).encode(),
              {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id})
