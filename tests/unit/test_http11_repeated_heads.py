"""http11's repeated heads: a request whose head repeats, byte for byte, one seen whole before on the same
connection is taken without the parser, and must come out exactly as the parser would have made it.

Driven through the fake transport of test_http11_protocol; a parser wrapper counts what reaches llhttp, so
that each test also shows whether the replay happened (or, for the traps, did not).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http11_fuzz import _expected_headers, requests
from test_http11_protocol import Harness, aio, get, post, settle, until

from lambdalet import http11


class CountingParser:
    """httptools' parser, counting the bytes fed to it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.fed = 0

    def feed_data(self, data) -> None:
        self.fed += len(data)
        self.inner.feed_data(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def counted(c) -> CountingParser:
    c.proto.parser = CountingParser(c.proto.parser)
    return c.proto.parser


def seen(h: Harness) -> list[tuple]:
    return [(s.method, s.path, s.raw_path, s.query, s.headers, s.body) for s in h.seen]


@aio
async def test_a_repeated_get_is_taken_without_the_parser_and_comes_out_the_same():
    h = Harness()
    c = h.connect()
    parser = counted(c)
    req = get("/a%20b?x=1", [("X-One", "1"), ("X-Two", "two ")])
    for n in (1, 2, 3):
        c.send(req)
        await until(lambda n=n: len(h.seen) == n)
    assert parser.fed == len(req)  # only the first went through llhttp
    assert len(set(map(repr, seen(h)))) == 1
    assert seen(h)[0] == ("GET", "/a b", "/a%20b", "x=1", {"host": "test", "x-one": "1", "x-two": "two"}, b"")
    assert [a.status for a in c.answers()] == [200, 200, 200]


@aio
async def test_a_repeated_post_brings_its_body_and_a_cut_body_goes_to_the_parser():
    h = Harness()
    c = h.connect()
    parser = counted(c)
    req = post("/p", b"0123456789", [("Content-Type", "application/json")])
    c.send(req)
    c.send(req + req)  # two repeats in one read
    await until(lambda: len(h.seen) == 3)
    assert parser.fed == len(req)
    c.send(req[:-4])  # the body is cut: parsed as it comes
    c.send(req[-4:])
    await until(lambda: len(h.seen) == 4)
    assert parser.fed == 2 * len(req)
    assert [s.body for s in h.seen] == [b"0123456789"] * 4
    assert len(c.answers()) == 4


async def _runtime_after_its_first_next():
    """A connection that has sent a runtime's GET /next (taken): (harness, client, parser counter, the /next)."""
    h = Harness()
    c = h.connect()
    parser = counted(c)
    nxt = get("/2018-06-01/runtime/invocation/next")
    c.send(nxt)
    await until(lambda: len(h.seen) == 1)
    return h, c, parser, nxt


@aio
async def test_a_runtimes_response_and_its_repeated_next_are_split_where_they_meet():
    h, c, parser, nxt = await _runtime_after_its_first_next()
    response = post("/2018-06-01/runtime/invocation/abc/response", b'{"ok":1}')
    c.send(response + nxt)
    await until(lambda: len(h.seen) == 3)
    assert parser.fed == len(nxt) + len(response)  # the /next went around the parser
    assert [(s.method, s.path, s.body) for s in h.seen] == [
        ("GET", "/2018-06-01/runtime/invocation/next", b""),
        ("POST", "/2018-06-01/runtime/invocation/abc/response", b'{"ok":1}'),
        ("GET", "/2018-06-01/runtime/invocation/next", b"")]


@aio
async def test_a_body_that_ends_with_a_remembered_head_is_a_body():
    h = Harness()
    c = h.connect()
    nxt = get("/next")
    c.send(nxt)
    await until(lambda: len(h.seen) == 1)
    # the body's last bytes are the remembered head; its Content-Length says they are the body
    trap = post("/p", b"xx" + nxt)
    c.send(trap)
    await until(lambda: len(h.seen) == 2)
    await settle()
    assert [(s.method, s.path, s.body) for s in h.seen] == [("GET", "/next", b""), ("POST", "/p", b"xx" + nxt)]
    # and when such a body is split so that the head's bytes end one read, they are still body
    c.send(trap[:len(trap) - len(nxt) - 1], trap[len(trap) - len(nxt) - 1:])
    await until(lambda: len(h.seen) == 3)
    await settle()
    assert len(h.seen) == 3 and h.seen[2].body == b"xx" + nxt


@aio
async def test_heads_that_are_not_exactly_one_request_are_not_remembered():
    h = Harness()
    c = h.connect()
    c.send(get("/a") + b"\r\n")  # a stray line end after it: where the head ends is not len - body
    c.send(get("/b", version="1.0"))  # HTTP/1.0: closes after
    await until(lambda: len(h.seen) == 2)
    assert c.proto._memo == {}
    h2 = Harness()
    c2 = h2.connect()
    c2.send(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    c2.send(b"GET /d HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n")
    await until(lambda: len(h2.seen) == 2)
    assert c2.proto._memo == {}


@aio
async def test_a_client_whose_heads_never_repeat_stops_being_remembered():
    h = Harness()
    c = h.connect()
    for i in range(http11._MEMO_BUDGET + 1):
        c.send(get(f"/{i}"))
        await until(lambda n=i + 1: len(h.seen) == n)
    assert c.proto._memo is None
    assert len(c.answers()) == http11._MEMO_BUDGET + 1


@aio
async def test_remembered_heads_are_few_and_the_first_ones_stay():
    h = Harness()
    c = h.connect()
    first = get("/first")
    c.send(first)
    for i in range(6):
        c.send(get(f"/{i}"))
        c.send(first)  # a hit: the budget is renewed
    await until(lambda: len(h.seen) == 13)
    assert len(c.proto._memo) == http11._MEMO_ENTRIES and first in c.proto._memo


@aio
async def test_too_many_trailers_are_refused():
    h = Harness()
    c = h.connect()
    trailers = b"".join(b"X-T: %d\r\n" % i for i in range(1500))
    c.send(b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n")
    for i in range(0, len(trailers), 4000):
        c.send(trailers[i:i + 4000])
    await until(lambda: c.closed)
    assert [a.status for a in c.answers()] == [431] and h.seen == []


_pool = st.lists(requests(), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=_pool, picks=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=10))
def test_requests_drawn_from_a_few_come_out_as_the_parser_makes_them(pool, picks):
    """Requests repeated from a small pool, each sent alone or glued to the next one, on one connection:
    every one is answered and seen exactly as sent, whichever way it was taken."""
    sent = [pool[i % len(pool)] for i, _ in picks]
    reads: list[bytes] = []
    for r, (_, glue) in zip(sent, picks, strict=True):
        if glue and reads:
            reads[-1] += r.wire()
        else:
            reads.append(r.wire())

    async def scenario():
        h = Harness()
        c = h.connect()
        for data in reads:
            c.send(data)
            await asyncio.sleep(0)
        await until(lambda: len(c.answers()) >= len(sent), timeout=2.0, what="answers")
        assert [a.status for a in c.answers()] == [200] * len(sent)
        for s, r in zip(h.seen, sent, strict=True):
            assert (s.method, s.raw_path, s.query, s.body) == (r.method, r.path, r.query, r.body)
            assert s.headers == _expected_headers(r.head_pairs())
            assert s.trailers == _expected_headers(r.trailers)

    asyncio.run(scenario())


@pytest.mark.parametrize("cut", [1, 7, 30])
@aio
async def test_a_remembered_head_split_across_reads_is_parsed(cut):
    h = Harness()
    c = h.connect()
    req = get("/split", [("X-A", "a")])
    c.send(req)
    c.send(req[:cut])
    c.send(req[cut:])
    await until(lambda: len(h.seen) == 2)
    assert seen(h)[0] == seen(h)[1]


@aio
async def test_a_repeated_head_brings_each_requests_own_body():
    h = Harness()
    c = h.connect()
    parser = counted(c)
    bodies = [b"%04d" % i for i in range(5)]  # the same length: the same head, byte for byte
    for body in bodies:
        c.send(post("/same", body))
    await until(lambda: len(h.seen) == len(bodies))
    assert [s.body for s in h.seen] == bodies
    assert parser.fed == len(post("/same", bodies[0]))  # only the first went through llhttp


@aio
async def test_a_runtimes_responses_of_any_id_and_size_are_taken_by_their_shape():
    h, c, parser, nxt = await _runtime_after_its_first_next()
    bodies = [b'{"ok":1}', b"", b"x" * 3000, b'{"n":22}']  # (reads above 4 KB are parsed in slices)
    for i, body in enumerate(bodies):
        c.send(post(f"/2018-06-01/runtime/invocation/id-{i}/response", body) + nxt)
    await until(lambda: len(h.seen) == 1 + 2 * len(bodies))
    assert parser.fed == len(nxt) + len(post("/2018-06-01/runtime/invocation/id-0/response", bodies[0]))
    assert list(c.proto._memo) == [nxt]  # the first response's exact head went once the shape took another
    posted = [(s.method, s.path, s.raw_path, s.query, s.headers, s.body) for s in h.seen[1::2]]
    assert posted == [("POST", f"/2018-06-01/runtime/invocation/id-{i}/response",
                       f"/2018-06-01/runtime/invocation/id-{i}/response", "",
                       {"host": "test", "content-length": str(len(body))}, body) for i, body in enumerate(bodies)]
    assert [a.status for a in c.answers()] == [200] * (1 + 2 * len(bodies))


@pytest.mark.parametrize("odd", [
    post("/r/a%20b/response", b"12"),  # a target to unquote
    post("/r/a?x=1", b"12"),  # a query
    b"POST /r/a b HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n12",  # a space in the target: 400
    b"POST /r/a HTTP/1.1\r\nHost: test\r\nContent-Length: +2\r\n\r\n12",  # not digits: 400
    b"PUT /r/a HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n12",  # another method
    post("/r/a", b"12", [("X-More", "1")]),  # other fields
])
@aio
async def test_requests_near_a_remembered_shape_go_to_the_parser(odd):
    h = Harness()
    c = h.connect()
    c.send(post("/r/first", b"{}"))
    await until(lambda: len(h.seen) == 1)
    assert c.proto._shape is not None
    parser = counted(c)
    c.send(odd)
    await until(lambda: len(c.answers()) == 2)
    assert parser.fed == len(odd)
    ref = Harness()
    r = ref.connect()
    r.send(odd)
    await until(lambda: len(r.answers()) == 1)
    assert [a.status for a in c.answers()][1:] == [a.status for a in r.answers()]
    assert seen(h)[1:] == seen(ref)


@aio
async def test_a_shape_needs_content_length_last_and_a_plain_target():
    h = Harness()
    c = h.connect()
    c.send(post("/r/first", b"{}", [("Content-Type", "application/json")]))  # Content-Length is not last
    c.send(post("/r/a%20b", b"{}"))  # a target with something to unquote
    await until(lambda: len(h.seen) == 2)
    assert c.proto._shape is None
    parser = counted(c)
    c.send(post("/r/second", b"{}"))
    c.send(post("/r/third", b"{}")[:-1])  # the shape, but its body is not all here yet
    c.send(b"}")
    await until(lambda: len(h.seen) == 4)
    assert parser.fed == len(post("/r/second", b"{}")) + len(post("/r/third", b"{}"))
    assert [s.body for s in h.seen] == [b"{}"] * 4
