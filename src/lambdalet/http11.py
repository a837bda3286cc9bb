"""A small, fast HTTP/1.1 server on asyncio + httptools, shared by the front door and the Runtime API.

It supports what both sides of Lambda need: keep-alive and pipelining, Content-Length and chunked
request bodies (with trailers, read whole or as a stream), and fixed-length or chunked (streamed)
responses. Every accepted socket gets TCP_NODELAY: without it Nagle + delayed ACK add ~40 ms per
exchange.

It also holds its own against hostile clients, within ServerLimits: the request line and headers are
capped (431), a body is buffered only up to what its reader asked for (reading pauses past
_PAUSE_AT, and resumes whenever the reader wants more or the request is done), idle keep-alive
connections and stalled uploads are closed, and the number of open connections is capped (503).
Answers to protocol errors come from the owner's error_answer, so each door speaks its own dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import unquote

import httptools

from lambdalet.limits import MAX_TRAILER_FIELDS

log = logging.getLogger("lambdalet.http")

REASONS = {s.value: s.phrase for s in http.HTTPStatus}
REASONS[418] = "I'm a teapot"
_STATUS_LINES = {status: f"HTTP/1.1 {status} {reason}\r\n" for status, reason in REASONS.items()}


def _status_line(status: int) -> str:
    """The status line, with the standard reason phrase (none for a code without one)."""
    return _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n"

_PAUSE_AT = 1 << 20  # buffered body bytes before the transport stops reading
# What one loop callback parses: 64 KB of a Content-Length body (one callback), or 4 KB of
# anything else. A 256 KB read of 1-byte chunks, or of pipelined requests, parsed at once stalled
# every other connection for ~29 ms (chunks) to ~150 ms (requests); 4 KB of them take well under 1 ms.
_FEED_BUDGET = 64 * 1024
_FEED_SLICE = 4 * 1024
_SMALL_PIECE = 4096  # body pieces below this are gathered into one bytearray, not kept one by one
_MEMO_ENTRIES = 4  # remembered request heads per connection
_MEMO_HEAD_BYTES = 4096  # the longest head remembered
_MEMO_BUDGET = 8  # heads remembered in a row without one repeating before a connection stops remembering
_PIPELINE_DEPTH = 8  # requests waiting behind the one in service before reading pauses
_DRAIN_LIMIT = 80 << 20  # an unread body up to this size is discarded to keep the connection
_LINGER_S = 2.0  # after answering early, how long an unread body is still taken in before closing


@dataclass(frozen=True)
class ServerLimits:
    """What one HttpServer accepts from its clients."""

    max_head_bytes: int = 64 * 1024  # request line plus headers
    keep_alive_s: float = 60.0  # idle connection (no request in flight), or a stalled request body
    max_connections: int = 1024


# (status, message) -> (body, headers) for answers the server gives itself: 400, 431, 503.
ErrorAnswer = Callable[[int, str], tuple[bytes, list[tuple[str, str]]]]


def plain_error(status: int, message: str) -> tuple[bytes, list[tuple[str, str]]]:
    return message.encode(), [("Content-Type", "text/plain")]


class BodyTooLarge(Exception):
    """The request body exceeded the limit given to Request.read()."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size  # the declared Content-Length, or the bytes seen so far


class InvalidHeader(ValueError):
    """A response header that cannot go on the wire (CR, LF or NUL in it, or a bad name)."""


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what a field value may not hold (RFC 9110 §5.5)
# Header lines as _head lays them out: a token, ": ", a value without CR, LF or other controls.
_FIELDS = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
# A request target that is a plain path: llhttp takes it as is, and Request has nothing to unquote in it.
_PLAIN_TARGET = re.compile(rb"/[A-Za-z0-9\-._~/]*")
_PLAIN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/"  # (the same, for translate)
_CONTENT_LENGTH_LINE = b"\r\ncontent-length: "


def valid_field(name: str, value: str) -> bool:
    """True if name: value can be sent as one header line."""
    return _TOKEN.fullmatch(name) is not None and _CTL.search(value) is None


