"""Official AWS Python packages inside lambdalet functions: awslambdaric as a custom runtime, Powertools.

The packages are installed with pip --target once per version into ~/.cache/lambdalet-tests (or
$LAMBDALET_TEST_CACHE) and reused by later runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Server, create_function, make_zip, unique_name, wait_for_log

pytestmark = pytest.mark.slow

AWSLAMBDARIC = "awslambdaric==4.2.2"
POWERTOOLS = "aws-lambda-powertools==3.37.0"


def pip_target(requirement: str) -> Path:
    """A directory holding `requirement` installed for the interpreter running the tests (cached)."""
    cache = Path(os.environ.get("LAMBDALET_TEST_CACHE", Path.home() / ".cache" / "lambdalet-tests"))
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    target = cache / "pip" / f"{requirement.replace('==', '-')}-{tag}"
    if (target / ".complete").exists():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--target", str(staging), requirement], check=True, timeout=600)
    (staging / ".complete").write_text(requirement)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def tree_files(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in root.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.name != ".complete":
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def invoke(server: Server, name: str, event: object) -> tuple[object, str | None, str]:
    resp = server.lambda_client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return json.loads(resp["Payload"].read()), resp.get("FunctionError"), resp["ResponseMetadata"]["RequestId"]


RIC_BOOTSTRAP = "#!/bin/sh\nexec python3 -m awslambdaric $_HANDLER\n"
RIC_APP = """
import os

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis(),
            "request_id": context.aws_request_id, "arn": context.invoked_function_arn, "event": event}
"""


def test_awslambdaric_custom_runtime(server: Server) -> None:
    files: dict[str, str | bytes] = {**tree_files(pip_target(AWSLAMBDARIC)), "bootstrap": RIC_BOOTSTRAP,
                                     "app.py": RIC_APP}
    name = unique_name("ric")
    # `python3` in the bootstrap must be the interpreter the package was built for.
    path = os.path.dirname(os.path.realpath(sys.executable)) + os.pathsep + os.environ["PATH"]
    create_function(server, name, make_zip(files), runtime="provided.al2023", handler="app.handler", timeout=5,
                    env={"PATH": path})
    first, error, request_id = invoke(server, name, {"n": 1})
    assert error is None, first
    assert first["event"] == {"n": 1} and first["request_id"] == request_id
    assert first["arn"].endswith(f":function:{name}")
    assert 0 < first["remaining"] <= 5000
    failed, error, request_id = invoke(server, name, {"fail": True})
    assert error == "Unhandled"
    assert failed["errorType"] == "ValueError" and failed["errorMessage"] == "asked to fail"
    assert failed["requestId"] == request_id
    again, error, _ = invoke(server, name, {"n": 2})
    assert error is None and again["pid"] == first["pid"]  # warm reuse after an error
    wait_for_log(server, name, lambda m: any("[ERROR] ValueError: asked to fail" in x for x in m))


POWERTOOLS_APP = """
from aws_lambda_powertools import Logger

logger = Logger(service="orders")

@logger.inject_lambda_context
def handler(event, context):
    logger.info("order received", extra={"order_id": event["order_id"]})
    return "ok"
"""


def test_powertools_logger(server: Server) -> None:
    files: dict[str, str | bytes] = {**tree_files(pip_target(POWERTOOLS)), "app.py": POWERTOOLS_APP}
    name = unique_name("powertools")
    create_function(server, name, make_zip(files), runtime="python3.12", handler="app.handler", timeout=10)
    result, error, request_id = invoke(server, name, {"order_id": 7})
    assert (result, error) == ("ok", None)
    messages = wait_for_log(server, name, lambda m: any("order received" in x for x in m))
    record = json.loads(next(m for m in messages if "order received" in m))
    assert record["level"] == "INFO" and record["service"] == "orders" and record["order_id"] == 7
    assert record["function_request_id"] == request_id
    assert record["function_name"] == name
