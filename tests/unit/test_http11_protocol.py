"""http11's HttpProtocol driven through a fake transport, with no sockets (in the style of uvicorn's
tests/protocols/test_http.py): requests go in through data_received, answers are parsed back with
httptools' response parser.

The fake transport behaves like asyncio's where it matters: close() and abort() reach the protocol's
connection_lost on the next loop iteration, and while reading is paused no data reaches the protocol
(what the client sends meanwhile waits, and is delivered after resume_reading()). A connection left
paused therefore never sees its next request, as with a real socket.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools
import pytest

from lambdalet import http11
from lambdalet.http11 import (
    DEFER,
    BodyTooLarge,
    HttpProtocol,
    HttpServer,
    InvalidHeader,
    Request,
    Response,
    ServerLimits,
    valid_field,
)

MiB = 1 << 20
PAUSE_AT = http11._PAUSE_AT


# -- the harness -------------------------------------------------------------------------------------


class FakeTransport:
    """Records what the protocol writes and how it pauses; delivers the client's bytes like a socket."""

    def __init__(self, peer: tuple[str, int] = ("203.0.113.7", 40123)) -> None:
        self.protocol: asyncio.Protocol | None = None
        self.peer = peer
        self.writes: list[bytes] = []
        self.late_writes: list[bytes] = []  # written after close(): must stay empty
        self.closing = False
        self.aborted = False
        self.lost = False
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.pending: deque[bytes] = deque()  # sent by the client while reading was paused

    # -- what asyncio.Transport offers the protocol
    def write(self, data: bytes) -> None:
        if self.closing:
            self.late_writes.append(bytes(data))
            return
        self.writes.append(bytes(data))

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self._lose)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        assert not self.paused, "pause_reading() on a paused transport"
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        assert self.paused, "resume_reading() on a transport that reads"
        self.paused = False
        self.resumes += 1
        asyncio.get_running_loop().call_soon(self._deliver)

    def get_extra_info(self, name: str, default=None):
        return {"peername": self.peer, "sockname": ("127.0.0.1", 9000)}.get(name, default)

    # -- the client's side
    def feed(self, data: bytes) -> None:
        """The client sends data: delivered now unless reading is paused (then after resume_reading)."""
        if self.closing:
            return
        if self.paused or self.pending:
            self.pending.append(bytes(data))
            return
        self.protocol.data_received(data)

    def _deliver(self) -> None:
        while self.pending and not self.paused and not self.closing:
            self.protocol.data_received(self.pending.popleft())

    def _lose(self, exc: Exception | None = None) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(exc)

    def hang_up(self) -> None:
        """The client goes away (a reset): connection_lost at once."""
        self.closing = True
        self._lose(ConnectionResetError("reset by peer"))

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)


@dataclass
class Answer:
    """One response as a client parsed it."""

    status: int = 0
    reason: bytes = b""
    version: str = ""
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: dict[str, bytes] = field(default_factory=dict)
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("transfer-encoding") or "")

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


class _Reader:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[Answer] = []
        self.current: Answer | None = None
        self.in_head = False

    def on_message_begin(self) -> None:
        self.current = Answer()
        self.in_head = True

    def on_status(self, status: bytes) -> None:
        self.current.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if self.in_head:
            self.current.headers.append((key, value))
        else:
            self.current.trailers[key] = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.current.status = self.parser.get_status_code()
        self.current.version = self.parser.get_http_version()
        self.current.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self.current)
        self.current = None


def parse_answers(data: bytes, *, allow_partial: bool = False) -> list[Answer]:
    """Every response in data (which must all be valid HTTP/1.1, and complete unless allow_partial)."""
    reader = _Reader()
    reader.parser.feed_data(data)
    if not allow_partial:
        assert reader.current is None, f"an incomplete response at the end of {data[-300:]!r}"
    for a in reader.done:
        assert a.version == "1.1", a
    return reader.done


def partial_answer(data: bytes) -> Answer | None:
    """The response that data leaves unfinished, if any."""
    reader = _Reader()
    reader.parser.feed_data(data)
    return reader.current


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ErrorAnswers:
    """An error_answer in a dialect of its own (JSON, an X-Door header), recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, status: int, message: str) -> tuple[bytes, list[tuple[str, str]]]:
        self.calls.append((status, message))
        body = json.dumps({"status": status, "message": message}).encode()
        return body, [("Content-Type", "application/json"), ("X-Door", "test")]


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes
    trailers: dict[str, str]


class Conn:
    """One client connection to the harness's server."""

    def __init__(self, server: HttpServer) -> None:
        self.transport = FakeTransport()
        self.proto = server._make_protocol()
        self.transport.protocol = self.proto
        self.proto.connection_made(self.transport)

    def send(self, *pieces: bytes) -> None:
        for p in pieces:
            self.transport.feed(p)

    def answers(self, **kw) -> list[Answer]:
        return parse_answers(self.transport.data, **kw)

    def count(self) -> int:
        """Complete answers so far."""
        return len(parse_answers(self.transport.data, allow_partial=True))

    @property
    def closed(self) -> bool:
        return self.transport.closing


class Harness:
    """An HttpServer (never listening) with a recording echo handler, a fake clock and error answers."""

    def __init__(self, handler=None, fast=None, **limits) -> None:
        self.seen: list[Seen] = []
        self.errors = ErrorAnswers()
        self.clock = FakeClock()
        self.server = HttpServer(handler or self.echo, fast, limits=ServerLimits(**limits),
                                 error_answer=self.errors)
        self.server.clock = self.clock

    def connect(self) -> Conn:
        return Conn(self.server)

    def sweep(self) -> None:
        self.server._sweep()
        self.server._sweeper.cancel()  # the sweep reschedules itself: the test sweeps by hand

    def record(self, req: Request, body: bytes) -> None:
        self.seen.append(Seen(req.method, req.path, req.raw_path, req.query, dict(req.headers), body,
                              dict(req.trailers)))

    async def echo(self, req: Request, resp: Response) -> None:
        body = await req.read()
        self.record(req, body)
        resp.send(200, b"%s %s %d" % (req.method.encode(), req.raw_path.encode(), len(body)),
                  [("Content-Type", "text/plain")])


def run(coro):
    """Run a test coroutine on a fresh loop; anything reported to the loop's exception handler (an
    exception out of a callback such as a delivery to data_received) fails the test."""
    reported: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        return await coro

    result = asyncio.run(main())
    assert not reported, reported
    return result


