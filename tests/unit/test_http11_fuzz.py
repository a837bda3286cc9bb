"""Property tests (hypothesis) for http11 and for the Runtime API server on top of it, through the fake
transport of test_http11_protocol: no sockets, a fresh event loop per example.

http11: whatever bytes arrive, however they are split, data_received never raises, everything written
parses as HTTP/1.1, complete requests are answered in order (or the connection closes after one error
answer), and an unread body stays buffered to about _PAUSE_AT plus one read.

Runtime API: random /next, /response, /error and /init/error requests with random ids, bodies and
headers, against a model of Lambda's runtime states; every answer is one Lambda gives.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import string
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http11_protocol import (
    PAUSE_AT,
    Conn,
    Harness,
    Request,
    Response,
    parse_answers,
    run,
    settle,
    until,
)

from lambdalet.http11 import InvalidHeader, valid_field
from lambdalet.invocation import Invocation, Outcome, error_document
from lambdalet.runtime_api import server as runtime_server
from lambdalet.runtime_api.server import RuntimeApiServer
from lambdalet.runtime_api.session import RuntimeSession, State, platform_error_type

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEAVY = settings(FUZZ, max_examples=40)

TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# What a field value may hold (RFC 9110 §5.5): HTAB, SP, VCHAR and obs-text.
VALUE_CHARS = "\t" + "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0x80, 0x100)))
FRAMING = {"content-length", "transfer-encoding", "connection", "expect", "upgrade", "host", "te", "trailer",
           "keep-alive", "proxy-connection"}

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
names = tokens.filter(lambda n: n.lower() not in FRAMING)
values = st.text(VALUE_CHARS, max_size=16).map(lambda v: v.strip(" \t"))
path_chars = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/"


def _pattern(size: int) -> bytes:
    return (b"0123456789abcdef\r\n\x00\xff" * (size // 20 + 1))[:size]


# Random bytes are costly to draw one by one: long bodies are a pattern of a random length.
payloads = st.one_of(st.binary(max_size=40), st.integers(0, 5000).map(_pattern))


def _expected_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k.lower(), []).append(v)
    return {k: ", ".join(v) for k, v in out.items()}


@dataclass
class Req:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    encoding: str  # "none", "length" or "chunked"
    chunk_cuts: list[int] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    def head_pairs(self) -> list[tuple[str, str]]:
        pairs = [("Host", "fuzz"), *self.headers]
        if self.encoding == "length":
            pairs.append(("Content-Length", str(len(self.body))))
        elif self.encoding == "chunked":
            pairs.append(("Transfer-Encoding", "chunked"))
        if self.close:
            pairs.append(("Connection", "close"))
        return pairs

    def wire(self) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.head_pairs()) + "\r\n"
        out = head.encode("latin-1")
        if self.encoding == "length":
            out += self.body
        elif self.encoding == "chunked":
            cuts = sorted({0, len(self.body), *(c % (len(self.body) + 1) for c in self.chunk_cuts)})
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    out += b"%x\r\n%b\r\n" % (b - a, self.body[a:b])
            out += b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.trailers).encode("latin-1") + b"\r\n"
        return out

    def answer(self) -> bytes:
        return b"%s %s %d" % (self.method.encode(), self.path.encode(), len(self.body))


# (strategies built once: building them inside a composite costs more than the test itself)
_encodings = st.sampled_from(["none", "length", "chunked"])
_bodiless_methods = st.sampled_from(["GET", "DELETE", "OPTIONS"])
_body_methods = st.sampled_from(["POST", "PUT", "PATCH"])
_paths = st.text(path_chars, max_size=20)
_queries = st.text(string.ascii_letters + string.digits + "=&%/?+", max_size=12)
_header_lists = st.lists(st.tuples(names, values), max_size=5)
# (a trailer name twice: the last value is kept, unlike a header's, which are joined)
_trailer_lists = st.lists(st.tuples(names, values), max_size=3, unique_by=lambda t: t[0].lower())
_chunk_cuts = st.lists(st.integers(0, 5000), max_size=6)


@st.composite
def requests(draw, close: bool = False) -> Req:
    encoding = draw(_encodings)
    method = draw(_bodiless_methods if encoding == "none" else _body_methods)
    return Req(
        method=method,
        path="/" + draw(_paths),
        query=draw(_queries),
        headers=draw(_header_lists),
        body=b"" if encoding == "none" else draw(payloads),
        encoding=encoding,
        chunk_cuts=draw(_chunk_cuts),
        trailers=draw(_trailer_lists) if encoding == "chunked" else [],
        close=close,
    )


_request_lists = st.lists(requests(), min_size=1, max_size=4)


@st.composite
def request_lists(draw) -> list[Req]:
    reqs = draw(_request_lists)
    if draw(st.booleans()):
        reqs[-1].close = True
    return reqs


def split(data: bytes, fractions: list[float]) -> list[bytes]:
    cuts = sorted({0, len(data), *(int(f * len(data)) for f in fractions)})
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


fractions = st.lists(st.floats(0, 1), max_size=10)
few_fractions = st.lists(st.floats(0, 1), max_size=3)


async def _exchange(pieces: list[bytes], h: Harness | None = None, *,
                    expect: int | None = None) -> tuple[Harness, Conn]:
    """Send pieces on one connection (a loop iteration or none between them) and let it settle."""
    h = h or Harness()
    c = h.connect()
    for i, p in enumerate(pieces):
        c.send(p)
        if i % 2:
            await asyncio.sleep(0)
    if expect is not None:
        await until(lambda: c.count() >= expect or c.transport.lost, timeout=1.0, what=f"{expect} answers")
    await settle(10)
    return h, c


# -- http11 ---------------------------------------------------------------------------------------------


@FUZZ
@given(reqs=request_lists(), cuts=fractions)
def test_valid_requests_are_answered_the_same_however_they_are_split(reqs, cuts):
    data = b"".join(r.wire() for r in reqs)

    async def scenario():
        h, c = await _exchange(split(data, cuts), expect=len(reqs))
        answers = c.answers()
        assert [a.status for a in answers] == [200] * len(reqs)
        assert [a.body for a in answers] == [r.answer() for r in reqs]
        assert [a.closes for a in answers] == [r.close for r in reqs]
        assert c.transport.lost == reqs[-1].close
        for seen, r in zip(h.seen, reqs, strict=True):
            assert (seen.method, seen.raw_path, seen.query, seen.body) == (r.method, r.path, r.query, r.body)
            assert seen.headers == _expected_headers(r.head_pairs())
            assert seen.trailers == _expected_headers(r.trailers)
        assert h.errors.calls == [] and c.transport.late_writes == []
        assert not c.transport.paused or c.transport.lost

    run(scenario())


def check_answers_follow_requests(h: Harness, c: Conn) -> None:
    """Each request handled is answered 200, in order; after them at most one error answer, then the
    connection closes. Nothing is written after the close."""
    answers = c.answers()
    handled = len(h.seen)
    assert [a.status for a in answers[:handled]] == [200] * handled
    assert [a.body for a in answers[:handled]] == [b"%s %s %d" % (s.method.encode(), s.raw_path.encode(),
                                                                  len(s.body)) for s in h.seen]
    extra = answers[handled:]
    assert len(extra) <= 1, answers
    if extra:
        assert extra[0].status in (400, 431) and extra[0].closes and c.closed
        assert [call[0] for call in h.errors.calls] == [extra[0].status]
    if c.closed:
        assert answers and answers[-1].closes
    assert c.transport.late_writes == []


@FUZZ
@given(prefix=st.lists(requests(), max_size=2), junk=st.binary(max_size=400), cuts=fractions)
def test_random_bytes_never_break_the_protocol(prefix, junk, cuts):
    data = b"".join(r.wire() for r in prefix) + junk

    async def scenario():
        h, c = await _exchange(split(data, cuts), Harness(max_head_bytes=512))
        check_answers_follow_requests(h, c)
        assert len(h.seen) >= len(prefix)
        assert [s.body for s in h.seen[:len(prefix)]] == [r.body for r in prefix]

    run(scenario())


_methods = st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "get", "G\x00T", "CONNECT", "PRI", "M-SEARCH"])


@FUZZ
@given(method=_methods, target=st.text(string.printable + "\x00\x80\xff", max_size=30),
       version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x", ""]),
       lines=st.lists(st.text(st.characters(codec="latin-1"), max_size=40), max_size=5),
       body=st.binary(max_size=50), cuts=fractions)
def test_mangled_request_lines_and_headers(method, target, version, lines, body, cuts):
    data = f"{method} {target} {version}\r\n".encode("latin-1")
    data += "".join(f"{line}\r\n" for line in lines).encode("latin-1") + b"\r\n" + body

    async def scenario():
        h, c = await _exchange(split(data, cuts), Harness(max_head_bytes=1024))
        if any(s.method == "HEAD" for s in h.seen):
            return  # a HEAD answer has no body: the client parser must be told, which httptools' is not
        check_answers_follow_requests(h, c)

    run(scenario())


def _header_ok(name: str, value: str) -> bool:
    return all(ch in TOKEN_CHARS for ch in name) and bool(name) and all(ch in VALUE_CHARS for ch in value)


@FUZZ
# (a ':' in a name only moves the split: "a:b: c" is the header "a" = "b: c", a valid request)
@given(name=st.text(st.characters(codec="latin-1", exclude_characters="\r\n:"), min_size=1, max_size=10)
       .filter(lambda n: n.lower() not in FRAMING),
       value=st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=20))
def test_random_request_header_is_taken_or_refused_with_400(name, value):
    value = value.rstrip(" \t")  # trailing OWS: see test_header_values_lose_their_surrounding_whitespace
    data = f"GET / HTTP/1.1\r\nHost: fuzz\r\n{name}: {value}\r\n\r\n".encode("latin-1")

    async def scenario():
        h, c = await _exchange([data])
        [a] = c.answers()
        if a.status == 200:
            assert h.seen[0].headers[name.lower()] == value.lstrip(" \t")
            assert _header_ok(name, value)
        else:
            assert a.status == 400 and c.closed and not _header_ok(name, value)

    run(scenario())


@FUZZ
@given(name=st.text(max_size=12).filter(lambda n: n.lower() not in FRAMING), value=st.text(max_size=24),
       streamed=st.booleans())
def test_random_response_header_is_sent_intact_or_refused(name, value, streamed):
    """A header valid_field() accepts goes out as sent (UTF-8 when it is not latin-1); any other is
    refused with InvalidHeader before a byte is written. Either way the client can parse the answer."""
    outcome: list[str] = []

    async def handler(req: Request, resp: Response) -> None:
        try:
            if streamed:
                resp.start(200, [(name, value)])
                resp.write(b"body")
                resp.end({name: value})
            else:
                resp.send(200, b"body", [(name, value)])
            outcome.append("sent")
        except InvalidHeader:
            assert not resp.started and not resp.finished
            outcome.append("refused")
            resp.send(500, b"refused")

    async def scenario():
        h = Harness(handler)
        c = h.connect()
        c.send(b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n")
        await until(lambda: outcome)
        await settle(5)
        [a] = c.answers()
        if not valid_field(name, value):
            assert outcome == ["refused"] and (a.status, a.body) == (500, b"refused")
            return
        assert outcome == ["sent"] and (a.status, a.body) == (200, b"body")
        encoding = "latin-1" if _latin1(name + value) else "utf-8"
        [(got_name, got_value)] = [(k, v) for k, v in a.headers if k not in ("content-length", "transfer-encoding")]
        assert got_name == name.lower()
        assert got_value.decode(encoding) == value.lstrip(" \t")
        if streamed:
            assert a.trailers[name.lower()].decode("utf-8") == value.lstrip(" \t")

    run(scenario())


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


@HEAVY
@given(size=st.integers(0, 3 * PAUSE_AT), read=st.integers(1024, 256 * 1024), chunked=st.booleans(),
       chunk=st.integers(100, 300_000))
def test_unread_body_is_buffered_to_about_one_mib_and_one_read(size, read, chunked, chunk):
    """A reader that has not asked holds at most _PAUSE_AT plus one read; once it reads, the whole body
    arrives and the connection goes on reading (the next request is answered)."""
    body = (b"abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1))[:size]
    if chunked:
        wire = b"POST /up HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n"
        wire += b"".join(b"%x\r\n%b\r\n" % (len(body[i:i + chunk]), body[i:i + chunk])
                         for i in range(0, size, chunk)) + b"0\r\n\r\n"
    else:
        wire = b"POST /up HTTP/1.1\r\nHost: fuzz\r\nContent-Length: %d\r\n\r\n" % size + body
    wire += b"GET /next HTTP/1.1\r\nHost: fuzz\r\n\r\n"

    async def scenario():
        gate = asyncio.Event()
        reqs: list[Request] = []
        got: list[int] = []

        async def handler(req, resp):
            reqs.append(req)
            if req.path == "/up":
                await gate.wait()
            got.append(len(await req.read()))
            resp.send(200)

        h = Harness(handler)
        c = h.connect()
        for i in range(0, len(wire), read):
            c.send(wire[i:i + read])
            await asyncio.sleep(0)
            if reqs:
                assert reqs[0]._size <= PAUSE_AT + read
        await settle(5)
        if reqs:
            assert reqs[0]._size <= PAUSE_AT + read
        gate.set()
        await until(lambda: c.count() == 2, what="both answers")
        assert got == [size, 0]
        await settle(5)
        assert not c.transport.paused and not c.closed

    run(scenario())


# -- the Runtime API ------------------------------------------------------------------------------------

SMALL_MAX = 1000  # MAX_PAYLOAD for these examples: the 413 is reached without 6 MB bodies
PREFIX = "/2018-06-01/runtime/"
VOCABULARY = {
    200: {None}, 202: {None}, 400: {"InvalidRequestID", "InvalidFunctionResponseMode"},
    403: {"InvalidStateTransition"}, 404: {"NotFound"}, 413: {"RequestEntityTooLarge"},
}


class Environment:
    """The execution environment's side: what the session tells it, and invocations to hand out."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.init_errors: list[tuple[str, bytes]] = []
        self.outcomes: dict[str, Outcome] = {}
        self.streams: list[asyncio.Task] = []

    def runtime_ready(self) -> None:
        self.events.append("ready")

    def invocation_finished(self) -> None:
        self.events.append("finished")

    def init_error(self, error_type: str, body: bytes) -> None:
        self.init_errors.append((error_type, body))

    def invocation(self, n: int) -> Invocation:
        inv = Invocation(payload=json.dumps({"n": n}).encode(), invoked_arn="arn:aws:lambda:us-east-1:0:function:f")

        def done(outcome: Outcome) -> None:
            self.outcomes[inv.request_id] = outcome
            if outcome.stream is not None:  # a caller reading the stream
                self.streams.append(asyncio.get_running_loop().create_task(_consume(outcome.stream)))

        inv.on_outcome = done
        return inv


