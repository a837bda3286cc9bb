"""The official `aws-lambda-ric` npm package as a custom runtime (provided.al2023) on lambdalet.

The package compiles a native addon (about a minute), so the installed tree is cached between runs
under ~/.cache/lambdalet-tests/aws-lambda-ric-<version> (LAMBDALET_TEST_CACHE overrides the root).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Server, create_function, make_zip, unique_name, wait_for_log

RIC_VERSION = "4.0.2"
CACHE_ROOT = Path(os.environ.get("LAMBDALET_TEST_CACHE", "~/.cache/lambdalet-tests")).expanduser()
RIC_FILES = ("index.mjs", "rapid-client.node", "package.json")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm"),
]


@pytest.fixture(scope="module")
def ric_package() -> Path:
    """The installed aws-lambda-ric package directory (installed once, then reused from the cache)."""
    prefix = CACHE_ROOT / f"aws-lambda-ric-{RIC_VERSION}"
    package = prefix / "node_modules" / "aws-lambda-ric"
    marker = prefix / ".complete"
    if not marker.exists():
        staging = prefix.with_name(f"{prefix.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        env = dict(os.environ)
        # node-gyp would download node's headers; use the ones installed with node (no network here).
        node_prefix = Path(os.path.realpath(shutil.which("node") or "node")).parent.parent
        if (node_prefix / "include" / "node" / "node.h").exists():
            env.setdefault("npm_config_nodedir", str(node_prefix))
        out = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(staging),
             f"aws-lambda-ric@{RIC_VERSION}"],
            capture_output=True, text=True, timeout=900, check=False, env=env,
        )
        built = staging / "node_modules" / "aws-lambda-ric" / "rapid-client.node"
        if out.returncode != 0 or not built.exists():
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(f"cannot install aws-lambda-ric@{RIC_VERSION}: {out.stderr[-2000:]}")
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)
        marker.touch()
    return package


def deploy(server: Server, package: Path, handler_code: str, **kw) -> str:
    node = os.path.realpath(shutil.which("node") or "node")
    files: dict[str, str | bytes] = {
        "bootstrap": f'#!/bin/sh\nexec {node} "$LAMBDA_TASK_ROOT/ric/index.mjs"\n',
        "index.mjs": handler_code,
    }
    for name in RIC_FILES:
        files[f"ric/{name}"] = (package / name).read_bytes()
    name = unique_name("ric")
    create_function(server, name, make_zip(files), runtime="provided.al2023", handler="index.handler", **kw)
    return name


def test_ric_result_error_and_logs(server: Server, ric_package: Path) -> None:
    code = """export const handler = async (event, context) => {
      console.log('from ric', event.n);
      if (event.fail) throw new RangeError('ric failure');
      return { n: event.n, id: context.awsRequestId, fn: context.functionName };
    };"""
    name = deploy(server, ric_package, code, timeout=10)
    client = server.lambda_client
    resp = client.invoke(FunctionName=name, Payload=b'{"n":1}')
    body = json.loads(resp["Payload"].read())
    assert resp.get("FunctionError") is None, body
    assert body["n"] == 1 and body["fn"] == name
    resp = client.invoke(FunctionName=name, Payload=b'{"n":2,"fail":true}')
    doc = json.loads(resp["Payload"].read())
    assert resp.get("FunctionError") == "Unhandled"
    assert (doc["errorType"], doc["errorMessage"]) == ("RangeError", "ric failure")
    messages = wait_for_log(server, name, lambda m: any("from ric 2" in x for x in m))
    assert any(re.fullmatch(rf"\S+Z\t{body['id']}\tINFO\tfrom ric 1", x) for x in messages)


def test_ric_streaming(server: Server, ric_package: Path) -> None:
    code = """export const handler = awslambda.streamifyResponse(async (event, stream) => {
      stream.write('a-');
      if (event.fail) throw new TypeError('ric stream failure');
      stream.end('b');
    });"""
    name = deploy(server, ric_package, code, timeout=10)
    resp = server.lambda_client.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
    chunks, complete = [], None
    for event in resp["EventStream"]:
        chunks += [event["PayloadChunk"]["Payload"]] if "PayloadChunk" in event else []
        complete = event.get("InvokeComplete", complete)
    assert b"".join(chunks) == b"a-b"
    assert complete is not None and not complete.get("ErrorCode")
    resp = server.lambda_client.invoke_with_response_stream(FunctionName=name, Payload=b'{"fail":true}')
    complete = None
    for event in resp["EventStream"]:
        complete = event.get("InvokeComplete", complete)
    assert complete is not None and complete.get("ErrorCode") == "TypeError"
    details = complete.get("ErrorDetails", "")
    assert "ric stream failure" in details or b"ric stream failure" in base64.b64decode(details + "==")
