"""Request bodies parsed within bounded time, and the child process that takes big code requests.

json.loads, base64 decoding and joining a body's chunks each hold the GIL for their whole C call:
on a 66 MB CreateFunction body that is ~1 s during which no other request is served, thread or no
thread. So a body is parsed on the event loop only when it is *light* (at most INLINE_BYTES, and at
most INLINE_VALUES separators, i.e. a parse of a few milliseconds at worst). A heavier
CreateFunction / UpdateFunctionCode body is streamed into a child process (`python -m
lambdalet.store.request_body CODE_ROOT OPERATION`), which does the heavy parts:

  parent -> child (stdin)   the body as frames: 4-byte big-endian length + bytes; a 0 length ends it
  child -> parent (stdout)  one JSON line: {"doc": body without its ZipFile, "zip": present?}
                            or {"error": {"kind": ..., "message": ...}}
  parent -> child (stdin)   b"1" once the rest of the request is valid: decode and unpack the zip
                            (closing stdin instead makes the child exit without unpacking)
  child -> parent (stdout)  one JSON line: {"stored": StoredCode fields} or {"error": ...}

The doc a child returns is itself light, or the child answers an error: the parent never parses
anything heavy. This module lives in lambdalet.store (not lambdalet.api, whose package imports the
whole server) so that the child starts in tens of milliseconds; it imports only the stdlib and
lambdalet.store.code.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import signal
import struct
import sys

from lambdalet.limits import MAX_ZIP
from lambdalet.store.code import UNZIP_ERROR, CodeStore, InvalidCode

TYPE_CHECKING = False  # not typing's: the child starts ~10 ms sooner without it
if TYPE_CHECKING:
    from typing import Any, BinaryIO

INLINE_BYTES = 256 * 1024  # a body parsed on the event loop: ~1 ms for a string-heavy one
INLINE_VALUES = 10_000  # separators in such a body: ~2 ms for the most value-dense one
MAX_DEPTH = 64  # nesting of a request body (Lambda's request shapes nest 4 deep); deeper is refused
MISSING = object()
NOT_AN_OBJECT = "expected an object"

# BodyError kinds, mapped to AWS errors by the API: a body that is not usable JSON, a zip that cannot
# be decoded, a zip over MAX_ZIP.
JSON, CODE, ZIP_TOO_LARGE = "json", "code", "zip_too_large"
_FRAME = struct.Struct("!I")


class BodyError(ValueError):
    """A request body refused; kind says how the API answers it, message is the detail."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def separators(raw: bytes) -> int:
    """An upper bound on the number of values in a JSON text, counted in C at memory speed."""
    return raw.count(b",") + raw.count(b":") + raw.count(b"[") + raw.count(b"{")


def is_light(raw: bytes) -> bool:
    """True if json.loads(raw) takes at most a few milliseconds, whatever raw holds."""
    size = len(raw)
    return size <= INLINE_VALUES or (size <= INLINE_BYTES and separators(raw) <= INLINE_VALUES)


def heavy_error() -> BodyError:
    """The refusal of a body that is not light (for an operation whose requests all are)."""
    return BodyError(JSON, f"the body is larger than {INLINE_BYTES} bytes or holds more than {INLINE_VALUES} "
                           "values, more than any request of this operation")