async def _consume(stream) -> list[bytes]:
    return [chunk async for chunk in stream.chunks()]


ids = st.one_of(st.sampled_from(["current", "current", "current", "stale", ""]),
                st.text(string.ascii_letters + string.digits + "-%/", min_size=1, max_size=40))
error_headers = st.one_of(st.none(), st.sampled_from(["Runtime.ImportModuleError", "Function.MyError",
                                                      "Function.x", "Unhandled"]), values)
bodies = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"  ", b"\n"]),
                   st.integers(SMALL_MAX - 3, SMALL_MAX + 3).map(_pattern))
noise = st.lists(st.tuples(names.filter(lambda n: not n.lower().startswith("lambda-runtime")), values), max_size=2)

actions = st.one_of(
    st.tuples(st.just("next"), few_fractions),
    st.tuples(st.just("assign"), few_fractions),
    st.tuples(st.just("hang up"), few_fractions),
    st.tuples(st.just("response"), few_fractions, ids, bodies,
              st.sampled_from([None, "text/plain", "application/json"]), noise),
    st.tuples(st.just("stream"), few_fractions, ids, st.lists(st.binary(min_size=1, max_size=20), max_size=5),
              st.sampled_from(["streaming", "STREAMING", "buffered", "bogus"]), error_headers),
    st.tuples(st.just("error"), few_fractions, ids, error_headers, bodies, noise),
    st.tuples(st.just("init error"), few_fractions, error_headers, bodies, noise),
    st.tuples(st.just("other"), few_fractions, st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
              st.sampled_from(["/2018-06-01/ping", PREFIX + "invocation/next", PREFIX + "init/error",
                               PREFIX + "invocation/abc/response", PREFIX + "invocation/abc/error", PREFIX + "x",
                               "/", "/2018-06-01/runtime", "/2019-01-01/runtime/invocation/next"])),
)


