"""A minimal keep-alive HTTP/1.1 client for the Lambda Runtime API.

Built on the C `_socket` module alone: `http.client` costs tens of milliseconds to import, and the
Runtime API only needs GET/POST with Content-Length bodies on one long-lived connection.
"""

from __future__ import annotations

import _socket

API_PREFIX = "/2018-06-01/runtime"


class RuntimeApiError(Exception):
    """The Runtime API answered with an unexpected status or the connection failed."""


class Invocation:
    """One event taken from /next."""

    __slots__ = ("body", "headers", "request_id")

    def __init__(self, request_id: str, headers: dict[str, str], body: bytes) -> None:
        self.request_id = request_id
        self.headers = headers
        self.body = body


class RapidClient:
    """Talks to the Runtime API at `host:port` over one reused connection."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.host_header = address
        self._sock: _socket.socket | None = None
        self._buf = b""

    def next_invocation(self) -> Invocation:
        return self._invocation(*self._request("GET", API_PREFIX + "/invocation/next", None, ()))

    @staticmethod
    def _invocation(status: int, headers: dict, body: bytes) -> Invocation:
        if status != 200:
            raise RuntimeApiError(f"/next answered {status}: {body[:200]!r}")
        return Invocation(headers.get("lambda-runtime-aws-request-id", ""), headers, body)

    def respond_then_next(self, request_id: str, action: str, body: bytes, content_type: str,
                          extra=()) -> Invocation:
        """POST the invocation's response (or error) and GET /next in one write, pipelined: one
        round trip and one wake-up of the platform instead of two. action: "response" or "error"."""
        path = f"/invocation/{request_id}/{action}"
        # (application/json, the Runtime API's default, goes unsaid: a header less to parse per invoke)
        typed = (("Content-Type", content_type),) if content_type != "application/json" else ()
        post = self._encode("POST", API_PREFIX + path, body, (*typed, *extra))
        get = self._encode("GET", API_PREFIX + "/invocation/next", None, ())
        answers = self._exchange(post + get, 2, "POST " + path)
        self._check_posted(path, *answers[0])
        return self._invocation(*answers[1])

    def post_init_error(self, error_type: str, body: bytes) -> None:
        self._post(
            "/init/error",
            body,
            (("Content-Type", "application/json"), ("Lambda-Runtime-Function-Error-Type", error_type)),
        )

    def _post(self, path: str, body: bytes, headers) -> None:
        status, _, answer = self._request("POST", API_PREFIX + path, body, headers)
        self._check_posted(path, status, {}, answer)

    @staticmethod
    def _check_posted(path: str, status: int, _headers: dict, answer: bytes) -> None:
        if status != 202:
            # The platform refused (wrong state, payload too large...): it already knows the
            # outcome, so report and carry on, as the official clients do.
            import sys

            sys.stderr.write(f"lambdalet runtime: POST {path} answered {status}: {answer[:300]!r}\n")

    def _request(self, method: str, path: str, body: bytes | None, headers) -> tuple[int, dict, bytes]:
        return self._exchange(self._encode(method, path, body, headers), 1, f"{method} {path}")[0]

    def _encode(self, method: str, path: str, body: bytes | None, headers) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in headers:
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + body if body else head

    def _exchange(self, payload: bytes, answers: int, what: str) -> list[tuple[int, dict, bytes]]:
        """Send payload (one or more requests) and read that many answers."""
        for attempt in (0, 1):
            fresh = self._sock is None
            got: list[tuple[int, dict, bytes]] = []
            try:
                if fresh:
                    self._connect()
                self._sock.sendall(payload)
                while len(got) < answers:
                    got.append(self._read_response())
                    if self._sock is None and len(got) < answers:  # closed after an answer
                        raise OSError("connection closed by the Runtime API")
                return got
            except OSError as e:
                self._close()
                # A kept-alive connection may have been closed by the server while idle: retry once,
                # unless an answer already came (the request was taken).
                if fresh or attempt or got:
                    raise RuntimeApiError(f"{what} failed: {e}") from e
        raise RuntimeApiError("unreachable")

    def _connect(self) -> None:
        if ":" in self.host:
            family, addr = _socket.AF_INET6, (self.host, self.port)
        else:
            try:
                _socket.inet_aton(self.host)
                family, addr = _socket.AF_INET, (self.host, self.port)
            except OSError:
                info = _socket.getaddrinfo(self.host, self.port, 0, _socket.SOCK_STREAM)[0]
                family, addr = info[0], info[4]
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        sock.connect(addr)
        self._sock = sock
        self._buf = b""

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # closing a socket object does not raise for a dead peer
        self._sock = None
        self._buf = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise OSError("connection closed by the Runtime API")
        self._buf += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while True:
            end = self._buf.find(marker)
            if end >= 0:
                data, self._buf = self._buf[:end], self._buf[end + len(marker) :]
                return data
            self._fill()

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _read_response(self) -> tuple[int, dict, bytes]:
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";", 1)[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n"):  # trailers
                        pass
                    break
                parts.append(self._read_exact(size))
                self._read_exact(2)
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            while True:
                try:
                    self._fill()
                except OSError:
                    break
            body, self._buf = self._buf, b""
            self._close()
        if headers.get("connection", "").lower() == "close":
            self._close()
        return status, headers, body