def loads_object(raw: bytes, depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The JSON object of a light request body (empty: {}); raises BodyError(JSON, detail)."""
    doc = _loads(raw)
    check_depth(doc, depth)
    return doc


def _loads(raw: bytes) -> dict[str, Any]:
    """json.loads to an object, every failure (RecursionError included) a BodyError."""
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(JSON, str(exc)) from exc
    if not isinstance(doc, dict):
        raise BodyError(JSON, NOT_AN_OBJECT)
    return doc


def _too_deep(limit: int = MAX_DEPTH) -> BodyError:
    return BodyError(JSON, f"Document nesting depth exceeds the maximum allowed ({limit})")


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse a document nested deeper than limit (without recursion): stored and re-encoded
    configuration must never reach the interpreter's recursion limit."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise _too_deep(limit)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


_ZIP_HOLDERS = {"CreateFunction": "Code", "PublishLayerVersion": "Content"}  # else the body holds ZipFile


def take_zip(doc: dict[str, Any], operation: str) -> Any:
    """Remove and return the request's ZipFile value (MISSING if it has none)."""
    holder = doc.get(_ZIP_HOLDERS[operation]) if operation in _ZIP_HOLDERS else doc
    if isinstance(holder, dict) and "ZipFile" in holder:
        return holder.pop("ZipFile")
    return MISSING


def decode_zip(value: Any) -> bytes:
    """The zip bytes of a ZipFile value (base64); raises BodyError(CODE | ZIP_TOO_LARGE)."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BodyError(CODE, UNZIP_ERROR) from exc
    if len(data) > MAX_ZIP:
        raise BodyError(ZIP_TOO_LARGE, f"Zipped size must be smaller than {MAX_ZIP} bytes")
    return data


# -- the child process
def _read_body(stream: BinaryIO) -> bytes | None:
    """The framed body from the parent; None if it hung up before the end."""
    chunks: list[bytes] = []
    while True:
        head = stream.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return None
        (size,) = _FRAME.unpack(head)
        if size == 0:
            return b"".join(chunks)
        chunk = stream.read(size)
        if len(chunk) < size:
            return None
        chunks.append(chunk)


def frame(chunk: bytes) -> bytes:
    """One frame of the body for the child (an empty chunk ends the body)."""
    return _FRAME.pack(len(chunk)) + chunk


def _send(out: BinaryIO, doc: dict[str, Any]) -> None:
    """One reply line to the parent."""
    out.write(json.dumps(doc).encode() + b"\n")
    out.flush()


def _error(err: BodyError) -> dict[str, Any]:
    """An error reply."""
    return {"error": {"kind": err.kind, "message": err.message}}


def _check_payload(raw: bytes) -> dict[str, Any]:
    """An Invoke payload too heavy to check on the event loop: any JSON value will do."""
    try:
        json.loads(raw)
    except RecursionError:
        raise BodyError(JSON, "Document nesting depth exceeds the maximum allowed") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(JSON, str(exc)) from exc
    return {"doc": {}, "zip": False}


def _phase_one(raw: bytes, operation: str) -> tuple[dict[str, Any], Any]:
    """Parse the body and take its zip out; the reply must be light for the parent to read it.

    A zip's base64 holds none of the separators, so a body with more than INLINE_VALUES of them is
    refused before parsing: json.loads of 70 MB of `[],` would take gigabytes. (An Invoke payload,
    at most 6 MB, is only checked to be JSON.)"""
    if operation == "Invoke":
        return _check_payload(raw), MISSING
    if separators(raw) > INLINE_VALUES:
        raise heavy_error()
    doc = _loads(raw)
    value = take_zip(doc, operation)
    check_depth(doc)
    reply = {"doc": doc, "zip": value is not MISSING}
    if not is_light(json.dumps(reply).encode()):
        raise heavy_error()
    return reply, value


def _phase_two(root: str, value: Any) -> dict[str, Any]:
    """Decode and unpack the zip into the code store at root."""
    try:
        stored = CodeStore(root, sweep=False).put(decode_zip(value))
    except BodyError as err:
        return _error(err)
    except InvalidCode as exc:
        return _error(BodyError(CODE, str(exc)))
    return {"stored": {"sha_hex": stored.sha_hex, "sha256_b64": stored.sha256_b64, "size": stored.size,
                       "task_root": stored.task_root}}


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM unwinds (finally blocks run), so a staging directory is removed."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Serve one code request on stdin/stdout (see the module docstring)."""
    root, operation = (argv if argv is not None else sys.argv[1:])[:2]
    signal.signal(signal.SIGTERM, _terminated)
    with contextlib.suppress(OSError):
        os.nice(10)  # a deploy yields the CPU to the server's event loop (and to the functions)
    try:
        return _serve(root, operation, sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the server stopped listening (its client went away): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _serve(root: str, operation: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Phase one (the doc), then, on the go-ahead, phase two (the stored zip)."""
    raw = _read_body(stdin)
    if raw is None:
        return 1
    try:
        reply, value = _phase_one(raw, operation)
    except BodyError as err:
        _send(stdout, _error(err))
        return 0
    del raw
    _send(stdout, reply)
    if stdin.read(1) != b"1" or value is MISSING:
        return 0
    _send(stdout, _phase_two(root, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