def _post(path: str, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def _error_type(answer) -> str | None:
    if answer.status in (200, 202):
        return None
    return json.loads(answer.body)["errorType"]


@FUZZ
@given(script=st.lists(actions, max_size=20))
def test_runtime_api_answers_like_lambda(script):
    with mock.patch.object(runtime_server, "MAX_PAYLOAD", SMALL_MAX):
        run(_runtime_scenario(script))


async def _runtime_scenario(script) -> None:
    env = Environment()
    session = RuntimeSession(env)
    api = RuntimeApiServer(session)
    conn = Conn(api.http)
    parked = False  # a /next waits on conn
    used: list[str] = []
    n = 0
    state = State.STARTED  # the model
    current: Invocation | None = None

    async def ask(data: bytes, split_at: list[float]):
        """Send one request and return its answer (None when it waits: a parked /next)."""
        before = conn.count()
        for piece in split(data, split_at):
            conn.send(piece)
            await asyncio.sleep(0)
        await settle(6)
        answers = conn.answers()
        assert len(answers) <= before + 1
        return answers[before] if len(answers) > before else None

    def rid(choice: str) -> str:
        if choice == "current":
            return current.request_id if current is not None else "no-current"
        if choice == "stale":
            return used[0] if used else "never-used"
        return choice

    def path_id(request_id: str) -> str:
        return request_id.replace("%", "%25").replace("/", "%2F")

    def expected_post(request_id: str) -> tuple[int, str | None]:
        if current is None or request_id != current.request_id:
            return 400, "InvalidRequestID"
        if state is not State.RUNNING:
            return 403, "InvalidStateTransition"
        return 202, None

    for step, (kind, split_at, *args) in enumerate(script):
        action = script[step]
        if parked and kind not in ("assign", "hang up"):
            kind = "assign"  # the runtime waits on its /next: nothing else comes on its connection
        if kind == "next":
            answer = await ask(b"GET " + PREFIX.encode() + b"invocation/next HTTP/1.1\r\nHost: x\r\n\r\n", split_at)
            if state is State.INIT_ERROR:
                assert (answer.status, _error_type(answer)) == (403, "InvalidStateTransition")
            elif state is State.RUNNING:
                assert answer.status == 200 and answer.header("lambda-runtime-aws-request-id") == current.request_id
                assert answer.body == current.payload
            else:
                assert answer is None and session.parked
                if state is State.RESPONSE_SENT:
                    current = None
                state, parked = State.READY, True
        elif kind == "assign":
            if state is not State.READY:
                continue
            n += 1
            current = env.invocation(n)
            used.append(current.request_id)
            before = conn.count()
            session.assign(current)
            state = State.RUNNING
            if parked:  # answered right away, synchronously
                answers = conn.answers()
                assert len(answers) == before + 1
                a = answers[-1]
                assert a.status == 200 and a.header("lambda-runtime-aws-request-id") == current.request_id
                assert a.header("lambda-runtime-invoked-function-arn") == current.invoked_arn
                assert a.header("lambda-runtime-deadline-ms") is not None and a.body == current.payload
                parked = False
        elif kind == "hang up":
            conn.transport.hang_up()
            await settle(3)
            assert not session.parked
            conn, parked = Conn(api.http), False
        elif kind == "response":
            choice, body, content_type, extra = args
            request_id = rid(choice)
            headers = [*extra] + ([("Content-Type", content_type)] if content_type else [])
            answer = await ask(_post(f"{PREFIX}invocation/{path_id(request_id)}/response", body, headers), split_at)
            status, error_type = expected_post(request_id)
            if status == 202 and len(body) > SMALL_MAX:
                status, error_type = 413, "RequestEntityTooLarge"
            assert (answer.status, _error_type(answer)) == (status, error_type), (action, answer)
            if status == 202:  # a valid response for the current id is always accepted
                outcome = env.outcomes[request_id]
                assert outcome.payload == body and outcome.function_error is None
                assert outcome.content_type == (content_type or "application/json")
            if status in (202, 413):
                if status == 413:
                    assert env.outcomes[request_id].error_type == "Function.ResponseSizeTooLarge"
                state = State.RESPONSE_SENT
        elif kind == "stream":
            choice, chunks, mode, trailer_error = args
            request_id = rid(choice)
            trailers = [("Lambda-Runtime-Function-Error-Type", trailer_error)] if trailer_error else []
            head = (f"POST {PREFIX}invocation/{path_id(request_id)}/response HTTP/1.1\r\nHost: x\r\n"
                    f"Lambda-Runtime-Function-Response-Mode: {mode}\r\nTransfer-Encoding: chunked\r\n\r\n")
            data = head.encode("latin-1") + b"".join(b"%x\r\n%b\r\n" % (len(ch), ch) for ch in chunks)
            data += b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in trailers).encode("latin-1") + b"\r\n"
            answer = await ask(data, split_at)
            status, error_type = expected_post(request_id)
            if status == 202 and mode.lower() != "streaming":
                status, error_type = 400, "InvalidFunctionResponseMode"
            assert (answer.status, _error_type(answer)) == (status, error_type), (action, answer)
            if status == 202:
                stream = env.outcomes[request_id].stream
                await until(lambda s=stream: s.closed)
                assert stream.error_type == (trailer_error or None)
                assert b"".join(await env.streams[-1]) == b"".join(chunks)  # (small pieces may be gathered)
            if status in (202, 400) and error_type != "InvalidRequestID":
                state = State.RESPONSE_SENT
        elif kind == "error":
            choice, header, body, extra = args
            request_id = rid(choice)
            headers = [*extra] + ([("Lambda-Runtime-Function-Error-Type", header)] if header is not None else [])
            answer = await ask(_post(f"{PREFIX}invocation/{path_id(request_id)}/error", body, headers), split_at)
            status, error_type = expected_post(request_id)
            assert (answer.status, _error_type(answer)) == (status, error_type), (action, answer)
            if status == 202:
                outcome = env.outcomes[request_id]
                assert outcome.function_error == "Unhandled"
                assert outcome.error_type == platform_error_type(header)
                kept = body if len(body) <= SMALL_MAX else b""
                if kept.strip():
                    assert outcome.payload == kept
                else:
                    doc = header or platform_error_type(header)
                    assert outcome.payload == error_document(doc, doc)
                state = State.RESPONSE_SENT
        elif kind == "init error":
            header, body, extra = args
            headers = [*extra] + ([("Lambda-Runtime-Function-Error-Type", header)] if header is not None else [])
            answer = await ask(_post(f"{PREFIX}init/error", body, headers), split_at)
            if state is State.STARTED:
                assert answer.status == 202
                error_type, payload = env.init_errors[-1]
                assert error_type == platform_error_type(header)
                kept = body if len(body) <= SMALL_MAX else b""
                assert payload == (kept if kept.strip() else
                                   error_document(platform_error_type(header), "Unknown application error occurred"))
                state = State.INIT_ERROR
            else:
                assert (answer.status, _error_type(answer)) == (403, "InvalidStateTransition")
        else:
            method, path = args
            body = b"" if method == "GET" else b"{}"
            data = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            known = {("GET", PREFIX + "invocation/next"), ("POST", PREFIX + "init/error"),
                     ("POST", PREFIX + "invocation/abc/response"), ("POST", PREFIX + "invocation/abc/error")}
            if (method, path) in known:
                continue  # the scripted actions cover these
            answer = await ask(data, split_at)
            if path == "/2018-06-01/ping":
                assert (answer.status, answer.body) == (200, b"pong")
            else:
                assert (answer.status, _error_type(answer)) == (404, "NotFound")
        assert session.state is state, (action, session.state, state)
        for a in conn.answers():
            assert a.status in VOCABULARY and _error_type(a) in VOCABULARY[a.status] | {None}
            assert a.header("content-type") == "application/json" or a.body == b"pong"
    for task in env.streams:
        task.cancel()
    api.close()
    await settle(3)
    assert api.http.connections == set()


def test_httptools_response_parser_reads_what_the_harness_expects():
    """The client side of these tests: httptools' response parser, on answers in the shapes http11 sends."""
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 299 \r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    answers = parse_answers(data)
    assert [(a.status, a.body) for a in answers] == [(200, b"ok"), (299, b"abc"), (204, b""), (400, b"")]
    assert answers[1].trailers == {"x-t": b"1"} and answers[3].closes
    try:
        parse_answers(data + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except httptools.HttpParserError:
        pass  # nothing may follow an answer that closes the connection
    else:
        raise AssertionError("data after Connection: close was accepted")


def test_atheris_entry_point_runs_a_short_session(tmp_path):
    """fuzz_http11_atheris.py, the coverage-guided fuzzer, for a few hundred inputs (when installed)."""
    pytest.importorskip("atheris")
    script = Path(__file__).with_name("fuzz_http11_atheris.py")
    proc = subprocess.run([sys.executable, str(script), "-atheris_runs=400", "-max_len=2048", "-seed=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr or "runs in" in proc.stderr, proc.stderr[-2000:]
