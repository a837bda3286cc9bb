"""A platform fault in a warm invoke answers its caller (ServiceException), even on the callback path."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import zipfile
from pathlib import Path

import pytest

from lambdalet.api import FrontDoor, Settings
from lambdalet.environment import ExecutionEnvironment

BOOTSTRAP = """#!/bin/sh
exec python3 -c '
import http.client, os
h, p = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
c = http.client.HTTPConnection(h, int(p))
while True:
    c.request("GET", "/2018-06-01/runtime/invocation/next"); r = c.getresponse(); e = r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=e); c.getresponse().read()
'
"""


def _zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, BOOTSTRAP)
    return base64.b64encode(buf.getvalue()).decode()


def _call(port: int, method: str, path: str, body: dict) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body=json.dumps(body).encode())
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def test_platform_fault_on_the_warm_path_answers_service_exception(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        front = FrontDoor(Settings(port=0, data_dir=str(tmp_path / "data"), memory_limit=False))
        await front.start()
        port = front.address[1]
        call = lambda *a: asyncio.get_running_loop().run_in_executor(None, _call, port, *a)  # noqa: E731
        try:
            status, _, body = await call("POST", "/2015-03-31/functions", {
                "FunctionName": "fault", "Runtime": "provided.al2023", "Handler": "x",
                "Role": "arn:aws:iam::000000000000:role/x", "Code": {"ZipFile": _zip()}})
            assert status == 201, body
            path = "/2015-03-31/functions/fault/invocations"
            status, _, body = await call("POST", path, {"n": 1})
            assert (status, json.loads(body)) == (200, {"n": 1})  # now warm

            def broken(self: ExecutionEnvironment, inv: object, started: float, init_ms: object) -> None:
                raise RuntimeError("platform bug")

            monkeypatch.setattr(ExecutionEnvironment, "_dispatch", broken)
            status, headers, body = await asyncio.wait_for(call("POST", path, {"n": 2}), 15)
            assert status == 500 and headers["x-amzn-ErrorType"] == "ServiceException", (status, body)
            assert json.loads(body)["message"] == "An internal error occurred: RuntimeError"
        finally:
            await front.close()

    asyncio.run(scenario())
