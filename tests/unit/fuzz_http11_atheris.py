"""Coverage-guided fuzzing of http11 with atheris (optional: `pip install atheris`).

    python tests/unit/fuzz_http11_atheris.py -atheris_runs=100000 -max_len=4096

Each input is split into a few reads that go to one connection through the fake transport of
test_http11_protocol; the invariants are those of test_http11_fuzz: data_received never raises, what
is written parses as HTTP/1.1 responses, the requests handled are answered in order, and at most one
error answer comes after them, before the connection closes. test_http11_fuzz runs a short session
(skipped when atheris is not installed).
"""

from __future__ import annotations

import asyncio
import sys

try:
    import atheris
except ImportError:  # pragma: no cover - the entry point is optional
    atheris = None


def _load():
    if atheris is None:
        raise SystemExit("atheris is not installed: pip install atheris")
    with atheris.instrument_imports(include=["lambdalet"]):
        import test_http11_protocol as harness
        from test_http11_fuzz import check_answers_follow_requests
    return harness, check_answers_follow_requests


# Starts that take the fuzzer past the request line at once (it finds the rest itself).
PREFIXES = [
    b"",
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
    b"GET / HTTP/1.0\r\n",
]


def main(argv: list[str]) -> None:
    harness, check = _load()

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        prefix = PREFIXES[fdp.ConsumeIntInRange(0, len(PREFIXES) - 1)]
        cuts = sorted(fdp.ConsumeIntInRange(0, 4096) for _ in range(fdp.ConsumeIntInRange(0, 6)))
        stream = prefix + fdp.ConsumeBytes(4096)
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if b > a]

        async def scenario():
            h = harness.Harness(max_head_bytes=512)
            c = h.connect()
            for i, piece in enumerate(pieces):
                c.send(piece)
                if i % 2:
                    await asyncio.sleep(0)
            await harness.settle(10)
            if any(s.method == "HEAD" for s in h.seen):
                return  # an answer to HEAD has no body, which the client-side parser cannot know
            check(h, c)

        harness.run(scenario())

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