def aio(fn: Callable) -> Callable:
    """An async test function, run with run() (pytest-asyncio is not used here)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run(fn(*args, **kwargs))

    return wrapper


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(cond: Callable[[], bool], timeout: float = 2.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    rounds = 0
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        rounds += 1
        await asyncio.sleep(0 if rounds < 200 else 0.002)


def get(path: str = "/", headers: list[tuple[str, str]] | tuple = (), version: str = "1.1",
        method: str = "GET") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: test\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n"


def post(path: str = "/", body: bytes = b"", headers: list[tuple[str, str]] | tuple = (),
         version: str = "1.1") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def chunked_body(chunks: list[bytes], trailers: list[tuple[str, str]] = ()) -> bytes:
    out = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks if c)
    return out + b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in trailers).encode("latin-1") + b"\r\n"


def post_chunked(path: str = "/", chunks: list[bytes] = (), trailers: list[tuple[str, str]] = (),
                 headers: list[tuple[str, str]] | tuple = ()) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + chunked_body(list(chunks), trailers)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def body_of(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


# -- basic exchanges -----------------------------------------------------------------------------------


@aio
async def test_simple_get():
    h = Harness()
    c = h.connect()
    c.send(get("/hello?x=1&y=%20z", [("X-Thing", "Some Value")]))
    await until(lambda: c.count())
    [a] = c.answers()
    assert (a.status, a.reason, a.body) == (200, b"OK", b"GET /hello 0")
    assert a.header("content-length") == "12" and a.header("content-type") == "text/plain"
    assert a.keep_alive and not a.closes
    [s] = h.seen
    assert (s.method, s.path, s.query) == ("GET", "/hello", "x=1&y=%20z")
    assert s.headers == {"host": "test", "x-thing": "Some Value"}  # names lower-cased
    await settle()
    assert not c.closed and c.proto in h.server.connections


@aio
async def test_header_values_lose_their_surrounding_whitespace():
    """RFC 9112 §5.1: OWS before and after a field value is not part of it."""
    h = Harness()
    c = h.connect()
    c.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Lead:   lead\r\nX-Trail: trail \t \r\nX-Both: \t both  \r\n"
           b"X-Inner: a  b\r\n\r\n")
    await until(lambda: c.count())
    headers = h.seen[0].headers
    assert (headers["x-lead"], headers["x-trail"], headers["x-both"], headers["x-inner"]) == (
        "lead", "trail", "both", "a  b")


@aio
async def test_simple_post():
    h = Harness()
    c = h.connect()
    c.send(post("/p", b"hello world", [("Content-Type", "application/json")]))
    await until(lambda: c.count())
    [a] = c.answers()
    assert (a.status, a.body) == (200, b"POST /p 11")
    assert h.seen[0].body == b"hello world" and h.seen[0].headers["content-type"] == "application/json"


@aio
async def test_path_decoding_and_absolute_form():
    h = Harness()
    c = h.connect()
    c.send(get("/a%20b/c%2Fd?q=%41"), get("http://example.com:8080/abs/path?k=v"), get("*", method="OPTIONS"))
    await until(lambda: c.count() == 3)
    assert [(s.path, s.raw_path, s.query) for s in h.seen] == [
        ("/a b/c/d", "/a%20b/c%2Fd", "q=%41"), ("/abs/path", "/abs/path", "k=v"), ("*", "*", "")]


@aio
async def test_client_host_comes_from_the_transport():
    hosts = []

    async def handler(req, resp):
        hosts.append(req.client_host)
        resp.send(204)

    h = Harness(handler)
    c = h.connect()
    c.send(get())
    await until(lambda: hosts)
    assert hosts == ["203.0.113.7"]


@aio
async def test_keep_alive_serves_two_requests_on_one_connection():
    h = Harness()
    c = h.connect()
    c.send(get("/one"))
    await until(lambda: c.count() == 1)
    c.send(post("/two", b"xyz"))
    await until(lambda: c.count() == 2)
    assert [a.body for a in c.answers()] == [b"GET /one 0", b"POST /two 3"]
    assert all(not a.closes for a in c.answers())
    await settle()
    assert not c.closed and c.proto.in_flight == 0


@aio
async def test_connection_close_closes_after_the_response():
    h = Harness()
    c = h.connect()
    c.send(get("/bye", [("Connection", "close")]))
    await until(lambda: c.transport.lost)
    [a] = c.answers()
    assert a.status == 200 and a.closes and not a.keep_alive
    assert c.proto not in h.server.connections and c.transport.late_writes == []


@aio
async def test_http10_closes_after_the_response_by_default():
    h = Harness()
    c = h.connect()
    c.send(get("/old", version="1.0"))
    await until(lambda: c.transport.lost)
    [a] = c.answers()
    assert (a.status, a.body) == (200, b"GET /old 0") and a.closes


@aio
async def test_http10_keep_alive_request_keeps_the_connection():
    h = Harness()
    c = h.connect()
    c.send(get("/a", [("Connection", "keep-alive")], version="1.0"))
    await until(lambda: c.count() == 1)
    c.send(get("/b", [("Connection", "keep-alive")], version="1.0"))
    await until(lambda: c.count() == 2)
    assert not c.closed


@aio
async def test_http10_streamed_response_is_not_chunked():
    """RFC 9112 §6.1: a server MUST NOT send Transfer-Encoding to an HTTP/1.0 client, which cannot decode
    it. A streamed answer to HTTP/1.0 is the raw body, ended by closing the connection."""

    async def handler(req, resp):
        resp.start(200, {"Content-Type": "text/plain"})
        resp.write(b"hello ")
        resp.write(b"world")
        resp.end()

    h = Harness(handler)
    c = h.connect()
    c.send(get("/stream", [("Connection", "keep-alive")], version="1.0"))
    await until(lambda: c.proto.in_flight == 0)
    await settle()
    assert c.transport.lost
    head, _, body = c.transport.data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower(), head
    assert b"connection: close" in head.lower()
    assert body == b"hello world"


@aio
async def test_pipelined_requests_are_answered_in_order():
    h = Harness()
    c = h.connect()
    c.send(get("/1") + post("/2", b"ab") + post_chunked("/3", [b"abc", b"de"]) + get("/4"))
    await until(lambda: c.count() == 4)
    assert [a.body for a in c.answers()] == [b"GET /1 0", b"POST /2 2", b"POST /3 5", b"GET /4 0"]
    await settle()
    assert not c.closed and c.proto.in_flight == 0 and not c.transport.paused


@aio
async def test_pipelined_requests_ending_with_connection_close_are_all_answered():
    """What `printf 'GET ...\\r\\n\\r\\nGET ...Connection: close\\r\\n\\r\\n' | nc` sends: each request is
    answered, and only the last answer says Connection: close."""
    h = Harness()
    c = h.connect()
    c.send(get("/1") + get("/2") + get("/3", [("Connection", "close")]))
    await until(lambda: c.transport.lost)
    answers = c.answers()
    assert [a.body for a in answers] == [b"GET /1 0", b"GET /2 0", b"GET /3 0"]
    assert [a.closes for a in answers] == [False, False, True]


@aio
async def test_bytes_after_a_connection_close_request_are_ignored():
    """The request that says Connection: close is answered; what follows it is never a request."""
    h = Harness()
    c = h.connect()
    c.send(get("/last", [("Connection", "close")]) + get("/ignored"))
    await until(lambda: c.transport.lost)
    [a] = c.answers()
    assert (a.status, a.body) == (200, b"GET /last 0") and a.closes
    assert h.errors.calls == []


@aio
async def test_deep_pipelining_pauses_reading_and_answers_everything():
    gate = asyncio.Event()

    async def handler(req, resp):
        await gate.wait()
        resp.send(200, req.path.encode())

    h = Harness(handler)
    c = h.connect()
    c.send(b"".join(get(f"/{i}") for i in range(20)))
    await settle()
    assert c.transport.paused  # more than _PIPELINE_DEPTH requests waiting: the client waits
    c.send(get("/20"))  # kept in the socket buffer meanwhile
    gate.set()
    await until(lambda: c.count() == 21)
    assert [a.body for a in c.answers()] == [f"/{i}".encode() for i in range(21)]
    await settle()
    assert not c.transport.paused and not c.closed


@pytest.mark.parametrize("shape", ["many small requests", "a body then a request"])
@aio
async def test_pipelined_bytes_beyond_max_head_bytes_are_not_one_head(shape):
    """max_head_bytes bounds one request's line and headers, not everything a client pipelines in one
    read: 100 KB of small requests (or a 60 KiB body and the next request) in one data_received."""
    h = Harness()
    c = h.connect()
    if shape == "many small requests":
        data = b"".join(get(f"/{i:04d}", [("X-Pad", "p" * 60)]) for i in range(1000))
        expected = 1000
    else:
        data = post("/big", body_of(65 * 1024)) + get("/after")
        expected = 2
    assert len(data) > h.server.limits.max_head_bytes
    c.send(data)
    await until(lambda: len(c.answers()) == expected or c.closed, timeout=10, what="the answers")  # (slow when loaded)
    assert [a.status for a in c.answers()] == [200] * expected
    assert h.errors.calls == []


@aio
async def test_fast_handler_answers_a_complete_request_inside_data_received():
    calls = []

    def fast(req, resp):
        calls.append(req.path)
        if req.path == "/fast":
            resp.send(200, b"fast " + req.body_now())
            return None
        return h.echo(req, resp)

    h = Harness(fast=fast)
    c = h.connect()
    c.send(post("/fast", b"body"))
    # answered synchronously: no loop iteration, no task
    assert [a.body for a in c.answers()] == [b"fast body"]
    assert c.proto._task is None and c.proto.in_flight == 0
    c.send(post("/other", b"12345"))  # the fast handler hands it to the handler: awaited in a task
    assert c.proto._task is not None
    await until(lambda: c.count() == 2)
    assert c.answers()[1].body == b"POST /other 5"
    assert calls == ["/fast", "/other"]


@aio
async def test_fast_handler_is_not_used_for_an_incomplete_request():
    fast_calls = []

    def fast(req, resp):
        fast_calls.append(req.path)
        resp.send(200, req.body_now())

    h = Harness(fast=fast)
    c = h.connect()
    data = post("/p", b"x" * 100)
    c.send(data[:-50])
    await settle()
    c.send(data[-50:])
    await until(lambda: c.count())
    assert fast_calls == [] and c.answers()[0].body == b"POST /p 100"  # the slow handler read it


@aio
async def test_slow_handler_awaits_a_body_that_arrives_later():
    h = Harness()
    c = h.connect()
    body = body_of(10_000)
    data = post("/slow", body)
    c.send(data[:200])
    await settle()
    assert c.answers() == [] and c.proto._task is not None  # the handler waits in read()
    for p in pieces(data[200:], 999):
        c.send(p)
        await asyncio.sleep(0)
    await until(lambda: c.count())
    assert c.answers()[0].body == b"POST /slow 10000" and h.seen[0].body == body


@aio
async def test_body_split_into_single_bytes():
    h = Harness()
    c = h.connect()
    data = post("/bytes", b"split-me-up") + post_chunked("/chunks", [b"ab", b"cde"], [("X-T", "1")])
    for i in range(len(data)):
        c.send(data[i:i + 1])
    await until(lambda: c.count() == 2)
    assert [s.body for s in h.seen] == [b"split-me-up", b"abcde"]
    assert h.seen[1].trailers == {"x-t": "1"}


# -- bodies around _PAUSE_AT ----------------------------------------------------------------------------


def _fast_reader(h: Harness):
    def fast(req, resp):
        body = req.body_now()
        h.record(req, body)
        resp.send(200, b"%s %s %d" % (req.method.encode(), req.raw_path.encode(), len(body)))

    return fast


@pytest.mark.parametrize("size", [PAUSE_AT - 1, PAUSE_AT, PAUSE_AT + 1, 3 * MiB + 7])
@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
@pytest.mark.parametrize("delivery", ["one read", "64 KiB reads"])
@pytest.mark.parametrize("path", ["fast", "slow"])
@aio
async def test_bodies_around_one_mib_leave_the_connection_reading(size, encoding, delivery, path):
    """After a body of 1 MiB or more the transport is resumed and the next request is answered (it
    used to stay paused: the next request was never read and the socket sat in CLOSE_WAIT)."""
    h = Harness()
    if path == "fast":
        h.server.fast = _fast_reader(h)
    c = h.connect()
    body = body_of(size)
    if encoding == "content-length":
        data = post("/big", body)
    else:
        data = post_chunked("/big", pieces(body, 100_000), [("X-Checksum", "abc")])
    c.send(*([data] if delivery == "one read" else pieces(data, 64 * 1024)))
    c.send(get("/next"))
    await until(lambda: c.count() == 2, what="both answers")
    assert [a.body for a in c.answers()] == [b"POST /big %d" % size, b"GET /next 0"]
    assert h.seen[0].body == body
    if encoding == "chunked":
        assert h.seen[0].trailers == {"x-checksum": "abc"}
    await settle()
    assert not c.transport.paused and not c.proto._paused and not c.closed
    assert c.transport.pauses == c.transport.resumes
    if size >= PAUSE_AT:
        assert c.transport.pauses >= 1


@aio
async def test_unread_body_buffers_at_most_one_mib_and_one_read():
    gate = asyncio.Event()
    requests: list[Request] = []

    async def handler(req, resp):
        requests.append(req)
        await gate.wait()
        body = await req.read()
        resp.send(200, b"%d" % len(body))

    h = Harness(handler)
    c = h.connect()
    size, read = 5 * MiB, 64 * 1024
    for p in pieces(post("/up", body_of(size)), read):
        c.send(p)
        await asyncio.sleep(0)
        if requests:
            assert requests[0]._size <= PAUSE_AT + read
    assert c.transport.paused and c.transport.pending  # the rest waits in the client's socket
    gate.set()
    c.send(get("/next"))
    await until(lambda: c.count() == 1)
    assert c.answers()[0].body == b"%d" % size


@aio
async def test_stream_yields_the_body_as_it_arrives_and_sets_trailers():
    got: list[bytes] = []
    trailers = {}

    async def handler(req, resp):
        async for chunk in req.stream():
            got.append(chunk)
        trailers.update(req.trailers)
        resp.send(200, b"%d" % sum(map(len, got)))

    h = Harness(handler)
    c = h.connect()
    data = post_chunked("/s", [b"first", b"second", b"third"], [("X-Sum", "16")])
    head_end = data.index(b"\r\n\r\n") + 4
    c.send(data[:head_end + 10])  # the head and "5\r\nfirst\r\n"
    await until(lambda: got)
    assert got == [b"first"]
    c.send(data[head_end + 10:])
    await until(lambda: c.count())
    assert b"".join(got) == b"firstsecondthird" and trailers == {"x-sum": "16"}
    assert c.answers()[0].body == b"16"


@aio
async def test_stream_of_a_large_body_with_a_slow_consumer_stays_bounded():
    sizes = []

    async def handler(req, resp):
        total = 0
        async for chunk in req.stream():
            total += len(chunk)
            sizes.append(req._size)
            await asyncio.sleep(0)
        resp.send(200, b"%d" % total)

    h = Harness(handler)
    c = h.connect()
    c.send(*pieces(post("/s", body_of(4 * MiB)), 256 * 1024))
    c.send(get("/after"))
    await until(lambda: c.count() == 2)
    assert c.answers()[0].body == b"%d" % (4 * MiB)
    assert not c.transport.paused


@aio
async def test_expect_100_continue_is_answered_when_the_body_is_read():
    """RFC 9110 §10.1.1: a server that will read the body sends 100 Continue (curl waits a whole second
    for it before sending a body over 1 MiB)."""
    h = Harness()
    c = h.connect()
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    await settle()
    assert c.transport.data == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"hello")
    await until(lambda: c.count() == 2)
    assert [(a.status, a.body) for a in c.answers()] == [(100, b""), (200, b"POST /up 5")]


@aio
async def test_expect_100_continue_answered_early_gets_no_interim_response():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, 1000, outcomes)
    c = h.connect()
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    await until(lambda: c.count())
    assert [a.status for a in c.answers()] == [413]  # and the client need not send its body
    await settle()
    assert [a.status for a in c.answers()] == [413]


# -- read(limit), early answers, draining -----------------------------------------------------------


def _limited(h: Harness, limit: int, outcomes: list, *, after=None):
    async def handler(req, resp):
        try:
            body = await req.read(limit)
        except BodyTooLarge as exc:
            outcomes.append(("too large", exc.size, req))
            resp.send(413, b"too large")
            if after is not None:
                after(req)
            return
        outcomes.append(("read", len(body), req))
        resp.send(200, b"%d" % len(body))

    return handler


@aio
async def test_read_limit_raises_as_soon_as_the_declared_length_exceeds_it():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, 1000, outcomes)
    c = h.connect()
    c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")  # no body byte yet
    await until(lambda: c.count())
    assert outcomes[0][:2] == ("too large", 5000)
    [a] = c.answers()
    assert a.status == 413 and not a.closes  # the rest is taken in and dropped: the connection stays


@aio
async def test_body_after_an_early_413_is_discarded_and_the_connection_stays_usable():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, 1000, outcomes)
    c = h.connect()
    size = 3 * MiB
    data = post("/x", body_of(size))
    head_end = data.index(b"\r\n\r\n") + 4
    c.send(data[:head_end + 100])
    await until(lambda: c.count())
    req = outcomes[0][2]
    for p in pieces(data[head_end + 100:], 128 * 1024):
        c.send(p)
        await asyncio.sleep(0)
        assert req._size == 0 and not req._chunks  # dropped, not buffered
    assert not c.transport.paused
    c.send(post("/x", b"small"))
    await until(lambda: c.count() == 2)
    assert [a.status for a in c.answers()] == [413, 200] and c.answers()[1].body == b"5"
    assert not c.closed


@aio
async def test_chunked_body_over_the_read_limit_is_413_and_close():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, 1000, outcomes)
    c = h.connect()
    data = post_chunked("/x", [b"a" * 600, b"b" * 600, b"c" * 600])
    c.send(data[:data.index(b"bbb")])  # 600 bytes: under the limit
    await settle()
    assert c.answers() == []
    c.send(data[data.index(b"bbb"):data.index(b"ccc")])  # 1200 bytes: over it, and more to come
    await until(lambda: c.count())
    assert outcomes[0][:2] == ("too large", 1200)
    [a] = c.answers()
    assert a.status == 413 and a.closes  # no declared length: the rest is not awaited
    c.send(data[data.index(b"ccc"):])
    await until(lambda: c.transport.lost)


@aio
async def test_chunked_body_over_the_read_limit_that_arrived_whole_keeps_the_connection():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, 1000, outcomes)
    c = h.connect()
    c.send(post_chunked("/x", [b"a" * 600, b"b" * 600]), get("/after"))
    await until(lambda: c.count() == 2)
    assert outcomes[0][:2] == ("too large", 1200)
    assert [a.status for a in c.answers()] == [413, 200] and not c.answers()[0].closes


@aio
async def test_huge_declared_body_gets_413_with_connection_close(monkeypatch):
    monkeypatch.setattr(http11, "_LINGER_S", 0.05)
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, MiB, outcomes)
    c = h.connect()
    c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (100 * MiB) + b"x" * 1000)
    await until(lambda: c.count())
    [a] = c.answers()
    assert a.status == 413 and a.closes
    assert outcomes[0][:2] == ("too large", 100 * MiB)
    await until(lambda: c.transport.lost, what="the close after lingering")


@aio
async def test_body_just_under_the_drain_limit_keeps_the_connection():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, MiB, outcomes)
    c = h.connect()
    size = 2 * MiB
    c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
    await until(lambda: c.count())
    assert not c.answers()[0].closes
    c.send(*pieces(body_of(size), MiB // 2))
    c.send(get("/after"))
    await until(lambda: c.count() == 2)
    assert [a.status for a in c.answers()] == [413, 200]


@aio
async def test_read_limit_at_exactly_the_limit_is_fine():
    outcomes = []
    h = Harness()
    h.server.handler = _limited(h, 1000, outcomes)
    c = h.connect()
    c.send(post("/x", b"y" * 1000), post_chunked("/x", [b"z" * 500, b"z" * 500]))
    await until(lambda: c.count() == 2)
    assert [o[:2] for o in outcomes] == [("read", 1000), ("read", 1000)]


@aio
async def test_handler_answering_without_reading_the_body_keeps_the_connection():
    async def handler(req, resp):
        resp.send(202, b"accepted")  # never looks at the body

    h = Harness(handler)
    c = h.connect()
    data = post("/x", body_of(300_000))
    c.send(data[:1000])
    await until(lambda: c.count())
    c.send(data[1000:], get("/next"))
    await until(lambda: c.count() == 2)
    assert [a.status for a in c.answers()] == [202, 202] and not c.closed


# -- heads: size limit, repeated names, splitting ----------------------------------------------------


def _head_of_size(size: int, path: str = "/") -> bytes:
    base = f"GET {path} HTTP/1.1\r\nHost: test\r\nX-Pad: \r\n\r\n".encode()
    pad = size - len(base)
    assert pad >= 0
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * pad)


@aio
async def test_request_line_over_max_head_bytes_is_431_and_close():
    h = Harness(max_head_bytes=1024)
    c = h.connect()
    c.send(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    await until(lambda: c.transport.lost)
    [a] = c.answers()
    assert a.status == 431 and a.reason == b"Request Header Fields Too Large" and a.closes
    assert a.header("x-door") == "test" and json.loads(a.body)["status"] == 431
    assert h.errors.calls[0][0] == 431 and "1024" in h.errors.calls[0][1]
    assert h.seen == []


@aio
async def test_headers_over_max_head_bytes_arriving_in_pieces_is_431():
    h = Harness(max_head_bytes=1024)
    c = h.connect()
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
    for i in range(100):
        c.send(f"X-H{i}: {'v' * 20}\r\n".encode())
        if c.closed:
            break
    await until(lambda: c.transport.lost)
    assert [a.status for a in c.answers()] == [431]


@pytest.mark.parametrize("split", [None, 1, 100, 1023])
@aio
async def test_head_of_exactly_max_head_bytes_passes_and_one_more_is_431(split):
    h = Harness(max_head_bytes=1024)
    c = h.connect()
    exact = _head_of_size(1024, "/exact")
    c.send(*([exact] if split is None else pieces(exact, split)))
    await until(lambda: c.count())
    assert c.answers()[0].status == 200
    over = _head_of_size(1025, "/over")
    c.send(*([over] if split is None else pieces(over, split)))
    await until(lambda: c.transport.lost)
    assert [a.status for a in c.answers()] == [200, 431]


@aio
async def test_head_of_exactly_max_head_bytes_with_its_body_in_the_same_read():
    h = Harness(max_head_bytes=1024)
    c = h.connect()
    head = _head_of_size(1024, "/p").replace(b"GET", b"PUT").replace(b"X-Pad: ", b"Content-Length: 5\r\nX-Pad: ")
    head = head.replace(b"p" * 19 + b"\r\n\r\n", b"\r\n\r\n")  # back to exactly 1024 bytes
    assert len(head) == 1024
    c.send(head + b"hello")
    await until(lambda: c.count())
    assert c.answers()[0].body == b"PUT /p 5"


@aio
async def test_head_of_exactly_max_head_bytes_followed_by_a_pipelined_request():
    h = Harness(max_head_bytes=1024)
    c = h.connect()
    c.send(_head_of_size(1024, "/exact") + get("/next"))
    await until(lambda: c.count() == 2 or c.closed)
    assert [a.status for a in c.answers()] == [200, 200]


@aio
async def test_repeated_header_names_are_joined():
    h = Harness()
    c = h.connect()
    c.send(get("/", [("Accept", "a"), ("X-Other", "o"), ("accept", "b"), ("ACCEPT", "c")]))
    await until(lambda: c.count())
    assert h.seen[0].headers["accept"] == "a, b, c" and h.seen[0].headers["x-other"] == "o"


@aio
async def test_joining_twenty_thousand_repeated_headers_is_linear():
    h = Harness(max_head_bytes=4 * MiB)
    c = h.connect()
    n = 20_000
    data = get("/", [("X-Rep", f"v{i}") for i in range(n)])
    t = time.perf_counter()
    c.send(data)
    elapsed = time.perf_counter() - t
    await until(lambda: c.count())
    assert h.seen[0].headers["x-rep"] == ", ".join(f"v{i}" for i in range(n))
    assert elapsed < 0.5, f"{elapsed:.3f} s for {n} repeated headers"


@aio
async def test_header_split_across_reads():
    h = Harness()
    c = h.connect()
    data = get("/split", [("X-Long-Name", "a value, with: colons"), ("X-Second", "2")])
    cuts = [3, 10, data.index(b"X-Long") + 4, data.index(b"a value") + 3, data.index(b"\r\nX-Second") + 1,
            len(data) - 2, len(data) - 1]
    last = 0
    for cut in cuts:
        c.send(data[last:cut])
        last = cut
        await asyncio.sleep(0)
    assert c.answers() == []
    c.send(data[last:])
    await until(lambda: c.count())
    assert h.seen[0].headers["x-long-name"] == "a value, with: colons" and h.seen[0].headers["x-second"] == "2"


# -- malformed requests -----------------------------------------------------------------------------


MALFORMED = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    "bad method": b"FETCH / HTTP/1.1\r\nHost: t\r\n\r\n",
    "lower-case method": b"get / HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad version": b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad url port": b"GET http://a:xx/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad url host": b"GET http://[::1/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk without CRLF": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
    "invalid content-length": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "negative content-length": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
    "two content-lengths": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "content-length and chunked": b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "unknown transfer-encoding": b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
    "NUL in header value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "NUL in header name": b"GET / HTTP/1.1\r\nHost: t\r\nX\x00A: ab\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost t\r\n\r\n",
    "bare LF in header": b"GET / HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n folded\r\n\r\n",
    "upgrade": b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("after_a_good_request", [False, True])
@aio
async def test_malformed_request_is_400_and_close(name, after_a_good_request):
    h = Harness()
    c = h.connect()
    if after_a_good_request:
        c.send(get("/good"))
        await until(lambda: c.count())
    c.send(MALFORMED[name])  # never raises
    await until(lambda: c.transport.lost)
    answers = c.answers()
    assert [a.status for a in answers] == [200] * after_a_good_request + [400]
    bad = answers[-1]
    assert bad.reason == b"Bad Request" and bad.closes and bad.header("x-door") == "test"
    assert json.loads(bad.body)["status"] == 400 and h.errors.calls[-1][0] == 400
    assert [s.path for s in h.seen] == ["/good"] * after_a_good_request
    c.proto.data_received(b"GET / HTTP/1.1\r\n\r\n")  # a late read is harmless
    assert c.transport.late_writes == []


@aio
async def test_malformed_request_split_into_bytes_never_raises():
    for data in MALFORMED.values():
        h = Harness()
        c = h.connect()
        for i in range(len(data)):
            c.proto.data_received(data[i:i + 1])
        await settle()
        assert c.closed and [a.status for a in c.answers()][-1:] == [400]


# -- handler errors ---------------------------------------------------------------------------------


@aio
async def test_handler_exception_before_the_response_is_a_500(caplog):
    async def handler(req, resp):
        if req.path == "/boom":
            raise RuntimeError("boom")
        resp.send(200, b"fine")

    h = Harness(handler)
    c = h.connect()
    with caplog.at_level(logging.ERROR, logger="lambdalet.http"):
        c.send(get("/boom"), get("/after"))
        await until(lambda: c.count() == 2)
    a, b = c.answers()
    assert a.status == 500 and a.reason == b"Internal Server Error" and a.header("x-door") == "test"
    assert json.loads(a.body) == {"status": 500, "message": "Internal Server Error"}
    assert b.body == b"fine" and not c.closed  # the connection goes on
    assert any("unhandled error serving GET /boom" in r.getMessage() for r in caplog.records)


@aio
async def test_fast_handler_exception_is_a_500(caplog):
    def fast(req, resp):
        raise ValueError("fast boom")

    h = Harness(fast=fast)
    c = h.connect()
    with caplog.at_level(logging.ERROR, logger="lambdalet.http"):
        c.send(get("/x"))
    [a] = c.answers()
    assert a.status == 500 and not c.closed


@aio
async def test_handler_exception_after_a_streamed_response_started_closes_and_truncates(caplog):
    """The client must be able to tell: no last chunk is written, the connection just closes."""

    async def handler(req, resp):
        resp.start(200, {"Content-Type": "text/plain"})
        resp.write(b"partial")
        await asyncio.sleep(0)
        raise RuntimeError("mid-stream")

    h = Harness(handler)
    c = h.connect()
    with caplog.at_level(logging.ERROR, logger="lambdalet.http"):
        c.send(get("/stream"), get("/never"))
        await until(lambda: c.transport.lost)
    assert c.answers(allow_partial=True) == []  # no complete response
    cut = partial_answer(c.transport.data)
    assert cut is not None and cut.status == 200 and cut.body == b"partial"


@aio
async def test_handler_exception_after_start_with_an_unfinished_body_closes(caplog, monkeypatch):
    monkeypatch.setattr(http11, "_LINGER_S", 0.05)

    async def handler(req, resp):
        resp.start(200)
        resp.write(b"early")
        raise RuntimeError("boom")

    h = Harness(handler)
    c = h.connect()
    with caplog.at_level(logging.ERROR, logger="lambdalet.http"):
        c.send(post("/x", b"abcdef")[:-3])
        await until(lambda: c.transport.lost)
    assert c.answers(allow_partial=True) == []


@aio
async def test_handler_returning_without_an_answer_is_a_500():
    async def handler(req, resp):
        return None

    h = Harness(handler)
    c = h.connect()
    c.send(get("/nothing"), get("/again"))
    await until(lambda: c.count() == 2)
    assert [a.status for a in c.answers()] == [500, 500] and not c.closed


@aio
async def test_handler_returning_after_start_gets_its_stream_ended():
    async def handler(req, resp):
        resp.start(200)
        resp.write(b"abc")  # no end(): the server ends the stream

    h = Harness(handler)
    c = h.connect()
    c.send(get("/"), get("/"))
    await until(lambda: c.count() == 2)
    assert [a.body for a in c.answers()] == [b"abc", b"abc"]


# -- response heads -----------------------------------------------------------------------------------


async def _answer_with(action: Callable[[Request, Response], None], request: bytes = b"") -> tuple[Conn, list]:
    caught: list[Exception] = []

    async def handler(req, resp):
        try:
            action(req, resp)
        except Exception as exc:
            caught.append(exc)
            assert not resp.started and c.transport.writes == []  # nothing went out
            resp.send(200, b"recovered")

    h = Harness(handler)
    c = h.connect()
    c.send(request or get("/"))
    await until(lambda: c.transport.writes)
    return c, caught


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nX-Injected: yes", "a\0b", "\n", "ok\r"])
@pytest.mark.parametrize("how", ["send", "start", "send-dict", "name"])
@aio
async def test_header_with_cr_lf_or_nul_is_refused_before_anything_is_written(value, how):
    def action(req, resp):
        if how == "send":
            resp.send(200, b"x", [("X-Ok", "fine"), ("X-Bad", value)])
        elif how == "send-dict":
            resp.send(200, b"x", {"X-Bad": value})
        elif how == "start":
            resp.start(200, [("X-Bad", value)])
        else:
            resp.send(200, b"x", [(f"X-{value}", "v")])

    c, caught = await _answer_with(action)
    assert len(caught) == 1 and isinstance(caught[0], InvalidHeader)
    [a] = c.answers()
    assert a.body == b"recovered" and a.header("x-injected") is None and a.header("x-bad") is None


@pytest.mark.parametrize("name", ["", "Bad Name", "X-A:", "X-\u00e9", "X(y)", "X-A: injected"])
@aio
async def test_header_with_a_bad_name_is_refused(name):
    """InvalidHeader's contract: CR, LF or NUL, 'or a bad name' (not an HTTP token)."""
    assert not valid_field(name, "v")
    c, caught = await _answer_with(lambda req, resp: resp.send(200, b"x", [(name, "v")]))
    assert len(caught) == 1 and isinstance(caught[0], InvalidHeader)
    assert c.answers()[0].body == b"recovered"


