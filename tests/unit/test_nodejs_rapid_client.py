"""The Node.js runtime's Runtime API client (lib/rapid-client.mjs): response parsing and connections.

The parser is fed every split of real responses; the client runs against a raw socket server that
answers the way an HTTP/1.1 server may (chunked bodies in pieces, `Connection: close`).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
CLIENT = Path(__file__).resolve().parents[2] / "src/lambdalet/runtimes/nodejs/lib/rapid-client.mjs"


def run_node(script: str, *args: str) -> str:
    done = subprocess.run(["node", "--input-type=module", "-e", script, *args],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


RESPONSES = [
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
    b'{"status":"OK"}\n',
    b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\n{\"a\"\r\n8\r\n:\"\xc3\xa9\xe2\x82\xac\"\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n",
]


def test_parser_needs_the_whole_response_and_keeps_what_follows() -> None:
    script = f"""
import {{ parseResponse }} from {json.dumps(CLIENT.as_uri())};
const whole = Buffer.from(process.argv[1], "base64");
const cut = Number(process.argv[2]);
const early = [];
for (let i = 0; i < cut; i++) if (parseResponse(whole.subarray(0, i)) !== undefined) early.push(i);
const res = parseResponse(Buffer.concat([whole, Buffer.from("NEXT")]));
console.log(JSON.stringify({{early, status: res.status, headers: res.headers, body: res.body,
                            rest: res.rest.toString()}}));
"""
    for raw in RESPONSES:
        out = json.loads(run_node(script, base64.b64encode(raw).decode(), str(len(raw))))
        assert out["early"] == [], raw
        assert out["rest"] == "NEXT", raw
        if out["status"] == 200:
            assert out["body"] == '{"a":"é€"}'
            assert out["headers"]["lambda-runtime-aws-request-id"] == "r1"
        elif out["status"] == 202:
            assert out["body"] == '{"status":"OK"}\n'
        else:
            assert out["status"] == 204 and out["body"] == ""


class ClosingServer:
    """Answers /next with a chunked event written in pieces, then `Connection: close` and hangs up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        break
                    buf += data
                head, _, body = buf.partition(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n")[0])
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                if head.startswith(b"GET"):
                    n = len(self.requests)
                    event = b'{"n":%d}' % n
                    for piece in (b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r%d\r\n" % n,
                                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                                  b"%x\r\n%s\r\n" % (len(event), event), b"0\r\n\r\n"):
                        conn.sendall(piece)
                else:
                    conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    def close(self) -> None:
        self.listener.close()


def test_client_reconnects_after_connection_close() -> None:
    server = ClosingServer()
    script = f"""
import {{ RapidClient }} from {json.dumps(CLIENT.as_uri())};
const client = new RapidClient(process.argv[1]);
const seen = [];
for (let i = 0; i < 3; i++) {{
  const event = await client.next();
  const id = event.headers["lambda-runtime-aws-request-id"];
  const answer = await client.postResponse(id, event.body);
  seen.push([id, event.body, answer.status]);
}}
console.log(JSON.stringify(seen));
"""
    try:
        seen = json.loads(run_node(script, server.address))
    finally:
        server.close()
    assert seen == [["r1", '{"n":1}', 202], ["r3", '{"n":3}', 202], ["r5", '{"n":5}', 202]]
    assert server.connections == 6
    assert server.requests[1] == b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1"
