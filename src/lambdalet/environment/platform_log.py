"""The platform's own log lines, worded and laid out exactly as AWS Lambda writes them."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from lambdalet import __version__

_RUNTIME_RELEASE = 1


def runtime_version(runtime: str) -> str:
    """E.g. provided:al2023.v1, python:3.12.v1, nodejs:20.v1."""
    if runtime.startswith("provided"):
        family = runtime.replace("provided.", "provided:") if "." in runtime else "provided:al1"
    elif runtime.startswith("python"):
        family = "python:" + runtime[len("python"):]
    elif runtime.startswith("nodejs"):
        family = "nodejs:" + runtime[len("nodejs"):].removesuffix(".x")
    else:
        family = runtime
    return f"{family}.v{_RUNTIME_RELEASE}"


def init_start(runtime: str, region: str) -> str:
    digest = hashlib.sha256(f"{runtime}:{__version__}".encode()).hexdigest()
    return (f"INIT_START Runtime Version: {runtime_version(runtime)}\t"
            f"Runtime Version ARN: arn:aws:lambda:{region}::runtime:{digest}")


def init_report(duration_ms: float, phase: str, status: str, error_type: str | None) -> str:
    line = f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: {phase}\tStatus: {status}"
    if error_type:
        line += f"\tError Type: {error_type}"
    return line


def start(request_id: str, version: str = "$LATEST") -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def billed_ms(duration_ms: float, timeout_s: int, init_ms: float | None) -> int:
    """Billed duration: invoke time capped at the timeout, plus init for provided runtimes' cold starts.

    Each part is taken as the REPORT line shows it (to 0.01 ms), so "Duration: 4.00 ms" bills 4 ms,
    never 5 ms for a 4.004 ms that the line cannot show.
    """
    # (conditionals, not min() and max(): each builtin call costs ~700 instructions on Python 3.11)
    capped = timeout_s * 1000.0
    hundredths = int((duration_ms if duration_ms < capped else capped) * 100 + 0.5)
    if init_ms:
        hundredths += int(init_ms * 100 + 0.5)
    return -(-hundredths // 100) or 1


def report(
    request_id: str, duration_ms: float, billed: int, memory_mb: int, max_used_mb: int, init_ms: float | None
) -> str:
    line = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: {max_used_mb} MB\t")
    if init_ms is not None:
        line += f"Init Duration: {init_ms:.2f} ms\t"
    return line


def iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def timed_out(request_id: str, seconds: float) -> str:
    return f"{iso_now()} {request_id} Task timed out after {seconds:.2f} seconds"


def runtime_error(request_id: str | None, message: str, error_type: str) -> str:
    """The platform's error event for an invoke that failed in the runtime (one event, two lines)."""
    if request_id is None:
        return f"{message}\n{error_type}"
    return f"RequestId: {request_id} Error: {message}\n{error_type}"


def now_ms() -> int:
    return int(time.time() * 1000)