@pytest.mark.parametrize("value", ["a\x01b", "\x7f", "a\x0bb", "\x1b[31m"])
@aio
async def test_header_value_with_a_control_character_is_refused(value):
    """RFC 9110 §5.5: no CTL but HTAB in a field value; llhttp-based clients (Node.js among them) refuse
    the whole response over one."""
    assert not valid_field("X-A", value)
    c, caught = await _answer_with(lambda req, resp: resp.send(200, b"x", {"X-A": value}))
    assert len(caught) == 1 and isinstance(caught[0], InvalidHeader)
    assert c.answers()[0].body == b"recovered"


@aio
async def test_non_latin1_header_value_is_sent_as_utf8():
    c, caught = await _answer_with(lambda req, resp: resp.send(200, b"ok", {"X-Price": "5 €", "X-Plain": "a"}))
    assert caught == []
    assert "X-Price: 5 €\r\n".encode() in c.transport.data
    [a] = c.answers()
    assert a.header("x-price").encode("latin-1").decode("utf-8") == "5 €" and a.body == b"ok"


@aio
async def test_latin1_header_value_is_sent_as_latin1():
    c, _ = await _answer_with(lambda req, resp: resp.send(200, b"ok", {"X-Name": "José"}))
    assert b"X-Name: Jos\xe9\r\n" in c.transport.data


