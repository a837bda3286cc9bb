"""The vocabulary shared along the invoke path: an Invocation, its Outcome and a streamed response."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from lambdalet.limits import LOG_TAIL_BYTES

_POOL = 128  # ids made per refill


def _repeat(block: bytes) -> int:
    return int.from_bytes(block * _POOL, "big")


# A version 4 UUID is 16 random bytes but 6 bits: the high nibble of byte 6 is 4, the top bits of byte 8
# are 10. Set for a whole pool at once on one big integer, turned into hex in one call, and cut into ids
# by slicing: the ids of 128 invokes cost about what two ids cost made one by one (and one getrandom
# call). (Slices, not "%08x-%04x..." % fields: formatting six integers cost ~5k instructions an id.)
_UUID_KEEP = _repeat(bytes.fromhex("ffffffffffff0fff3fffffffffffffff"))
_UUID_SET = _repeat(bytes.fromhex("00000000000040008000000000000000"))


class _RandomIds:
    """Request ids and trace ids from the kernel's CSPRNG, made _POOL at a time."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []
        self.trace_tails: list[str] = []  # "<24 hex>;Parent=<16 hex>;Sampled=0"
        os.register_at_fork(after_in_child=self._forget)  # a forked child must never reuse the parent's

    def _forget(self) -> None:
        self.request_ids.clear()
        self.trace_tails.clear()

    def refill_request_ids(self) -> None:
        raw = int.from_bytes(os.urandom(16 * _POOL), "big") & _UUID_KEEP | _UUID_SET
        h = raw.to_bytes(16 * _POOL, "big").hex()
        self.request_ids.extend([f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-"
                                 f"{h[i + 20:i + 32]}" for i in range(0, 32 * _POOL, 32)])

    def refill_trace_tails(self) -> None:
        h = os.urandom(20 * _POOL).hex()
        self.trace_tails.extend([f"{h[i:i + 24]};Parent={h[i + 24:i + 40]};Sampled=0"
                                 for i in range(0, 40 * _POOL, 40)])


_random = _RandomIds()
_request_ids = _random.request_ids
_trace_tails = _random.trace_tails


def new_request_id() -> str:
    """A random (version 4) UUID, as Lambda's request ids are."""
    if not _request_ids:
        _random.refill_request_ids()
    return _request_ids.pop()


_epoch_hex = [0, "00000000"]  # the second the last trace id was made in, and its 8 hex digits


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda passes it even when active tracing is off."""
    if not _trace_tails:
        _random.refill_trace_tails()
    now = int(time.time())
    if now != _epoch_hex[0]:  # (formatting it costs ~2k instructions: once a second)
        _epoch_hex[0], _epoch_hex[1] = now, f"{now:08x}"
    return f"Root=1-{_epoch_hex[1]}-{_trace_tails.pop()}"


class ResponseStream:
    """Chunks of a streamed response, flowing from the runtime's POST to the caller as they arrive."""

    def __init__(self, content_type: str, maxsize: int = 64) -> None:
        self.content_type = content_type
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize)
        self.error_type: str | None = None
        self.error_body: bytes | None = None  # decoded Lambda-Runtime-Function-Error-Body trailer
        self.size = 0
        self.closed = False

    async def put(self, chunk: bytes) -> None:
        self.size += len(chunk)
        await self._queue.put(chunk)

    def close(self, error_type: str | None = None, error_body: bytes | None = None) -> None:
        """End the stream, optionally with the error the runtime reported in its trailers."""
        if self.closed:
            return
        self.closed = True
        self.error_type = error_type
        self.error_body = error_body
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            asyncio.get_running_loop().create_task(self._queue.put(None))

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            yield chunk


class LogTail:
    """The end of an invocation's log for LogType=Tail: only the last LOG_TAIL_BYTES are ever kept."""

    __slots__ = ("_text",)

    def __init__(self) -> None:
        self._text = ""

    def append(self, message: str) -> None:
        # A character is at least one byte: LOG_TAIL_BYTES characters always cover the byte tail.
        text = self._text + (message if message.endswith("\n") else message + "\n")
        self._text = text[-LOG_TAIL_BYTES:]

    def base64(self) -> str:
        """X-Amz-Log-Result: base64 of the last 4 KB of the log."""
        return base64.b64encode(self._text.encode()[-LOG_TAIL_BYTES:]).decode()