class Request:
    """One HTTP request. Headers are a dict of lower-cased names (read-only: requests that repeat a
    head share it); the body is read on demand."""

    # What every request starts with, set on the instance only when it changes: ~30 fewer bytecodes
    # per request than assigning all of it in __init__ (three requests per warm invoke).
    trailers: Mapping[str, str] = MappingProxyType({})
    _chunks: list[bytes] | None = None
    _size = 0
    _complete = False
    _discard = False
    _error: Exception | None = None
    _waiter: asyncio.Future[None] | None = None
    http10 = False
    _continue = False  # Expect: 100-continue, not answered yet

    def __init__(self, proto: HttpProtocol, method: str, target: bytes, headers: dict[str, str],
                 keep_alive: bool) -> None:
        self._proto = proto
        self.method = method
        self.headers = headers
        self.keep_alive = keep_alive  # the client lets the connection carry more requests after this one
        # (`b"?" in target` first tries b"?" as an int and formats the TypeError: ~2k instructions each)
        text = target.decode("latin-1")
        if text[:1] == "/" and "?" not in text and "%" not in text and "#" not in text:
            self.raw_path = self.path = text  # (the usual case: nothing to parse)
            self.query = ""
        else:
            url = httptools.parse_url(target)
            self.raw_path = (url.path or b"/").decode("latin-1")
            self.path = unquote(self.raw_path)
            self.query = (url.query or b"").decode("latin-1")

    @property
    def client_host(self) -> str:
        peer = self._proto.transport.get_extra_info("peername") if self._proto.transport else None
        return peer[0] if peer else ""

    @property
    def complete(self) -> bool:
        """The whole body has arrived."""
        return self._complete

    def _feed(self, data: bytes) -> None:
        if self._discard:
            return
        chunks = self._chunks
        if chunks is None:
            self._chunks = chunks = []
        if len(data) >= _SMALL_PIECE or not chunks:
            chunks.append(data)
        elif type(chunks[-1]) is bytearray:
            chunks[-1] += data  # type: ignore[operator]
        else:
            chunks.append(bytearray(data))
        self._size += len(data)
        if self._size >= _PAUSE_AT:
            self._proto.pause()
        if self._waiter is not None:
            self._wake()

    def _finish(self, error: Exception | None = None) -> None:
        self._complete = True
        if error is not None:
            self._error = error
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        if self._continue:  # the reader wants the body the client holds back until told
            self._continue = False
            self._proto.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._waiter = asyncio.get_running_loop().create_future()
        self._proto.resume()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self) -> bytes:
        chunks = self._chunks
        if chunks is None:
            return b""
        body = chunks[0] if len(chunks) == 1 and type(chunks[0]) is bytes else b"".join(chunks)
        self._chunks = None
        self._size = 0
        return body

    def _declared_size(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    def body_now(self) -> bytes:
        """The whole body of a request that has arrived completely (see FastHandler)."""
        if not self._complete or self._error is not None:
            raise RuntimeError("request body is not complete")
        chunks = self._chunks
        if chunks is not None and len(chunks) == 1 and type(chunks[0]) is bytes:  # (the usual case)
            self._chunks = None
            self._size = 0
            return chunks[0]
        return self._take()

    def peek_now(self) -> bytes:
        """The whole body of a request that has arrived completely, left in place for body_now() or read()."""
        if not self._complete or self._error is not None:
            raise RuntimeError("request body is not complete")
        chunks = self._chunks
        if chunks is None:
            return b""
        if len(chunks) == 1 and type(chunks[0]) is bytes:
            return chunks[0]
        body = b"".join(chunks)
        self._chunks = [body] if body else None
        return body

    async def peek(self, limit: int) -> bytes | None:
        """The whole body once it has arrived, left in place for the handler; None past limit bytes."""
        declared = self._declared_size()
        if declared is not None and declared > limit:
            return None
        while not self._complete:
            if self._size > limit:
                return None
            await self._wait()
        if self._error is not None:
            raise ConnectionError(str(self._error))
        return None if self._size > limit else self.peek_now()

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body. Raises BodyTooLarge as soon as it is known to exceed limit bytes."""
        if limit is not None:
            declared = self._declared_size()
            if declared is not None and declared > limit:
                raise self._too_large(declared)
        while not self._complete:
            if limit is not None and self._size > limit:
                raise self._too_large(self._size)
            await self._wait()
        if self._error is not None:
            raise ConnectionError(str(self._error))
        if limit is not None and self._size > limit:
            raise self._too_large(self._size)
        return self._take()

    def _too_large(self, size: int) -> BodyTooLarge:
        declared = self._declared_size()
        if not self._complete and (declared is None or declared - self._size > _DRAIN_LIMIT):
            self._proto.keep_alive = False  # the answer says Connection: close; the rest is not awaited
        return BodyTooLarge(size)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk; trailers are set when it ends."""
        while True:
            if self._chunks:
                chunks, self._chunks = self._chunks, None
                self._size = 0
                for c in chunks:
                    yield c if type(c) is bytes else bytes(c)
                continue
            if self._complete:
                if self._error is not None:
                    raise ConnectionError(str(self._error))
                return
            await self._wait()

    async def discard(self, timeout: float) -> bool:
        """Drop the rest of the body as it arrives (buffering none); True once it has all arrived."""
        self._discard = True
        self._continue = False
        self._chunks = None
        self._size = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self._complete:
                    await self._wait()
        return self._complete and self._error is None


class Prebuilt:
    """A constant response, turned into bytes once (both with and without Connection: close)."""

    __slots__ = ("body", "close", "headers", "keep", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        if not all(valid_field(k, v) for k, v in headers):
            raise InvalidHeader(f"a header of a prebuilt {status} response holds CR, LF or NUL")
        self.status, self.body, self.headers = status, body, headers
        head = _status_line(status) + "".join(f"{k}: {v}\r\n" for k, v in headers)
        head += f"Content-Length: {len(body)}\r\n"
        self.keep = (head + "\r\n").encode("latin-1") + body
        self.close = (head + "Connection: close\r\n\r\n").encode("latin-1") + body


class Response:
    """Writes one response: send() for a whole body, or start()/write()/end() to stream it chunked."""

    # (defaults on the class, as Request's)
    started = False
    finished = False
    chunked = False
    _bodyless = False  # a streamed answer to HEAD, or a 1xx/204/304: nothing after the head
    _raw = False  # a streamed answer to HTTP/1.0: no chunked encoding, the close ends it
    _on_finish: Callable[[], None] | None = None  # set while the answer is deferred
    on_lost: Callable[[Response], None] | None = None  # a deferred answer's client went away: on_lost(resp)

    def __init__(self, proto: HttpProtocol, request: Request) -> None:
        self._proto = proto
        self._request = request

    def _head(self, status: int, headers: list[tuple[str, str]] | dict[str, str], extra: str) -> bytes:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        fields = "".join([f"{k}: {v}\r\n" for k, v in pairs])
        # Every name a token, as many line ends as headers, every line well formed: a CR or LF in a name
        # or value would let it forge header lines (response splitting); other controls make strict
        # clients refuse the answer. (~1 µs for the five headers of an invoke's answer.)
        if fields.count("\n") != len(pairs) or _FIELDS.fullmatch(fields) is None \
                or not all(map(_TOKEN.fullmatch, [k for k, _ in pairs])):
            raise InvalidHeader(f"a header of a {status} response has a bad name or a control character")
        head = _status_line(status) + fields
        self._request._continue = False  # a final answer: the client need not send its body
        if not (self._proto.keep_alive and self._request.keep_alive):
            extra += "Connection: close\r\n"
        head += extra
        head += "\r\n"
        try:
            return head.encode("latin-1")
        except UnicodeEncodeError:
            return head.encode("utf-8")  # e.g. "€": sent as UTF-8 octets, as other servers do

    def send(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | dict[str, str] = ()) -> None:
        """Send a complete response with Content-Length (raises InvalidHeader before sending anything)."""
        if self.started:
            raise RuntimeError("response already started")
        no_body = status in (204, 304) or self._request.method == "HEAD"
        extra = "" if status == 204 or status < 200 else f"Content-Length: {len(body)}\r\n"
        head = self._head(status, headers, extra)
        self.started = self.finished = True
        self._proto.write(head if no_body else head + body)
        if self._on_finish is not None:
            self._on_finish()

    def send_platform(self, status: int, body: bytes, fields: str) -> None:
        """Send a complete response whose header lines (each "Name: value\r\n") the platform built
        from values it generated or checked itself: not scanned again (~5 µs less than send(), on the
        hot path's event and invoke answers). Anything a client or function chose goes through send()."""
        if self.started:
            raise RuntimeError("response already started")
        req = self._request
        if (status != 200 and (status < 200 or status in (204, 304))) or req.method == "HEAD":
            self.send(status, body, [tuple(line.split(": ", 1)) for line in fields.split("\r\n") if line])
            return
        self.started = self.finished = True
        if req._continue:
            req._continue = False
        close = "" if self._proto.keep_alive and req.keep_alive else "Connection: close\r\n"
        line = _STATUS_LINES.get(status) or _status_line(status)
        head = f"{line}{fields}Content-Length: {len(body)}\r\n{close}\r\n"
        self._proto.write(head.encode("latin-1") + body)
        if self._on_finish is not None:
            self._on_finish()

    def send_prebuilt(self, answer: Prebuilt) -> None:
        """Send a constant response built once (the hot path's fixed answers)."""
        req = self._request
        if req.method == "HEAD":
            self.send(answer.status, answer.body, answer.headers)
            return
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.finished = True
        if req._continue:
            req._continue = False
        self._proto.write(answer.keep if self._proto.keep_alive and req.keep_alive else answer.close)
        if self._on_finish is not None:
            self._on_finish()

    def start(self, status: int, headers: list[tuple[str, str]] | dict[str, str] = ()) -> None:
        """Start a chunked response; follow with write() and end()."""
        if self.started:
            raise RuntimeError("response already started")
        bodyless = status < 200 or status in (204, 304)
        if self._request.http10 and not bodyless:  # no chunked encoding for HTTP/1.0 (RFC 9112 §6.1)
            self._request.keep_alive = False
            head = self._head(status, headers, "")
            self._raw = True
        else:
            head = self._head(status, headers, "" if bodyless else "Transfer-Encoding: chunked\r\n")
            self.chunked = not bodyless
        self._bodyless = bodyless or self._request.method == "HEAD"
        self.started = True
        self._proto.write(head)

    def write(self, data: bytes) -> None:
        if data and not self._bodyless:
            self._proto.write(data if self._raw else b"%x\r\n%b\r\n" % (len(data), data))

    async def drain(self) -> None:
        """Wait until the client has taken what was written (flow control for long streams)."""
        await self._proto.drain()

    def end(self, trailers: dict[str, str] | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        if self._bodyless or self._raw:
            return
        items = [(k, v) for k, v in (trailers or {}).items() if valid_field(k, v)]
        tail = "".join(f"{k}: {v}\r\n" for k, v in items)
        self._proto.write(b"0\r\n" + tail.encode("utf-8") + b"\r\n")
        if self._on_finish is not None:
            self._on_finish()


def _decode_fields(fields: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header (or trailer) fields as a dict of lower-cased names, decoded in a few C calls whatever their
    number (a dict comprehension costs ~20 bytecodes a field); repeated names are joined with ", "."""
    if not fields:
        return {}
    names, values = zip(*fields, strict=True)
    raw = b"\n".join(values).decode("latin-1")
    if " \n" in raw or "\t\n" in raw or raw[-1:] in (" ", "\t"):  # llhttp drops the OWS before a value, not after
        vals = [v.rstrip(" \t") for v in raw.split("\n")]
    else:
        vals = raw.split("\n")
    headers = dict(zip(b"\n".join(names).decode("latin-1").lower().split("\n"), vals, strict=False))
    if len(headers) == len(fields) and len(vals) == len(fields):
        return headers
    # repeated names (joined in one pass: 200,000 repeats stay linear), or a line end inside a value
    grouped: dict[str, list[str]] = {}
    for n, v in fields:
        grouped.setdefault(n.decode("latin-1").lower(), []).append(v.decode("latin-1").rstrip(" \t"))
    return {k: ", ".join(vs) for k, vs in grouped.items()}


class _Deferred:
    """What a fast handler returns when it will answer later, from a callback (no task waits)."""

    __slots__ = ()


DEFER = _Deferred()
Handler = Callable[[Request, Response], Awaitable[None]]
# Called for a request that arrived whole: answers it synchronously and returns None; or returns
# DEFER and answers later with send() (resp.on_lost(resp) is called instead if the client goes first);
# or returns what is left to await (usually handler(req, resp)).
FastHandler = Callable[[Request, Response], Awaitable[None] | _Deferred | None]


class _LostParser:
    """What a closed connection parses with: nothing more is parsed."""

    def feed_data(self, data: bytes | memoryview) -> None:
        pass


_LOST = _LostParser()


class HttpProtocol(asyncio.Protocol):
    """One connection: parses requests with httptools and runs the handler for each, in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.handler = server.handler
        self.fast = server.fast
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.keep_alive = True
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []  # the header (or trailer) lines of the request being parsed
        self._mid = False  # the parser is inside a request (its first byte has come, its end not yet)
        # remembered heads (see _learn): head bytes -> (body size, method, path, raw path, query, headers)
        self._memo: dict[bytes, tuple] | None = {}
        self._memo_budget = _MEMO_BUDGET
        # a remembered head whose target and Content-Length vary (see _learn_shape):
        # (b"<method> /", the bytes from the target's end to the length's digits, method, headers)
        self._shape: tuple[bytes, bytes, str, dict[str, str]] | None = None
        self._shape_source: bytes | None = None  # the head it was learned from, until another matches it
        self._current: Request | None = None
        self._last: Request | None = None  # the newest request whose headers arrived
        self._in_head = True  # between requests or inside a request line / headers
        self._head_bytes = 0
        self._heads = 0  # heads parsed so far
        self._final = False  # a request that ends the connection (Connection: close, HTTP/1.0) has arrived
        self._rejection: tuple[int, str] | None = None  # an error answer waiting for the answers before it
        self._queue: deque[Request] = deque()
        self._deferred: tuple[Request, Response] | None = None  # answered later by a callback
        self._cork: list[bytes] | None = None  # writes held back to go out together (see _parse)
        self._task: asyncio.Task[None] | None = None
        self._paused = False  # flow control: the reader has enough buffered
        self._reading = True  # the transport is reading
        self._backlog: deque[memoryview] | None = None  # read but not yet parsed (see _FEED_BUDGET)
        self._backlog_scheduled = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.in_flight = 0  # requests whose headers arrived and whose response is not done
        self.idle_since = self.last_data = server.clock()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._final:
            return  # nothing after a request that ends the connection is a request
        if self._current is not None:
            self.last_data = self.server.clock()
        if self._backlog is not None:
            self._backlog.append(memoryview(data))
        elif len(data) <= _FEED_SLICE:
            self._parse(data)
        else:
            self._backlog = deque([memoryview(data)])
            self._update_reading()
            self._parse_backlog()

    def _parse_backlog(self) -> None:
        """Parse what one callback may of the backlog, then let other connections go first."""
        self._backlog_scheduled = False
        backlog = self._backlog
        budget = _FEED_BUDGET
        while backlog and budget > 0:
            if self._backlog is not backlog or self.closed or len(self._queue) > _PIPELINE_DEPTH:
                return  # closed, or resumed by _close_out once the queue is served
            current = self._current
            plain = current is not None and "transfer-encoding" not in current.headers
            size = budget if plain else _FEED_SLICE
            view = backlog[0]
            if len(view) > size:
                backlog[0] = view[size:]
                view = view[:size]
            else:
                backlog.popleft()
            self._parse(view, False)
            budget -= len(view) if plain else _FEED_BUDGET // 2
        if backlog:
            self._schedule_backlog()
        elif self._backlog is backlog:
            self._backlog = None
            self._update_reading()

    def _schedule_backlog(self) -> None:
        if not self._backlog_scheduled:
            self._backlog_scheduled = True
            asyncio.get_running_loop().call_soon(self._parse_backlog)

    def _parse(self, data: bytes | memoryview, whole: bool = True) -> None:
        """Parse data and answer what it completes; what is answered here goes out in one write.

        While a deferred answer is pending, what was answered before it is held back and goes out
        with it: a runtime that sends its /response and its next /next together then gets the 202
        and its next event in one segment (one send, one wake-up, instead of two)."""
        if self._cork is None:
            self._cork = []
        if self._mid or self._memo is None or not whole:  # (a backlog's memoryview: not a whole read)
            self._feed_parser(data)
        elif (data := self._replay(data)):  # type: ignore[arg-type]
            heads = self._heads
            self._feed_parser(data)
            if self._heads == heads + 1 and not self._mid and not self._final:
                self._learn(data)  # type: ignore[arg-type]
        if self._task is None and self._queue and not self.closed and not self.transport.is_closing():
            self._start()
        if self._deferred is None:
            self._uncork()

    def _feed_parser(self, data: bytes | memoryview) -> None:
        try:
            while data:
                if not self._in_head:
                    self.parser.feed_data(data)
                    if len(self._fields) > MAX_TRAILER_FIELDS:  # (a chunked body is fed _FEED_SLICE bytes at a time)
                        self.reject(431, f"Request trailer fields too large: more than {MAX_TRAILER_FIELDS} fields")
                    break
                room = self.limits.max_head_bytes - self._head_bytes
                if len(data) <= room:
                    self._head_bytes += len(data)
                    self.parser.feed_data(data)
                    break
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
                heads = self._heads
                self.parser.feed_data(piece)
                if self._in_head and self._heads == heads:  # still no end of headers within the limit
                    self.reject(431, f"Request header fields too large: the request line and headers "
                                     f"exceed {self.limits.max_head_bytes} bytes")
                    break
        except httptools.HttpParserUpgrade:  # (Upgrade or CONNECT) is queued, and is not served
            self._queue.pop()
            self.in_flight -= 1
            self.reject(400, "Bad request")
        except (httptools.HttpParserError, UnicodeError):
            if not self._final:  # (llhttp refuses bytes after a Connection: close request: ignored)
                self.reject(400, "Bad request")

    # -- repeated heads
    # A keep-alive client often sends the same head byte for byte, request after request: a runtime's
    # GET /next, a load generator's or a poller's request. Parsing is a function of the bytes, so a head
    # seen whole in one read is remembered, and the next request that repeats it (at a message boundary)
    # is taken without the parser: ~300 fewer bytecodes per request (of ~700), two requests of the
    # three of a warm invoke. A client whose heads never repeat stops being remembered after a few.
    # A head that repeats but for its target and its Content-Length (a runtime's POST .../<id>/response)
    # is remembered as a shape: ~450 bytecodes less per warm invoke than parsing it.

    def _learn(self, data: bytes) -> None:
        """data held exactly one whole request, just parsed: remember its head if it may be replayed."""
        req = self._last
        assert req is not None
        headers = req.headers
        size = req._size
        if (not req.keep_alive or req.http10 or not req._complete or req._error is not None
                or "transfer-encoding" in headers or "expect" in headers or "upgrade" in headers
                or headers.get("content-length", "0") != str(size) or len(data) - size > _MEMO_HEAD_BYTES
                or data.find(b"\r\n\r\n") + 4 != len(data) - size):  # (its head, exactly: no CRLF before or after)
            return
        self._memo_budget -= 1
        if self._memo_budget < 0:  # its heads do not repeat: stop trying
            self._memo = None
            return
        memo = self._memo
        assert memo is not None
        if len(memo) >= _MEMO_ENTRIES:
            memo.popitem()  # (the newest goes: heads that came early and repeat stay)
        head = data[:len(data) - size]
        memo[head] = (size, req.method, req.path, req.raw_path, req.query, headers)
        if "content-length" in headers:
            self._learn_shape(head, req.method, headers)

    def _learn_shape(self, head: bytes, method: str, headers: dict[str, str]) -> None:
        """Remember head as a shape if its target is a plain path and Content-Length is its last field."""
        start = head.find(b" ") + 1
        end = head.find(b" ", start)
        digits = len(head) - 4 - len(headers["content-length"])
        if _PLAIN_TARGET.fullmatch(head, start, end) is not None \
                and head[digits - len(_CONTENT_LENGTH_LINE):digits].lower() == _CONTENT_LENGTH_LINE:
            self._shape = (head[:start + 1], head[end:digits], method, headers)
            self._shape_source = head

    def _shaped(self, data: bytes) -> tuple[int, tuple] | None:
        """(its head's length, its memo entry) if data starts with a request of the remembered shape."""
        prefix, middle, method, headers = self._shape  # type: ignore[misc]
        if not data.startswith(prefix):
            return None
        # (one-byte finds and startswith: a find of the whole middle costs ~1.4k instructions)
        end = data.find(b" ", len(prefix), _MEMO_HEAD_BYTES)
        if end < 0 or not data.startswith(middle, end):
            return None
        digits = end + len(middle)
        stop = data.find(b"\r", digits, digits + 9)  # (at most 8 digits)
        length = data[digits:stop]
        # (what deleting the plain bytes leaves: ~2.5k instructions less than the regex's fullmatch)
        if stop < 0 or not length.isdigit() or not data.startswith(b"\r\n\r\n", stop) \
                or data[len(prefix):end].translate(None, _PLAIN_BYTES):
            return None
        path = data[len(prefix) - 1:end].decode("latin-1")
        return stop + 4, (int(length), method, path, path, "", {**headers, "content-length": length.decode()})

    def _replay(self, data: bytes) -> bytes:
        """Take the requests at the start of data (and a bodiless one ending it) whose heads repeat a
        remembered one; returns what is left for the parser."""
        memo = self._memo
        assert memo is not None
        while True:
            for head, entry in memo.items():  # noqa: B007 (the one that matched is used below)
                if data.startswith(head):
                    start = len(head)
                    break
            else:
                if self._shape is None or (shaped := self._shaped(data)) is None:
                    break
                start, entry = shaped
                if self._shape_source is not None:  # its target varies: the exact head will not come again
                    memo.pop(self._shape_source, None)
                    self._shape_source = None
            end = start + entry[0]
            if len(data) < end:
                return data  # its body is not all here: parsed as it comes
            self._replayed(entry, data[start:end] if entry[0] else None)
            if len(data) == end:
                return b""
            data = data[end:]
        for head, entry in memo.items():
            if not entry[0] and data.endswith(head) and len(data) > len(head):
                heads = self._heads
                before = data[:-len(head)]
                self._feed_parser(before)
                if self._final or self.closed:
                    return b""
                if self._mid:
                    return data[-len(head):]  # (it was a body's end): parsed as it comes
                if self._heads == heads + 1:
                    self._learn(before)  # (and nothing more of memo is looked at)
                self._replayed(entry, None)
                return b""
        return data

    def _replayed(self, entry: tuple, body: bytes | None) -> None:
        """Queue a request whose head repeats a remembered one, as the parser's callbacks would."""
        self._memo_budget = _MEMO_BUDGET
        req = Request.__new__(Request)
        _, req.method, req.path, req.raw_path, req.query, req.headers = entry
        req._proto = self
        req.keep_alive = req._complete = True
        if body is not None:
            req._chunks = [body]
            req._size = len(body)
        self._last = req
        self.in_flight += 1
        self._queue.append(req)
        if self.in_flight > _PIPELINE_DEPTH:  # (in flight >= queued)
            self.pause()

    def eof_received(self) -> bool | None:
        """The client half-closed (it sends no more): the requests it sent whole are still answered,
        the last one with Connection: close; a request cut short cannot be, and the connection closes."""
        self._final = True
        if self._current is not None or not self.in_flight or self._last is None:
            return None  # (asyncio closes the transport)
        self._last.keep_alive = False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cork = None
        self.parser = _LOST  # (the parser holds this protocol: a cycle per connection left to the GC)
        self._last = None  # (and so does a request)
        if self._current is not None and not self._current._complete:
            self._current._finish(ConnectionError("client disconnected"))
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._queue.clear()
        if self._task is not None and not self._task.done():
            # a handler awaiting the body first sees its ConnectionError (and may clean up), and is
            # cancelled at its next await
            asyncio.get_running_loop().call_soon(self._task.cancel)
        if self._deferred is not None:
            resp = self._deferred[1]
            self._deferred = None
            resp._on_finish = None
            if resp.on_lost is not None:
                resp.on_lost(resp)
        self.server.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()

    # -- httptools callbacks (what a request's head collects is reset when it is taken)
    def on_message_begin(self) -> None:
        self._mid = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        fields, self._fields = self._fields, []
        headers = _decode_fields(fields)
        parser = self.parser
        url, self._url = self._url, b""
        req = Request(self, parser.get_method().decode("latin-1"), url, headers, parser.should_keep_alive())
        if parser.get_http_version() == "1.0":
            req.http10 = True
        elif "expect" in headers and headers["expect"].lower() == "100-continue":
            req._continue = True
        self._heads += 1
        self._current = self._last = req
        self.in_flight += 1
        self._queue.append(req)
        self.last_data = self.server.clock()

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current._feed(body)

    def on_message_complete(self) -> None:
        self._mid = False
        self._in_head = True
        self._head_bytes = 0
        if self._fields:  # a chunked body's trailers
            fields, self._fields = self._fields, []
            if self._current is not None:
                self._current.trailers = _decode_fields(fields)
        if self._current is not None:
            if not self._current.keep_alive:
                self._final = True
                self._backlog = None
            self._current._finish()
            self._current = None
        if len(self._queue) > _PIPELINE_DEPTH:
            self.pause()  # a client pipelining faster than it is served waits in its socket buffer

    # -- internals
    def reject(self, status: int, message: str) -> None:
        """Answer a protocol error with the owner's error answer, then close the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        self._backlog = None
        self._final = True  # nothing more is read
        if self._current is None and self.in_flight:  # complete requests before it are answered first
            self._rejection = (status, message)
            return
        self._uncork()
        self.transport.write(self.server.closing_answer(status, message))
        self.keep_alive = False
        self.transport.close()

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._update_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self.last_data = self.server.clock()  # a stalled body is timed from when reading resumes
            self._update_reading()

    def _update_reading(self) -> None:
        """Read while the reader wants more and nothing read is still waiting to be parsed."""
        want = not self._paused and self._backlog is None
        if want is self._reading or self.transport is None or self.transport.is_closing():
            return
        self._reading = want
        if want:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def write(self, data: bytes) -> None:
        if self._cork is not None:
            self._cork.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _uncork(self) -> None:
        cork, self._cork = self._cork, None
        if cork and self.transport is not None and not self.transport.is_closing():
            self.transport.write(cork[0] if len(cork) == 1 else b"".join(cork))

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            fut = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(fut)
            await fut

    def close(self) -> None:
        self._uncork()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _start(self) -> None:
        """Serve the queue. A request that arrived whole goes to the fast handler right here, in
        data_received, saving a loop iteration on the hot path; what it returns (if anything) is
        awaited in the connection's task."""
        if self._task is not None or self._deferred is not None or not self._queue:
            return
        first: tuple[Request, Response, Awaitable[None]] | None = None
        queue = self._queue
        fast = self.fast
        while fast is not None and queue and queue[0]._complete:  # (pipelined: in order)
            req = queue.popleft()
            resp = Response(self, req)
            try:
                rest = fast(req, resp)
            except Exception:
                rest = self._fast_failed(req, resp)
            if rest is DEFER:
                if not resp.finished:
                    self._deferred = (req, resp)
                    resp._on_finish = self._deferred_done
                    return
            elif rest is not None:
                first = (req, resp, rest)  # type: ignore[assignment]
                break
            if not self._close_out(req, resp):
                return
        if first is not None or queue:
            self._task = asyncio.get_running_loop().create_task(self._serve(first))

    def _run_fast(self, req: Request, resp: Response) -> Awaitable[None] | _Deferred | None:
        try:
            rest = self.fast(req, resp)  # type: ignore[misc]
        except Exception:
            return self._fast_failed(req, resp)
        if rest is DEFER:
            if resp.finished:
                return None  # answered after all
            self._deferred = (req, resp)
            resp._on_finish = self._deferred_done
        return rest

    def _fast_failed(self, req: Request, resp: Response) -> None:
        log.exception("unhandled error serving %s %s", req.method, req.path)
        self._fail(resp)

    def _deferred_done(self) -> None:
        if self._deferred is None:
            return
        req, resp = self._deferred
        self._deferred = None
        resp._on_finish = resp.on_lost = None  # (on_lost may hold what holds resp: a cycle left to the GC)
        if self._close_out(req, resp) and self._queue:
            self._start()
        if self._deferred is None:
            self._uncork()

    def _fail(self, resp: Response) -> None:
        if self.closed:  # nobody to answer
            self.keep_alive = False
            return
        if not resp.started:
            body, headers = self.server.error_answer(500, "Internal Server Error")
            resp.send(500, body, headers)
        else:  # cut short: no last chunk, so that the client sees the answer is incomplete; then close
            resp.finished = True
            self.keep_alive = False

    def _close_out(self, req: Request, resp: Response) -> bool:
        """Finish a handled request; False when the connection is done."""
        if not resp.finished:
            if resp.started:
                resp.end()
            else:
                self._fail(resp)
        self.in_flight -= 1
        if self._rejection is not None and self.in_flight == 0:
            self.reject(*self._rejection)
            return False
        if not (self.keep_alive and req.keep_alive):
            self.close()
            return False
        if self.in_flight == 0:
            self.idle_since = self.server.clock()
        if self._backlog is not None and len(self._queue) <= _PIPELINE_DEPTH:
            self._schedule_backlog()
        if self._paused:
            self.resume()
        return True

    async def _finish_body(self, req: Request) -> None:
        """After an early answer, take in (and drop) the rest of the body, so that the client reads
        the answer instead of a reset; the connection stays open if the body ends in good time."""
        declared = req._declared_size()
        if declared is not None and declared - req._size > _DRAIN_LIMIT:
            self.keep_alive = False  # too much to wait for: linger briefly, then close
        keep = self.keep_alive and req.keep_alive
        arrived = await req.discard(self.limits.keep_alive_s if keep else _LINGER_S)
        if not arrived:
            self.keep_alive = False

    async def _serve(self, first: tuple[Request, Response, Awaitable[None]] | None = None) -> None:
        try:
            while first is not None or self._queue:
                if first is not None:
                    req, resp, work = first
                    first = None
                else:
                    req = self._queue.popleft()
                    resp = Response(self, req)
                    if self.fast is not None and req._complete:  # pipelined, or sent while we answered
                        rest = self._run_fast(req, resp)
                        if rest is DEFER:
                            break  # _deferred_done serves the rest of the queue
                        if rest is None:
                            if not self._close_out(req, resp):
                                break
                            if self._queue:
                                await asyncio.sleep(0)
                            continue
                        work = rest  # type: ignore[assignment]
                    else:
                        work = self.handler(req, resp)
                try:
                    await work
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if not self.closed:  # (a body cut short by the client going away is not the handler's fault)
                        log.exception("unhandled error serving %s %s", req.method, req.path)
                    self._fail(resp)
                if not req._complete:  # answered before the whole body arrived
                    if not resp.started:
                        self._fail(resp)
                    resp.end()
                    await self._finish_body(req)
                if not self._close_out(req, resp):
                    break
                if self._queue:
                    await asyncio.sleep(0)  # pipelined requests: other connections go between them
        finally:
            self._task = None


class HttpServer:
    """A listening socket served by HttpProtocol; close() also drops every open connection."""

    def __init__(self, handler: Handler, fast: FastHandler | None = None, *,
                 limits: ServerLimits | None = None, error_answer: ErrorAnswer = plain_error) -> None:
        self.handler = handler
        self.fast = fast
        self.limits = limits or ServerLimits()
        self.error_answer = error_answer
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[HttpProtocol] = set()
        self.clock = time.monotonic
        self._sweeper: asyncio.TimerHandle | None = None
        self._more: list[asyncio.base_events.Server] = []  # serve()'s

    def _make_protocol(self) -> HttpProtocol:
        if len(self.connections) >= self.limits.max_connections:
            return _Refused(self)  # type: ignore[return-value]
        proto = HttpProtocol(self)
        self.connections.add(proto)
        return proto

    def closing_answer(self, status: int, message: str) -> bytes:
        """A whole error response, on a connection about to close."""
        body, headers = self.error_answer(status, message)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers)
        return (f"{_status_line(status)}{head}Connection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    def forget(self, proto: HttpProtocol) -> None:
        self.connections.discard(proto)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._make_protocol, host, port, reuse_address=True, backlog=512)
        self._schedule_sweep()
        addr = self.server.sockets[0].getsockname()
        return addr[0], addr[1]

    async def serve(self, sock: socket.socket) -> asyncio.base_events.Server:
        """Serve connections to a listening socket of the caller's too (e.g. one inside an environment's
        network namespace), with the same handlers; closing what it returns stops that socket only."""
        server = await asyncio.get_running_loop().create_server(self._make_protocol, sock=sock, backlog=512)
        self._more = [s for s in self._more if s.is_serving()]
        self._more.append(server)
        if self._sweeper is None:
            self._schedule_sweep()
        return server

    def _schedule_sweep(self) -> None:
        interval = min(max(self.limits.keep_alive_s / 4, 0.05), 5.0)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle (or stalled mid-request) for longer than keep_alive_s."""
        deadline = self.clock() - self.limits.keep_alive_s
        for proto in list(self.connections):
            if proto.in_flight == 0:
                if proto.idle_since < deadline:
                    proto.close()
            elif proto._current is not None and not proto._paused and proto.last_data < deadline:
                proto.close()  # a request body that stopped arriving (not one the server stopped reading)
        self._schedule_sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.server is not None:
            self.server.close()
        for server in self._more:
            server.close()
        self._more.clear()
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.abort()
        self.connections.clear()


class _Refused(asyncio.Protocol):
    """A connection over the cap: answered 503 and closed at once."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limit = self.server.limits.max_connections
        transport.write(self.server.closing_answer(503, f"Too many open connections (at most {limit})"))  # type: ignore[attr-defined]
        transport.close()