@pytest.mark.parametrize("status", [200, 201, 202, 204, 301, 302, 304, 307, 400, 401, 403, 404, 413, 418, 422,
                                    429, 431, 500, 502, 503, 504])
@aio
async def test_reason_phrases_are_the_standard_ones(status):
    expected = "I'm a teapot" if status == 418 else http.HTTPStatus(status).phrase
    c, _ = await _answer_with(lambda req, resp: resp.send(status))
    assert c.transport.data.startswith(f"HTTP/1.1 {status} {expected}\r\n".encode())
    [a] = c.answers()
    assert a.status == status and a.reason == expected.encode()


def test_a_few_reason_phrases_spelled_out():
    assert http11.REASONS[201] == "Created" and http11.REASONS[301] == "Moved Permanently"
    assert http11.REASONS[418] == "I'm a teapot" and http11.REASONS[431] == "Request Header Fields Too Large"
    assert http11.REASONS[422] in ("Unprocessable Content", "Unprocessable Entity")
    assert http11.REASONS[422] == http.HTTPStatus(422).phrase


@aio
async def test_unknown_status_gets_an_empty_reason():
    c, _ = await _answer_with(lambda req, resp: resp.send(299, b"odd"))
    assert c.transport.data.startswith(b"HTTP/1.1 299 \r\n")
    [a] = c.answers()
    assert (a.status, a.reason, a.body) == (299, b"", b"odd")


