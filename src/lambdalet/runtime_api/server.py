"""The Runtime API (2018-06-01) over HTTP, served to one bootstrap process on its own loopback port (or on
127.0.0.1:9001 inside its environment's network namespace: environment/netns.py)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket

from lambdalet.http11 import DEFER, BodyTooLarge, HttpServer, Prebuilt, Request, Response, ServerLimits
from lambdalet.invocation import Outcome, ResponseStream, error_document
from lambdalet.limits import MAX_HEAD_BYTES, MAX_PAYLOAD, RUNTIME_API_KEEP_ALIVE_S, RUNTIME_API_MAX_CONNECTIONS
from lambdalet.runtime_api.session import RuntimeApiError, RuntimeSession, platform_error_type

log = logging.getLogger("lambdalet.runtime_api")

PREFIX = "/2018-06-01/runtime/"
_JSON = {"Content-Type": "application/json"}
_ACCEPTED = Prebuilt(202, b'{"status":"OK"}\n', [("Content-Type", "application/json")])  # RAPID's JSON ends in \n
_NEXT = PREFIX + "invocation/next"
_INVOCATION = PREFIX + "invocation/"


_LIMITS = ServerLimits(MAX_HEAD_BYTES, RUNTIME_API_KEEP_ALIVE_S, RUNTIME_API_MAX_CONNECTIONS)
_PROTOCOL_ERRORS = {400: "InvalidRequest", 431: "RequestHeaderFieldsTooLarge", 503: "TooManyConnections",
                    500: "InternalError"}


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":")).encode() + b"\n"


def _error(resp: Response, err: RuntimeApiError) -> None:
    resp.send(err.status, _error_body(err.error_type, err.message), _JSON)


def _protocol_error(status: int, message: str) -> tuple[bytes, list[tuple[str, str]]]:
    """http11's error_answer: the Runtime API's error document."""
    return _error_body(_PROTOCOL_ERRORS.get(status, "InternalError"), message), [("Content-Type", "application/json")]


def too_large_error() -> Outcome:
    msg = f"Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."
    return Outcome(
        payload=error_document("Function.ResponseSizeTooLarge", msg),
        function_error="Unhandled", error_type="Function.ResponseSizeTooLarge",
    )


class RuntimeApiServer:
    """Serves the Runtime API for the session of the current bootstrap process."""

    def __init__(self, session: RuntimeSession) -> None:
        self.session = session
        self.http = HttpServer(self.handle, self.fast, limits=_LIMITS, error_answer=_protocol_error)
        self.address = ""
        self._parked: Response | None = None  # the /next the session's next invocation answers
        self._deliver = self._deliver_parked  # (one bound method: the session knows it by identity)

    async def start(self, sock: socket.socket | None = None) -> str:
        """Listen on a loopback port of the host, or serve sock (a listening socket of the caller's)."""
        if sock is None:
            host, port = await self.http.listen("127.0.0.1", 0)
        else:
            host, port = sock.getsockname()[:2]
            await self.http.serve(sock)
        self.address = f"{host}:{port}"
        return self.address

    def close(self) -> None:
        self.session.close()
        self.http.close()

    def fast(self, req: Request, resp: Response):
        """The hot path, for requests that arrived whole: /next parks without a task (answered by the
        session the moment an invocation is assigned), a buffered /response is answered right away."""
        path = req.path
        if path == _NEXT and req.method == "GET":
            try:
                inv = self.session.park_next(self._deliver)
            except RuntimeApiError as err:
                _error(resp, err)
                return None
            if inv is not None:
                self._send_event(resp, inv)
                return None
            self._parked = resp
            resp.on_lost = self._next_lost
            return DEFER
        if (req.method == "POST" and path.startswith(_INVOCATION) and path.endswith("/response")
                and "lambda-runtime-function-response-mode" not in req.headers):
            request_id = path[len(_INVOCATION):-len("/response")]
            try:
                inv = self.session.check_response(request_id, "InvocationResponse")
                self._buffered_response(resp, inv, req.body_now(), req.headers.get("content-type"))
            except RuntimeApiError as err:
                _error(resp, err)
            return None
        return self.handle(req, resp)

    def _deliver_parked(self, inv) -> None:
        resp, self._parked = self._parked, None
        if resp is not None:
            self._send_event(resp, inv)

    def _next_lost(self, resp: Response) -> None:
        """The parked /next's client went away: the runtime's next /next gets the invocation."""
        if self._parked is resp:
            self._parked = None
            self.session.unpark(self._deliver)

    def _buffered_response(self, resp: Response, inv, body: bytes, content_type: str | None) -> None:
        if len(body) > MAX_PAYLOAD:
            self.session.respond(inv, too_large_error())
            raise RuntimeApiError(
                413, "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes).")
        self.session.respond(inv, Outcome(body, content_type or "application/json"))  # (positional: ~0.4 µs less)
        resp.send_prebuilt(_ACCEPTED)

    async def handle(self, req: Request, resp: Response) -> None:
        path = req.path
        try:
            if path.startswith(PREFIX):
                rest = path[len(PREFIX):]
                if rest == "invocation/next" and req.method == "GET":
                    return await self._next(resp)
                if rest.startswith("invocation/") and req.method == "POST":
                    request_id, _, action = rest[len("invocation/"):].rpartition("/")
                    if action == "response":
                        return await self._response(req, resp, request_id)
                    if action == "error":
                        return await self._invocation_error(req, resp, request_id)
                if rest == "init/error" and req.method == "POST":
                    return await self._init_error(req, resp)
            elif path == "/2018-06-01/ping":
                return resp.send(200, b"pong", {"Content-Type": "text/plain"})
            resp.send(404, b'{"errorMessage":"Not Found","errorType":"NotFound"}', _JSON)
        except RuntimeApiError as err:
            if not resp.started:
                _error(resp, err)

    async def _next(self, resp: Response) -> None:
        self._send_event(resp, await self.session.next())

    @staticmethod
    def _send_event(resp: Response, inv) -> None:
        if not (inv.client_context or inv.cognito_identity or inv.tenant_id):
            # Every value generated by the platform (ids, deadline) or checked by it (the ARN's name).
            resp.send_platform(200, inv.payload, (
                f"Content-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {inv.request_id}\r\n"
                f"Lambda-Runtime-Deadline-Ms: {inv.deadline_ms}\r\n"
                f"Lambda-Runtime-Invoked-Function-Arn: {inv.invoked_arn}\r\n"
                f"Lambda-Runtime-Trace-Id: {inv.trace_id}\r\n"))
            return
        headers = [
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", inv.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", inv.invoked_arn),
            ("Lambda-Runtime-Trace-Id", inv.trace_id),
        ]
        if inv.client_context:
            headers.append(("Lambda-Runtime-Client-Context", inv.client_context))
        if inv.cognito_identity:
            headers.append(("Lambda-Runtime-Cognito-Identity", inv.cognito_identity))
        if inv.tenant_id:
            headers.append(("Lambda-Runtime-Aws-Tenant-Id", inv.tenant_id))
        resp.send(200, inv.payload, headers)

    async def _response(self, req: Request, resp: Response, request_id: str) -> None:
        inv = self.session.check_response(request_id, "InvocationResponse")
        mode = req.headers.get("lambda-runtime-function-response-mode")
        content_type = req.headers.get("content-type", "application/json")
        if mode is not None:
            if mode.lower() != "streaming":
                self.session.respond(inv, Outcome(
                    payload=error_document("Runtime.InvalidResponseModeHeader", "Invalid function response mode"),
                    function_error="Unhandled", error_type="Runtime.InvalidResponseModeHeader"))
                raise RuntimeApiError(400, "InvalidFunctionResponseMode", "Invalid function response mode")
            return await self._stream_response(req, resp, inv, content_type)
        try:
            body = await req.read(MAX_PAYLOAD)
        except BodyTooLarge:
            self.session.respond(inv, too_large_error())
            raise RuntimeApiError(
                413, "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."
            ) from None
        except ConnectionError:
            return
        self._buffered_response(resp, inv, body, content_type)

    async def _stream_response(self, req: Request, resp: Response, inv, content_type: str) -> None:
        stream = ResponseStream(content_type)
        self.session.respond(inv, Outcome(stream=stream, content_type=content_type))
        try:
            async for chunk in req.stream():
                await stream.put(chunk)
        except ConnectionError:
            stream.close("Runtime.TruncatedResponse", None)
            return
        error_type = req.trailers.get("lambda-runtime-function-error-type")
        error_body = None
        if error_type is not None:
            raw = req.trailers.get("lambda-runtime-function-error-body", "")
            try:
                error_body = base64.b64decode(raw, validate=True) if raw else None
            except (binascii.Error, ValueError):
                error_body = None
        stream.close(error_type, error_body)
        resp.send_prebuilt(_ACCEPTED)

    async def _invocation_error(self, req: Request, resp: Response, request_id: str) -> None:
        inv = self.session.check_response(request_id, "InvocationErrorResponse")
        header = req.headers.get("lambda-runtime-function-error-type")
        try:
            body = await req.read(MAX_PAYLOAD)
        except BodyTooLarge:
            body = b""
        except ConnectionError:
            return
        error_type = platform_error_type(header)
        if not body.strip():
            body = error_document(header or error_type, header or error_type)
        self.session.respond(inv, Outcome(
            payload=body, content_type="application/json", function_error="Unhandled", error_type=error_type,
        ))
        resp.send_prebuilt(_ACCEPTED)

    async def _init_error(self, req: Request, resp: Response) -> None:
        header = req.headers.get("lambda-runtime-function-error-type")
        try:
            body = await req.read(MAX_PAYLOAD)
        except (BodyTooLarge, ConnectionError):
            body = b""
        if not body.strip():
            error_type = platform_error_type(header)
            body = error_document(error_type, "Unknown application error occurred")
        self.session.init_failed(header, body)
        resp.send_prebuilt(_ACCEPTED)
