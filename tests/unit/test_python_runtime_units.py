"""In-process unit tests of the Python runtime's handler resolution and log formatting."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from lambdalet.environment.managed.python import RUNTIME_DIR

sys.path.insert(0, str(RUNTIME_DIR))
from lambdalet_runtime import aws_logging, log_sink
from lambdalet_runtime.handler_loader import FaultError, error_document, load_handler
from lambdalet_runtime.invoke_loop import log_level_from_env

sys.path.remove(str(RUNTIME_DIR))


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def fault(handler: str) -> FaultError:
    with pytest.raises(FaultError) as info:
        load_handler(handler)
    return info.value


def test_dotted_and_slashed_handlers(task: Path) -> None:
    (task / "u_pkg1" / "inner").mkdir(parents=True)
    (task / "u_pkg1" / "__init__.py").write_text("")
    (task / "u_pkg1" / "inner" / "__init__.py").write_text("")
    (task / "u_pkg1" / "inner" / "mod.py").write_text("def fn(e, c):\n    return 'a'\n")
    (task / "u_dir1" / "deeper").mkdir(parents=True)
    (task / "u_dir1" / "deeper" / "mod.py").write_text("def fn(e, c):\n    return 'b'\n")
    assert load_handler("u_pkg1.inner.mod.fn")(None, None) == "a"
    assert load_handler("u_dir1/deeper/mod.fn")(None, None) == "b"


def test_handler_faults(task: Path) -> None:
    (task / "u_mod2.py").write_text("x = 1\n")
    (task / "u_syntax2.py").write_text("def f(:\n")
    assert fault("nodot").error_type == "Runtime.MalformedHandlerName"
    assert fault("nodot").message == "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"
    err = fault("u_missing2.h")
    assert (err.error_type, err.message) == (
        "Runtime.ImportModuleError", "Unable to import module 'u_missing2': No module named 'u_missing2'")
    err = fault("u_mod2.nope")
    assert err.error_type == "Runtime.HandlerNotFound"
    assert err.message == "Handler 'nope' missing on module 'u_mod2'"
    err = fault("builtins.h")
    assert err.error_type == "Runtime.BuiltInModuleConflict"
    assert err.message == "Cannot use built-in module builtins as a handler module"
    err = fault("u_syntax2.f")
    assert err.error_type == "Runtime.UserCodeSyntaxError"
    assert err.message.startswith("Syntax error in module 'u_syntax2': ")
    assert err.stack_trace[0].startswith(f'  File "{task / "u_syntax2.py"}" Line 1\n    ')


def test_import_time_exception_keeps_class(task: Path) -> None:
    (task / "u_raise3.py").write_text("raise KeyError('cfg')\n")
    with pytest.raises(KeyError) as info:
        load_handler("u_raise3.h")
    doc = error_document(info.value, "")
    assert doc["errorType"] == "KeyError" and doc["errorMessage"] == "'cfg'"
    assert doc["stackTrace"] and doc["stackTrace"][-1].startswith(f'  File "{task / "u_raise3.py"}", line 1')


def test_log_level_mapping() -> None:
    assert log_level_from_env(None) is None
    assert log_level_from_env("trace") == "DEBUG"
    assert log_level_from_env("Warn") == "WARNING"
    assert log_level_from_env("FATAL") == "CRITICAL"
    assert log_level_from_env("info") == "INFO"


def test_frame_types() -> None:
    assert log_sink.frame_type(None, False) == 0xA55A0003
    assert log_sink.frame_type(None, True) == 0xA55A0002
    assert log_sink.frame_type("WARNING", False) == 0xA55A0013
    assert log_sink.frame_type("ERROR", True) == 0xA55A0016
    assert log_sink.frame_type("CRITICAL", False) == 0xA55A001B


class Captured(log_sink.LogSink):
    def __init__(self, json_format: bool) -> None:
        super().__init__(json_format, level_set=False)
        self.fd = None
        self.records: list[str] = []
        self.request_id = "req-9"

    def write(self, message: str, level: str | None, timestamp: float | None = None,
              always_level: bool = False) -> None:
        self.records.append(message)


def make_record(msg: object, exc_info=None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("my.logger", logging.WARNING, "/x/app.py", 7, msg, (), exc_info,
                               func="handler")
    record.created = 1_767_312_000.123456  # 2026-01-02T00:00:00.123Z
    record.msecs = 123.456
    record.__dict__.update(extra)
    return record


def test_text_format() -> None:
    sink = Captured(json_format=False)
    text = aws_logging.TextFormatter(sink).format(make_record("hello\nworld"))
    assert text == "[WARNING]\t2026-01-02T00:00:00.123Z\treq-9\thello\nworld\n"


def test_json_format() -> None:
    sink = Captured(json_format=True)
    formatter = aws_logging.JsonFormatter(sink)
    doc = json.loads(formatter.format(make_record({"k": "é"}, order=5)))
    assert doc == {"timestamp": "2026-01-02T00:00:00Z", "level": "WARNING", "message": {"k": "é"},
                   "logger": "my.logger", "requestId": "req-9", "order": 5}
    try:
        raise ValueError("nope")
    except ValueError:
        exc_info = sys.exc_info()
    doc = json.loads(formatter.format(make_record("failed", exc_info)))
    assert doc["errorType"] == "ValueError" and doc["errorMessage"] == "nope"
    assert doc["location"] == "/x/app.py:handler:7"
    assert doc["stackTrace"][0].startswith('  File "')
    sink.request_id = ""
    assert "requestId" not in json.loads(formatter.format(make_record("before init")))


def test_uncaught_error_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = log_sink.LogSink(json_format=False, level_set=False)
    sink.fd = None
    doc = {"errorMessage": "bad", "errorType": "Boom", "requestId": "r",
           "stackTrace": ['  File "/t/app.py", line 3, in h\n    raise Boom("bad")\n']}
    sink.write_error(doc)
    assert capsys.readouterr().out == (
        '[ERROR] Boom: bad\rTraceback (most recent call last):\r\u00a0\u00a0File "/t/app.py", line 3, in h'
        '\r\u00a0\u00a0\u00a0\u00a0raise Boom("bad")\n'
    )
    assert os.environ.get("_LAMBDA_TELEMETRY_LOG_FD") is None


def test_fast_json_matches_json() -> None:
    from lambdalet_runtime import fast_json

    values = [{"a": [1, 2.5, None, True, "é\u2028"], "b": {"c": -1e300}}, "s", 3, None, [], {}, {1: 2},
              [float("nan"), float("inf")]]
    for value in values:
        for ensure_ascii in (True, False):
            assert fast_json.dumps(value, ensure_ascii) == json.dumps(value, ensure_ascii=ensure_ascii)
    for text in [b'{"a": [1, 2.5, "x\\u00e9"]}', b"  [1] ", b"\xef\xbb\xbf{}", b'"s"', "NaN"]:
        assert repr(fast_json.loads(text)) == repr(json.loads(text))
    for bad in [b"{not", b"[1] x", b""]:
        with pytest.raises(json.JSONDecodeError) as ours:
            fast_json.loads(bad)
        with pytest.raises(json.JSONDecodeError) as theirs:
            json.loads(bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        fast_json.dumps({1})
