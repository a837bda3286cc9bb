"""The vocabulary shared along the invoke path: an Invocation, its Outcome and a streamed response."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from lambdalet.limits import LOG_TAIL_BYTES

_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def new_request_id() -> str:
    """A random (version 4) UUID, as Lambda's request ids are: one getrandom call, ~1 µs less than uuid4()."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda passes it even when active tracing is off."""
    h = os.urandom(20).hex()
    return f"Root=1-{int(time.time()):08x}-{h[:24]};Parent={h[24:]};Sampled=0"


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


@dataclass
class Invocation:
    """One request to a function, from the front door to an environment and back."""

    payload: bytes
    invoked_arn: str
    request_id: str = field(default_factory=new_request_id)
    trace_id: str = field(default_factory=new_trace_id)
    client_context: str | None = None  # decoded JSON text
    cognito_identity: str | None = None
    tenant_id: str | None = None
    executed_version: str = "$LATEST"  # the version that runs it (X-Amz-Executed-Version)
    deadline_ms: int = 0
    outcome: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    log_tail: LogTail | None = None  # collected for LogType=Tail when not None
    on_outcome: Callable[[Outcome], None] | None = None  # called synchronously when the outcome is known
    on_failure: Callable[[BaseException], None] | None = None  # called if the platform could not run it

    def resolve(self, outcome: Outcome) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)
            if self.on_outcome is not None:
                self.on_outcome(outcome)

    def fail(self, error: BaseException) -> None:
        """The platform could not run the invocation: whoever awaits its outcome gets the error."""
        if not self.outcome.done():
            self.outcome.set_exception(error)
            self.outcome.exception()  # retrieved: an unawaited failure must not warn
            if self.on_failure is not None:
                self.on_failure(error)
        self.finish()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def error_document(error_type: str, message: str) -> bytes:
    """A platform error payload in the shape Lambda returns to callers."""
    return json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":")).encode()

