"""console.* patching in lambdalet's Node.js runtime: text and JSON records, levels, the telemetry fd."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_nodejs_runtime_stub import Event, run_runtime

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
CODE = """console.log('init line');
export const handler = async () => {
  console.log('hello', { a: 1 }, 'multi\\nline');
  console.trace('t'); console.debug('d'); console.info('i %d', 5); console.warn('w'); console.error('e');
  console.fatal('f');
  return 1;
};"""


def run(tmp_path: Path, runtime: str = "nodejs20.x", env: dict[str, str] | None = None, telemetry: bool = False):
    return run_runtime(tmp_path, {"index.mjs": CODE}, "index.handler", [Event("req-1")], runtime=runtime,
                       env=env, telemetry=telemetry)


def test_text_format_on_stdout(tmp_path: Path) -> None:
    lines = run(tmp_path).log_lines
    assert re.fullmatch(rf"{ISO}\tundefined\tINFO\tinit line", lines[0])  # <= 22: no request id at init
    assert re.fullmatch(rf"{ISO}\treq-1\tINFO\thello {{ a: 1 }} multi\rline", lines[1])
    levels = [line.split("\t")[2:] for line in lines[2:]]
    assert levels == [["TRACE", "t"], ["DEBUG", "d"], ["INFO", "i 5"], ["WARN", "w"], ["ERROR", "e"], ["FATAL", "f"]]


def test_request_id_dash_outside_invoke_on_24(tmp_path: Path) -> None:
    assert run(tmp_path, "nodejs24.x").log_lines[0].split("\t")[1] == "-"


def test_log_level_filters(tmp_path: Path) -> None:
    lines = run(tmp_path, env={"AWS_LAMBDA_LOG_LEVEL": "warn"}).log_lines
    assert [line.split("\t")[2] for line in lines] == ["WARN", "ERROR", "FATAL"]


def test_json_format(tmp_path: Path) -> None:
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"}
    lines = run(tmp_path, "nodejs24.x", env=env).log_lines
    records = [json.loads(line) for line in lines]
    assert records[0]["message"] == "init line" and records[0]["requestId"] == "-"
    hello = records[1]
    assert re.fullmatch(ISO, hello.pop("timestamp"))
    assert hello == {"level": "INFO", "requestId": "req-1", "message": "hello { a: 1 } multi\nline"}
    assert [r["level"] for r in records[2:]] == ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def test_json_format_objects_and_errors(tmp_path: Path) -> None:
    code = """export const handler = async () => {
      console.log({ k: [1, 2] });
      console.error('failed:', new TypeError('nope'));
      throw new RangeError('out');
    };"""
    result = run_runtime(tmp_path, {"index.mjs": code}, "index.handler", [Event("req-1")],
                         env={"AWS_LAMBDA_LOG_FORMAT": "json"})
    records = [json.loads(line) for line in result.log_lines]
    assert records[0]["message"] == {"k": [1, 2]}
    assert records[1]["errorType"] == "TypeError" and records[1]["errorMessage"] == "nope"
    assert records[1]["stackTrace"][0] == "TypeError: nope"
    assert records[1]["message"].startswith("failed: TypeError: nope")
    invoke_error = records[2]
    assert (invoke_error["level"], invoke_error["message"], invoke_error["errorType"]) == (
        "ERROR", "Invoke Error", "RangeError")


def test_telemetry_fd_frames(tmp_path: Path) -> None:
    result = run(tmp_path, telemetry=True)
    assert result.log_lines == []  # nothing on stdout
    kinds = [hex(kind) for kind, _, _ in result.frames]
    assert kinds == ["0xa55a000f", "0xa55a000f", "0xa55a0007", "0xa55a000b", "0xa55a000f", "0xa55a0013",
                     "0xa55a0017", "0xa55a001b"]
    _, ts, message = result.frames[1]
    assert re.fullmatch(rf"{ISO}\treq-1\tINFO\thello {{ a: 1 }} multi\nline\n", message.decode())
    assert ts % 1000 == 0 and ts > 1_700_000_000_000_000


def test_telemetry_fd_json_frames_and_env_removed(tmp_path: Path) -> None:
    code = ("export const handler = async () => "
            "{ console.warn('x'); return process.env._LAMBDA_TELEMETRY_LOG_FD ?? null; };")
    result = run_runtime(tmp_path, {"index.mjs": code}, "index.handler", [Event("req-1")], telemetry=True,
                         env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    assert result.answers[0].body == b"null"
    ((kind, _, message),) = result.frames
    assert kind == 0xA55A0012
    assert not message.endswith(b"\n")
    assert json.loads(message)["message"] == "x"


def test_stdout_writes_stay_on_stdout(tmp_path: Path) -> None:
    code = "export const handler = async () => { process.stdout.write('raw\\n'); return 1; };"
    result = run_runtime(tmp_path, {"index.mjs": code}, "index.handler", [Event("req-1")], telemetry=True)
    assert result.log_lines == ["raw"]