@dataclass
class Outcome:
    """What the caller gets: a payload, or a function error document, or a stream."""

    payload: bytes = b""
    content_type: str = "application/json"
    function_error: str | None = None  # "Unhandled" when the payload is an error document
    error_type: str | None = None  # the platform error type (Runtime.ExitError, Sandbox.Timedout, ...)
    stream: ResponseStream | None = None


class Invocation:
    """One request to a function, from the front door to an environment and back.

    `outcome` and `done` are futures for whoever awaits them, made only when asked for: the warm path
    answers through on_outcome and never awaits either (two futures less per invoke)."""

    # What every invocation starts with, set on the instance only when it differs (~25 bytecodes less
    # per invoke than assigning all of it in __init__).
    client_context: str | None = None  # decoded JSON text
    cognito_identity: str | None = None
    tenant_id: str | None = None
    executed_version = "$LATEST"  # the version that runs it (X-Amz-Executed-Version)
    deadline_ms = 0
    log_tail: LogTail | None = None  # collected for LogType=Tail when not None
    on_outcome: Callable[[Outcome], None] | None = None  # called synchronously when the outcome is known
    on_failure: Callable[[BaseException], None] | None = None  # called if the platform could not run it
    _result: Outcome | None = None
    _error: BaseException | None = None
    _finished = False
    _outcome: asyncio.Future[Outcome] | None = None
    _done: asyncio.Future[None] | None = None

    def __init__(self, payload: bytes, invoked_arn: str, request_id: str | None = None,
                 trace_id: str | None = None, client_context: str | None = None,
                 cognito_identity: str | None = None, tenant_id: str | None = None,
                 executed_version: str = "$LATEST") -> None:
        self.payload = payload
        self.invoked_arn = invoked_arn
        self.request_id = request_id or new_request_id()
        self.trace_id = trace_id or new_trace_id()
        if client_context is not None:
            self.client_context = client_context
        if cognito_identity is not None:
            self.cognito_identity = cognito_identity
        if tenant_id is not None:
            self.tenant_id = tenant_id
        if executed_version != "$LATEST":
            self.executed_version = executed_version

    @property
    def resolved(self) -> bool:
        """The outcome is known (or the platform failed it)."""
        return self._result is not None or self._error is not None

    @property
    def result(self) -> Outcome | None:
        """The outcome, once known."""
        return self._result

    @property
    def outcome(self) -> asyncio.Future[Outcome]:
        """A future of the outcome (raising the platform's error if it could not run the invocation)."""
        fut = self._outcome
        if fut is None:
            fut = self._outcome = asyncio.get_running_loop().create_future()
            if self._result is not None:
                fut.set_result(self._result)
            elif self._error is not None:
                fut.set_exception(self._error)
                fut.exception()  # retrieved: an unawaited failure must not warn
        return fut

    @property
    def done(self) -> asyncio.Future[None]:
        """A future set when the invocation is over (its environment is free again)."""
        fut = self._done
        if fut is None:
            fut = self._done = asyncio.get_running_loop().create_future()
            if self._finished:
                fut.set_result(None)
        return fut

    def resolve(self, outcome: Outcome) -> None:
        if self._result is not None or self._error is not None:
            return
        self._result = outcome
        if self._outcome is not None:
            self._outcome.set_result(outcome)
        # (dropped once used: they usually hold this invocation, a reference cycle left to the GC)
        on_outcome, self.on_outcome, self.on_failure = self.on_outcome, None, None
        if on_outcome is not None:
            on_outcome(outcome)

    def fail(self, error: BaseException) -> None:
        """The platform could not run the invocation: whoever awaits its outcome gets the error."""
        if self._result is None and self._error is None:
            self._error = error
            if self._outcome is not None:
                self._outcome.set_exception(error)
                self._outcome.exception()  # retrieved: an unawaited failure must not warn
            on_failure, self.on_outcome, self.on_failure = self.on_failure, None, None
            if on_failure is not None:
                on_failure(error)
        self.finish()

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            if self._done is not None:
                self._done.set_result(None)


def error_document(error_type: str, message: str) -> bytes:
    """A platform error payload in the shape Lambda returns to callers."""
    return json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":")).encode()

