"""A small, fast HTTP/1.1 server on asyncio + httptools, shared by the front door and the Runtime API.

It supports what both sides of Lambda need: keep-alive, Content-Length and chunked request bodies
(with trailers, read whole or as a stream), and fixed-length or chunked (streamed) responses.
Every accepted socket gets TCP_NODELAY: without it Nagle + delayed ACK add ~40 ms per exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote

import httptools

log = logging.getLogger("lambdalet.http")

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Request Entity Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable",
}

_PAUSE_AT = 1 << 20  # buffered body bytes before the transport stops reading


class BodyTooLarge(Exception):
    """The request body exceeded the limit given to Request.read()."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class Request:
    """One HTTP request. Headers are a dict of lower-cased names; the body is read on demand."""

    __slots__ = (
        "_chunks", "_complete", "_error", "_proto", "_size", "_waiter",
        "headers", "method", "path", "query", "raw_path", "trailers",
    )

    def __init__(self, proto: HttpProtocol, method: str, target: bytes, headers: dict[str, str]) -> None:
        self._proto = proto
        self.method = method
        url = httptools.parse_url(target)
        self.raw_path = url.path.decode("latin-1")
        self.path = unquote(self.raw_path)
        self.query = (url.query or b"").decode("latin-1")
        self.headers = headers
        self.trailers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._complete = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def client_host(self) -> str:
        peer = self._proto.transport.get_extra_info("peername") if self._proto.transport else None
        return peer[0] if peer else ""

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= _PAUSE_AT:
            self._proto.pause()
        self._wake()

    def _finish(self, error: Exception | None = None) -> None:
        self._complete = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        self._proto.resume()
        await self._waiter
        self._waiter = None

    def body_now(self) -> bytes:
        """The whole body of a request that has arrived completely (see FastHandler)."""
        if not self._complete or self._error is not None:
            raise RuntimeError("request body is not complete")
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return body

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body. Raises BodyTooLarge once more than limit bytes arrived (and drains the rest)."""
        while not self._complete:
            if limit is not None and self._size > limit:
                break
            await self._wait()
        if self._error is not None:
            raise ConnectionError(str(self._error))
        if limit is not None and self._size > limit:
            size = self._size
            async for chunk in self.stream():  # drain so the connection stays usable
                size += len(chunk)
            raise BodyTooLarge(size)
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk; trailers are set when it ends."""
        while True:
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                self._size = 0
                for c in chunks:
                    yield c
                continue
            if self._complete:
                if self._error is not None:
                    raise ConnectionError(str(self._error))
                return
            await self._wait()