@pytest.mark.parametrize("status", [204, 304])
@aio
async def test_204_and_304_have_no_body(status):
    h = Harness(lambda req, resp: _send_async(resp, status, b"ignored"))
    c = h.connect()
    c.send(get("/a"), get("/b"))
    await until(lambda: len(c.transport.writes) == 2)
    first = c.transport.writes[0]
    assert first.endswith(b"\r\n\r\n") and b"ignored" not in c.transport.data
    assert (b"content-length" in first.lower()) == (status == 304)
    assert [a.status for a in c.answers()] == [status, status]


async def _send_async(resp: Response, status: int, body: bytes, headers=()) -> None:
    resp.send(status, body, headers)


@aio
async def test_head_response_has_the_length_but_no_body():
    h = Harness(lambda req, resp: _send_async(resp, 200, b"twelve bytes"))
    c = h.connect()
    c.send(get("/", method="HEAD"), get("/after"))
    await until(lambda: len(c.transport.writes) == 2)
    head, after = c.transport.writes
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 12\r\n" in head
    assert parse_answers(after)[0].body == b"twelve bytes"


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
@aio
async def test_streamed_answer_without_a_body_writes_no_chunks(method, status):
    async def handler(req, resp):
        resp.start(status, {"X-Streamed": "1"})
        resp.write(b"not on the wire")
        resp.end({"X-Trailer": "t"})

    h = Harness(handler)
    c = h.connect()
    c.send(get("/", method=method))
    await until(lambda: c.proto.in_flight == 0)
    head, _, rest = c.transport.data.partition(b"\r\n\r\n")
    assert rest == b"", rest
    if status in (204, 304):
        assert b"transfer-encoding" not in head.lower()  # RFC 9110 §8.6, RFC 9112 §6.1


