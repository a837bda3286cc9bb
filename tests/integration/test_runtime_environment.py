"""The environment a runtime sees, read from inside real python, nodejs and provided functions: AWS's
defined runtime variables, at lambdalet's real paths, and nothing of the server's HOME or TMPDIR."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import Server, create_function, make_zip, unique_name

PY_APP = """import json, os
def handler(event, context):
    return {"env": dict(os.environ), "cwd": os.getcwd()}
"""
NODE_APP = "exports.handler = async () => ({ env: process.env, cwd: process.cwd() });"
BOOTSTRAP = """#!/bin/sh
set -eu
while true; do
  HEADERS=$(mktemp)
  curl -sS -D "$HEADERS" -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:cntrl:]' | awk '{print $2}')
  python3 -c 'import json, os; print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}))' > "$HEADERS"
  curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \\
       --data-binary @"$HEADERS" >/dev/null
done
"""


def seen(server: Server, runtime: str, files: dict[str, str], handler: str, **kw) -> tuple[dict[str, str], str]:
    name = unique_name("env")
    create_function(server, name, make_zip(files), runtime=runtime, handler=handler, **kw)
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body["env"], body["cwd"]


def check_common(server: Server, env: dict[str, str], cwd: str) -> None:
    task, runtime = env["LAMBDA_TASK_ROOT"], env["LAMBDA_RUNTIME_DIR"]
    opt = _opt(server, env)  # a function without layers: an empty /opt
    assert cwd == task and env["PWD"] == task
    assert env["LD_LIBRARY_PATH"] == (f"/lib64:/usr/lib64:{runtime}:{runtime}/lib:{task}:{task}/lib:{opt}/lib")
    assert env["PATH"].endswith(f":{opt}/bin")
    assert env["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2000"
    assert env["_AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1" and env["_AWS_XRAY_DAEMON_PORT"] == "2000"
    assert "HOME" not in env
    if task == "/var/task":  # sandboxed: Lambda's paths, a /tmp of its own
        assert (runtime, env["TMPDIR"]) == ("/var/runtime", "/tmp")
        assert env["PATH"] == "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
    else:
        assert env["TMPDIR"].startswith(str(server.data_dir / "tmp") + "/")
        assert env["TMPDIR"] != os.environ.get("TMPDIR")


def _opt(server: Server, env: dict[str, str]) -> str:
    return "/opt" if env["LAMBDA_TASK_ROOT"] == "/var/task" else str(server.data_dir / "opt")


def test_python_environment(server: Server) -> None:
    env, cwd = seen(server, "python3.12", {"app.py": PY_APP}, "app.handler")
    check_common(server, env, cwd)
    assert env["PYTHONPATH"] == env["LAMBDA_RUNTIME_DIR"]
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")


def test_nodejs_environment(server: Server) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    env, cwd = seen(server, "nodejs20.x", {"index.js": NODE_APP}, "index.handler")
    check_common(server, env, cwd)
    opt, runtime, task = _opt(server, env), env["LAMBDA_RUNTIME_DIR"], env["LAMBDA_TASK_ROOT"]
    assert env["NODE_PATH"] == (f"{opt}/nodejs/node20/node_modules:{opt}/nodejs/node_modules:"
                                f"{runtime}/node_modules:{runtime}:{task}")
    assert "PYTHONPATH" not in env
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")


def test_provided_environment(server: Server) -> None:
    env, cwd = seen(server, "provided.al2023", {"bootstrap": BOOTSTRAP}, "function.handler")
    check_common(server, env, cwd)
    assert "PYTHONPATH" not in env and "NODE_PATH" not in env


def test_a_function_may_set_the_overridable_ones(server: Server) -> None:
    env, _ = seen(server, "python3.12", {"app.py": PY_APP}, "app.handler",
                  Environment={"Variables": {"LD_LIBRARY_PATH": "/mine", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
                                             "PYTHONPATH": "/elsewhere", "HOME": "/home/me"}})
    assert env["LD_LIBRARY_PATH"] == "/mine" and env["AWS_XRAY_CONTEXT_MISSING"] == "IGNORE_ERROR"
    assert env["PYTHONPATH"] == "/elsewhere" and env["HOME"] == "/home/me"
