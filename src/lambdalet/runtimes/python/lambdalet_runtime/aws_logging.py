"""AWS's root-logger handler: text `[LEVEL]\\t<time>Z\\t<request id>\\t<msg>` or JSON records.

Imported only once the function imports `logging` (see logging_hook), so functions that never log
through `logging` do not pay for importing it.
"""

from __future__ import annotations

import logging
import time
import traceback

from . import fast_json
from .log_sink import LogSink

TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "aws_request_id", "tenant_id",
}


class TextFormatter(logging.Formatter):
    """AWS's text layout, UTC timestamps with milliseconds."""

    converter = time.gmtime

    def __init__(self, sink: LogSink) -> None:
        super().__init__(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S")
        self.sink = sink

    def format(self, record: logging.LogRecord) -> str:
        record.aws_request_id = self.sink.request_id
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """AWS's JSON records: timestamp, level, message, logger, requestId (+ exception fields, extras)."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def format(self, record: logging.LogRecord) -> str:
        message = record.msg if isinstance(record.msg, dict) else record.getMessage()
        doc = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "message": message,
            "logger": record.name,
            "requestId": self.sink.request_id or None,
            "tenantId": self.sink.tenant_id,
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc_type, exc, tb = record.exc_info
            doc["errorType"] = exc_type.__name__ if exc_type else None
            doc["errorMessage"] = str(exc)
            doc["stackTrace"] = traceback.format_list(traceback.extract_tb(tb))
            doc["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in doc:
                doc[key] = value
        return fast_json.dumps({k: v for k, v in doc.items() if v is not None}, False, str) + "\n"


class SinkHandler(logging.Handler):
    """Writes each formatted record as one log event (one telemetry frame)."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record), record.levelname, record.created)
        except Exception:
            self.handleError(record)


def install(sink: LogSink, level: str | None) -> None:
    """Give the root logger AWS's handler; set its level only when AWS_LAMBDA_LOG_LEVEL asks."""
    handler = SinkHandler(sink)
    handler.setFormatter(JsonFormatter(sink) if sink.json_format else TextFormatter(sink))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if level:
        root.setLevel(level)