@aio
async def test_streamed_response_is_valid_chunked_encoding_with_trailers():
    async def handler(req, resp):
        resp.start(200, [("Content-Type", "text/event-stream")])
        assert resp.started and resp.chunked and not resp.finished
        for part in (b"one", b"", b"two" * 1000, b"\r\n0\r\n\r\n"):
            resp.write(part)
            await resp.drain()
        resp.end({"X-Checksum": "abc", "X-Bad": "a\r\nb", "Bad Name": "x", "X-Euro": "€"})
        assert resp.finished
        resp.end()  # a second end() writes nothing

    h = Harness(handler)
    c = h.connect()
    c.send(get("/s"), get("/s"))
    await until(lambda: c.count() == 2)
    for a in c.answers():
        assert a.chunked and a.header("content-length") is None
        assert a.body == b"one" + b"two" * 1000 + b"\r\n0\r\n\r\n"
        assert a.trailers == {"x-checksum": b"abc", "x-euro": "€".encode()}  # invalid trailers are dropped


@aio
async def test_send_twice_is_refused():
    async def handler(req, resp):
        resp.send(200, b"first")
        with pytest.raises(RuntimeError):
            resp.send(200, b"second")
        with pytest.raises(RuntimeError):
            resp.start(200)

    h = Harness(handler)
    c = h.connect()
    c.send(get())
    await until(lambda: c.proto.in_flight == 0)
    assert [a.body for a in c.answers()] == [b"first"]