class Response:
    """Writes one response: send() for a whole body, or start()/write()/end() to stream it chunked."""

    __slots__ = ("_proto", "_request", "chunked", "finished", "started")

    def __init__(self, proto: HttpProtocol, request: Request) -> None:
        self._proto = proto
        self._request = request
        self.started = False
        self.finished = False
        self.chunked = False

    def _head(self, status: int, headers: list[tuple[str, str]] | dict[str, str], extra: str) -> bytes:
        items = headers.items() if isinstance(headers, dict) else headers
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"]
        lines.extend(f"{k}: {v}\r\n" for k, v in items)
        lines.append(extra)
        if not self._proto.keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def send(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | dict[str, str] = ()) -> None:
        """Send a complete response with Content-Length."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.finished = True
        no_body = status in (204, 304) or self._request.method == "HEAD"
        extra = "" if status == 204 else f"Content-Length: {len(body)}\r\n"
        self._proto.write(self._head(status, headers, extra) + (b"" if no_body else body))

    def start(self, status: int, headers: list[tuple[str, str]] | dict[str, str] = ()) -> None:
        """Start a chunked response; follow with write() and end()."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.chunked = True
        self._proto.write(self._head(status, headers, "Transfer-Encoding: chunked\r\n"))

    def write(self, data: bytes) -> None:
        if data:
            self._proto.write(b"%x\r\n%b\r\n" % (len(data), data))

    async def drain(self) -> None:
        """Wait until the client has taken what was written (flow control for long streams)."""
        await self._proto.drain()

    def end(self, trailers: dict[str, str] | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        tail = "".join(f"{k}: {v}\r\n" for k, v in (trailers or {}).items())
        self._proto.write(b"0\r\n" + tail.encode("latin-1") + b"\r\n")


Handler = Callable[[Request, Response], Awaitable[None]]
# Called for a request that arrived whole: answers it synchronously and returns None, or returns
# what is left to await (usually handler(req, resp)).
FastHandler = Callable[[Request, Response], Awaitable[None] | None]


class HttpProtocol(asyncio.Protocol):
    """One connection: parses requests with httptools and runs the handler for each, in order."""

    def __init__(self, handler: Handler, on_close: Callable[[HttpProtocol], None] | None = None,
                 fast: FastHandler | None = None) -> None:
        self.handler = handler
        self.fast = fast
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.keep_alive = True
        self._url = b""
        self._headers: dict[str, str] = {}
        self._current: Request | None = None
        self._in_body = False
        self._queue: list[Request] = []
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            self._bad_request()
            return
        if self._task is None and self._queue:
            self._start()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._current is not None and not self._current._complete:
            self._current._finish(ConnectionError("client disconnected"))
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.on_close:
            self.on_close(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._in_body = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        if self._in_body and self._current is not None:
            self._current.trailers[key] = val
        elif key in self._headers:
            self._headers[key] += ", " + val
        else:
            self._headers[key] = val

    def on_headers_complete(self) -> None:
        self._in_body = True
        method = self.parser.get_method().decode("latin-1")
        req = Request(self, method, self._url, self._headers)
        self._current = req
        self.keep_alive = self.parser.should_keep_alive()
        self._queue.append(req)

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current._feed(body)

    def on_message_complete(self) -> None:
        if self._current is not None:
            self._current._finish()
            self._current = None

    # -- internals
    def _bad_request(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            body = b'{"message":"Bad request"}'
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )
            self.transport.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            fut = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(fut)
            await fut

    def _start(self) -> None:
        """Serve the queue. A request that arrived whole goes to the fast handler right here, in
        data_received, saving a loop iteration on the hot path; what it returns (if anything) is
        awaited in the connection's task."""
        if self._task is not None or not self._queue:
            return
        req = self._queue[0]
        first: tuple[Request, Response, Awaitable[None]] | None = None
        if self.fast is not None and req._complete and len(self._queue) == 1:
            self._queue.pop(0)
            resp = Response(self, req)
            try:
                rest = self.fast(req, resp)
            except Exception:
                log.exception("unhandled error serving %s %s", req.method, req.path)
                rest = None
                self._fail(resp)
            if rest is None:
                self._close_out(req, resp)
                return
            first = (req, resp, rest)
        self._task = asyncio.get_running_loop().create_task(self._serve(first))

    def _fail(self, resp: Response) -> None:
        if not resp.started:
            resp.send(500, b'{"message":"Internal Server Error"}', {"Content-Type": "application/json"})
        else:
            self.keep_alive = False

    def _close_out(self, req: Request, resp: Response) -> bool:
        """Finish a handled request; False when the connection is done."""
        if not resp.finished:
            if resp.started:
                resp.end()
            else:
                resp.send(500, b"")
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            return False
        return True

    async def _serve(self, first: tuple[Request, Response, Awaitable[None]] | None = None) -> None:
        try:
            while first is not None or self._queue:
                if first is not None:
                    req, resp, work = first
                    first = None
                else:
                    req = self._queue.pop(0)
                    resp = Response(self, req)
                    work = self.handler(req, resp)
                try:
                    await work
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("unhandled error serving %s %s", req.method, req.path)
                    self._fail(resp)
                if not req._complete:
                    try:  # consume an unread body so the next request parses
                        async for _ in req.stream():
                            pass
                    except ConnectionError:
                        break
                if not self._close_out(req, resp):
                    break
        finally:
            self._task = None


class HttpServer:
    """A listening socket served by HttpProtocol; close() also drops every open connection."""

    def __init__(self, handler: Handler, fast: FastHandler | None = None) -> None:
        self.handler = handler
        self.fast = fast
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[HttpProtocol] = set()

    def _make_protocol(self) -> HttpProtocol:
        proto = HttpProtocol(self.handler, self.connections.discard, self.fast)
        self.connections.add(proto)
        return proto

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._make_protocol, host, port, reuse_address=True, backlog=512)
        addr = self.server.sockets[0].getsockname()
        return addr[0], addr[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.abort()
        self.connections.clear()
