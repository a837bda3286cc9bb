"""Where runtime log records go: AWS's framed telemetry fd, or stdout when there is none.

Also formats the records the runtime itself writes (uncaught errors, the init-failure warning)
exactly as AWS's Python runtime does, without importing `logging`.
"""

from __future__ import annotations

import os
import sys
import time

from . import fast_json

FRAME_BASE = 0xA55A0002
TEXT_BIT = 0x1
LEVEL_BITS = {"TRACE": 0x04, "DEBUG": 0x08, "INFO": 0x0C, "WARN": 0x10, "WARNING": 0x10, "ERROR": 0x14,
              "FATAL": 0x18, "CRITICAL": 0x18}

INIT_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. "
    "For functions using managed runtimes, runtime updates can be triggered by a function change, "
    "or can be applied automatically. To learn more, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"
)


def frame_type(level: str | None, json_format: bool) -> int:
    """The 0xA55A00xx frame type for a record of `level` (None: no level) in text or JSON."""
    return FRAME_BASE | LEVEL_BITS.get(level or "", 0) | (0 if json_format else TEXT_BIT)


class LogSink:
    """Writes whole records: one frame each on the telemetry fd, or raw text on stdout."""

    def __init__(self, json_format: bool, level_set: bool) -> None:
        self.json_format = json_format
        self.level_set = level_set  # AWS_LAMBDA_LOG_LEVEL given: frames carry the record's level
        fd = os.environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
        self.fd = int(fd) if fd else None
        if self.fd is not None:
            try:
                os.set_inheritable(self.fd, False)  # user subprocesses must not hold the pipe open
            except OSError:
                self.fd = None
        self.request_id = ""
        self.tenant_id: str | None = None

    def write(self, message: str, level: str | None, timestamp: float | None = None,
              always_level: bool = False) -> None:
        """Emit one record. `level` sets the frame type when levels are in effect (or always_level)."""
        if self.fd is None:
            sys.stdout.write(message)
            sys.stdout.flush()
            return
        data = message.encode("utf-8", "replace")
        micros = int((time.time() if timestamp is None else timestamp) * 1_000_000)
        use_level = always_level or self.level_set or self.json_format
        kind = frame_type(level if use_level else None, self.json_format)
        view = memoryview(kind.to_bytes(4, "big") + len(data).to_bytes(4, "big") + micros.to_bytes(8, "big")
                          + data)
        while view:
            view = view[os.write(self.fd, view):]

    def write_error(self, error: dict) -> None:
        """Log an uncaught error the way AWS does: `[ERROR] Type: msg` + traceback, or a JSON record."""
        if self.json_format:
            record = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": "ERROR",
                "errorMessage": error["errorMessage"],
                "errorType": error["errorType"],
                "requestId": self.request_id,
                "stackTrace": error["stackTrace"],
            }
            if self.tenant_id:
                record["tenantId"] = self.tenant_id
            self.write(fast_json.dumps(record, False) + "\n", "ERROR", always_level=True)
            return
        lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}",
                 "Traceback (most recent call last):"]
        for entry in error["stackTrace"]:
            for line in entry.rstrip("\n").split("\n"):
                stripped = line.lstrip(" ")
                lines.append("\u00a0" * (len(line) - len(stripped)) + stripped)
        if self.fd is not None:
            self.write("\n".join(lines), "ERROR", always_level=True)
        else:
            self.write("\r".join(lines) + "\n", "ERROR")

    def write_init_warning(self) -> None:
        """The warning AWS logs (through logging.warning) before an init error."""
        if self.json_format:
            record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "WARNING",
                      "message": INIT_WARNING, "logger": "root"}
            self.write(fast_json.dumps(record, False) + "\n", "WARN")
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        self.write(f"[WARNING]\t{stamp}\t{self.request_id}\t{INIT_WARNING}\n", "WARN", now)