@aio
async def test_drain_waits_for_the_transport_to_take_the_data():
    order = []

    async def handler(req, resp):
        resp.start(200)
        resp.write(b"a")
        order.append("before drain")
        await resp.drain()
        order.append("after drain")
        resp.end()

    h = Harness(handler)
    c = h.connect()
    c.proto.pause_writing()
    c.send(get())
    await settle()
    assert order == ["before drain"]
    c.proto.resume_writing()
    await until(lambda: c.count())
    assert order == ["before drain", "after drain"]


# -- idle keep-alive and stalled bodies ---------------------------------------------------------------


@aio
async def test_idle_keep_alive_connection_is_closed_by_the_sweeper():
    h = Harness(keep_alive_s=0.2)
    c = h.connect()
    c.send(get("/"))
    await until(lambda: c.count())
    h.clock.advance(0.15)
    h.sweep()
    assert not c.closed
    h.clock.advance(0.1)
    h.sweep()
    assert c.closed
    await until(lambda: c.transport.lost)
    assert c.proto not in h.server.connections


@aio
async def test_a_connection_that_never_sends_is_closed():
    h = Harness(keep_alive_s=0.2)
    c = h.connect()
    h.clock.advance(0.21)
    h.sweep()
    assert c.closed and c.answers() == []


@aio
async def test_slow_loris_dribbling_a_head_is_closed_on_time():
    h = Harness(keep_alive_s=0.2)
    c = h.connect()
    data = get("/", [("X-Slow", "s" * 100)])
    start = h.clock.now
    for byte in range(len(data)):
        c.send(data[byte:byte + 1])
        h.clock.advance(0.01)
        h.sweep()
        if c.closed:
            break
    assert c.closed, "the dribbling client was never closed"
    assert 0.2 <= h.clock.now - start <= 0.21 + 1e-9
    assert c.answers() == [] and h.seen == []


@aio
async def test_long_running_handler_is_not_closed():
    gate = asyncio.Event()

    async def handler(req, resp):
        await gate.wait()
        resp.send(200, b"done")

    h = Harness(handler, keep_alive_s=0.2)
    c = h.connect()
    c.send(get("/long"))
    await settle()
    for _ in range(50):
        h.clock.advance(0.2)
        h.sweep()
    assert not c.closed
    gate.set()
    await until(lambda: c.count())
    h.clock.advance(0.15)  # idle from the answer on
    h.sweep()
    assert not c.closed
    h.clock.advance(0.1)
    h.sweep()
    assert c.closed


@aio
async def test_body_that_stops_arriving_is_closed():
    h = Harness(keep_alive_s=0.2)
    c = h.connect()
    data = post("/up", body_of(10_000))
    c.send(data[:5000])
    await settle()
    h.clock.advance(0.15)
    c.send(data[5000:6000])  # still coming
    h.clock.advance(0.15)
    h.sweep()
    assert not c.closed
    h.clock.advance(0.1)
    h.sweep()
    assert c.closed
    await until(lambda: c.transport.lost)
    assert c.answers() == []


@aio
async def test_body_paused_by_the_server_is_not_a_stalled_body():
    """The client is not stalling when the server stopped reading (a busy handler that has not asked for
    the body): the connection must not be closed as if the upload had stopped."""
    gate = asyncio.Event()

    async def handler(req, resp):
        await gate.wait()
        body = await req.read()
        resp.send(200, b"%d" % len(body))

    h = Harness(handler, keep_alive_s=0.2)
    c = h.connect()
    c.send(*pieces(post("/up", body_of(3 * MiB)), 64 * 1024))
    await settle()
    assert c.transport.paused
    h.clock.advance(5)
    h.sweep()
    assert not c.closed
    gate.set()
    await until(lambda: c.count())
    assert c.answers()[0].body == b"%d" % (3 * MiB)


@aio
async def test_drain_after_an_early_answer_stops_when_the_body_stalls():
    outcomes = []
    h = Harness(keep_alive_s=0.2)
    h.server.handler = _limited(h, 10, outcomes)
    c = h.connect()
    c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await until(lambda: c.count())
    h.clock.advance(0.3)
    h.sweep()
    assert c.closed


# -- the connection cap -----------------------------------------------------------------------------


@aio
async def test_connection_cap_refuses_with_503_and_accepts_again_after_a_close():
    h = Harness(max_connections=2)
    c1, c2 = h.connect(), h.connect()
    c3 = h.connect()
    assert not isinstance(c3.proto, HttpProtocol)
    assert c3.closed
    [a] = c3.answers()
    assert a.status == 503 and a.reason == b"Service Unavailable" and a.closes
    assert a.header("x-door") == "test" and h.errors.calls == [(503, "Too many open connections (at most 2)")]
    c1.send(get("/still-served"))
    await until(lambda: c1.count())
    await settle()  # c3's close completes: it never counted
    assert len(h.server.connections) == 2
    c2.transport.hang_up()
    assert len(h.server.connections) == 1
    c4 = h.connect()
    assert isinstance(c4.proto, HttpProtocol)
    c4.send(get("/new"))
    await until(lambda: c4.count())
    assert c4.answers()[0].status == 200


@aio
async def test_server_close_aborts_every_connection():
    gate = asyncio.Event()

    async def handler(req, resp):
        await gate.wait()

    h = Harness(handler)
    conns = [h.connect() for _ in range(3)]
    conns[0].send(get("/busy"))
    await settle()
    h.server.close()
    await settle()
    assert all(c.transport.aborted and c.transport.lost for c in conns)
    assert h.server.connections == set()


# -- the client going away ---------------------------------------------------------------------------


@aio
async def test_connection_lost_mid_body_gives_the_reader_a_connection_error(caplog):
    seen: list[str] = []
    tasks: list[asyncio.Task] = []

    async def handler(req, resp):
        tasks.append(asyncio.current_task())
        try:
            await req.read()
        except ConnectionError:
            seen.append("ConnectionError")
            await asyncio.sleep(3600)  # cleanup that awaits: cancelled
        except asyncio.CancelledError:
            seen.append("CancelledError")
            raise

    h = Harness(handler)
    c = h.connect()
    with caplog.at_level(logging.DEBUG):
        c.send(post("/x", body_of(1000))[:500])
        await settle()
        c.transport.hang_up()
        await settle()
    assert seen == ["ConnectionError"]
    assert tasks[0].done() and tasks[0].cancelled()
    assert c.proto not in h.server.connections
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@aio
async def test_connection_lost_mid_body_is_no_handler_error(caplog):
    """A handler that lets the ConnectionError of its read() through: the client went away, nothing
    is logged as an error and no error answer is made."""

    async def handler(req, resp):
        await req.read()
        resp.send(200)

    h = Harness(handler)
    c = h.connect()
    with caplog.at_level(logging.DEBUG):
        c.send(post("/x", body_of(1000))[:500])
        await settle()
        c.transport.hang_up()
        await settle()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert h.errors.calls == [] and c.proto._task is None and c.proto not in h.server.connections


@aio
async def test_connection_lost_cancels_a_handler_that_is_not_reading(caplog):
    cancelled = []

    async def handler(req, resp):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(req.path)
            raise

    h = Harness(handler)
    c = h.connect()
    with caplog.at_level(logging.DEBUG):
        c.send(get("/parked"))
        await settle()
        c.transport.hang_up()
        await settle()
    assert cancelled == ["/parked"] and c.proto._task is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@aio
async def test_connection_lost_ends_a_stream_with_a_connection_error():
    got = []

    async def handler(req, resp):
        try:
            async for chunk in req.stream():
                got.append(chunk)
        except ConnectionError:
            got.append("lost")

    h = Harness(handler)
    c = h.connect()
    c.send(post_chunked("/s", [b"abc", b"def"])[:-12])
    await settle()
    c.transport.hang_up()
    await settle()
    assert got[-1] == "lost" and b"".join(g for g in got if isinstance(g, bytes)).startswith(b"abc")


@aio
async def test_read_after_the_connection_was_lost_raises_connection_error():
    reqs = []
    gate = asyncio.Event()

    async def handler(req, resp):
        reqs.append(req)
        await gate.wait()

    h = Harness(handler)
    c = h.connect()
    c.send(post("/x", b"abcdef")[:-2])
    await settle()
    c.transport.hang_up()
    await settle()
    with pytest.raises(ConnectionError):
        await reqs[0].read()
    with pytest.raises(RuntimeError):
        reqs[0].body_now()


# -- a few plain units ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "ok"), [
    ("X-A", "v", True), ("x-a", "", True), ("X-A", "tab\there", True), ("!#$%&'*+-.^_`|~09az", "v", True),
    ("", "v", False), ("X A", "v", False), ("X:A", "v", False), ("X-A", "a\rb", False), ("X-A", "a\nb", False),
    ("X-A", "a\0b", False), ("X-\u00e9", "v", False), ("X-A", "€", True), ("X-A", "a\x01b", False),
    ("X-A", "\x7f", False),
])
def test_valid_field(name, value, ok):
    assert valid_field(name, value) is ok


def test_body_too_large_carries_its_size():
    exc = BodyTooLarge(1234)
    assert exc.size == 1234 and isinstance(exc, Exception)
    assert issubclass(InvalidHeader, ValueError)


def test_plain_error_and_closing_answer():
    server = HttpServer(lambda req, resp: None)
    body, headers = http11.plain_error(400, "Bad request")
    assert body == b"Bad request" and headers == [("Content-Type", "text/plain")]
    [a] = parse_answers(server.closing_answer(431, "too big"))
    assert (a.status, a.body, a.closes) == (431, b"too big", True)
    assert a.header("content-length") == "7"


# -- deferred answers (DEFER) and what one read answers going out in one write


class Parked:
    """A fast handler that parks GET /park (answered later by release()) and answers POST at once."""

    def __init__(self) -> None:
        self.parked: list[Response] = []
        self.lost = 0

    def fast(self, req: Request, resp: Response):
        if req.method == "GET" and req.path == "/park":
            resp.on_lost = self._lost
            self.parked.append(resp)
            return DEFER
        resp.send(202, b"ok", [("Content-Type", "text/plain")])
        return None

    def _lost(self, resp: Response) -> None:
        self.lost += 1

    def release(self, body: bytes = b"event") -> None:
        self.parked.pop(0).send(200, body, [("Content-Type", "text/plain")])


@aio
async def test_a_deferred_answer_is_sent_when_ready_and_the_next_request_waits_for_it():
    parked = Parked()
    h = Harness(fast=parked.fast)
    c = h.connect()
    c.send(get("/park"))
    assert c.transport.writes == [] and len(parked.parked) == 1
    c.send(post("/after", b"x"))  # (a client may pipeline behind it: it is answered in order)
    assert c.transport.writes == []
    parked.release()
    await settle()
    assert [(a.status, a.body) for a in c.answers()] == [(200, b"event"), (202, b"ok")]
    assert not c.closed


@aio
async def test_answers_before_a_deferred_one_go_out_with_it_in_one_write():
    parked = Parked()
    h = Harness(fast=parked.fast)
    c = h.connect()
    c.send(post("/response", b"r") + get("/park"))  # a runtime's /response and its next /next
    assert c.transport.writes == []  # the 202 waits for the event...
    parked.release()
    assert len(c.transport.writes) == 1  # ...and both leave in one segment
    assert [a.status for a in c.answers()] == [202, 200]


@aio
async def test_an_answer_with_nothing_deferred_behind_it_goes_out_at_once():
    parked = Parked()
    h = Harness(fast=parked.fast)
    c = h.connect()
    c.send(post("/response", b"r"))
    assert [a.status for a in c.answers()] == [202]
    c.send(post("/a", b"1") + post("/b", b"2"))  # two answers of one read: one write
    assert len(c.transport.writes) == 2 and [a.status for a in c.answers()] == [202, 202, 202]


@aio
async def test_a_client_gone_while_deferred_is_told_to_the_owner_and_nothing_is_written():
    parked = Parked()
    h = Harness(fast=parked.fast)
    c = h.connect()
    c.send(post("/response", b"r") + get("/park"))
    c.transport.hang_up()
    assert parked.lost == 1
    parked.release()  # the owner answers anyway: dropped
    assert c.transport.writes == [] and c.transport.late_writes == []


@aio
async def test_a_half_closed_client_still_gets_every_answer_then_the_connection_closes():
    """`printf 'GET ...' | nc -N` (shutdown after sending): the requests that arrived whole are answered,
    the last one says Connection: close, and only then is the connection closed."""
    parked = Parked()
    h = Harness(fast=parked.fast)
    c = h.connect()
    c.send(post("/response", b"r") + get("/park"))
    assert c.transport.protocol.eof_received() is True  # keep the transport open for the answers
    assert not c.transport.closing
    parked.release()
    await settle()
    answers = c.answers()
    assert [a.status for a in answers] == [202, 200]
    assert not answers[0].closes and answers[1].closes
    assert c.transport.closing


@aio
async def test_eof_with_nothing_in_flight_or_mid_request_closes():
    h = Harness()
    idle = h.connect()
    assert idle.transport.protocol.eof_received() is None
    partial = h.connect()
    partial.send(b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    assert partial.transport.protocol.eof_received() is None


# -- peeking at a body (the front door's signature check), leaving it for the handler ------------------


@pytest.mark.parametrize("size", [0, 10, PAUSE_AT + 1])
@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
@aio
async def test_peek_leaves_the_body_for_read(size, encoding):
    peeked = []

    async def handler(req, resp):
        peeked.append(await req.peek(4 * MiB))
        body = await req.read()
        resp.send(200, b"%d %d" % (len(peeked[0]), len(body)))

    h = Harness(handler)
    c = h.connect()
    body = body_of(size)
    data = post("/p", body) if encoding == "content-length" else post_chunked("/p", pieces(body, 4096))
    for p in pieces(data, 64 * 1024):  # arriving in pieces: the slow handler peeks while it comes
        c.send(p)
        await asyncio.sleep(0)
    await until(lambda: c.count(), timeout=10)
    assert c.answers()[0].body == b"%d %d" % (size, size) and peeked == [body]


@aio
async def test_peek_past_its_limit_says_none_and_peek_now_leaves_the_body():
    async def handler(req, resp):
        resp.send(200, b"none" if await req.peek(10) is None else b"some")

    h = Harness(handler)
    c = h.connect()
    c.send(post("/big", b"x" * 11)[:-1])  # declared too large: known before it has arrived
    await until(lambda: c.count())
    assert c.answers()[0].body == b"none"

    def fast(req, resp):
        first = req.peek_now()
        resp.send(200, first + b"|" + req.body_now())

    h = Harness(fast=fast)
    c = h.connect()
    c.send(post_chunked("/f", [b"ab", b"cd"]))
    await until(lambda: c.count())
    assert c.answers()[0].body == b"abcd|abcd"
