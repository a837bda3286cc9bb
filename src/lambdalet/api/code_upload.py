"""Request bodies of the Lambda API, received and parsed without stalling the event loop.

json.loads, base64 decoding and b"".join hold the GIL for their whole C call, so a big body is
never handed to any of them in this process, thread or no thread:

- A light body (lambdalet.store.request_body.is_light: a parse of a few milliseconds at worst) is
  parsed right here; other operations' bodies that are not light are refused unparsed.
- A CreateFunction / UpdateFunctionCode body over INLINE_BYTES is streamed, chunk by chunk as it
  arrives, into a child process that parses it, answers its doc without the zip, and on the
  go-ahead (once the rest of the request is valid) decodes and unpacks the zip.
- The zip of a light code body (at most ~190 KB) is decoded in a thread; with a few entries it is
  unpacked in that thread too (zlib, crc32, sha256 and file I/O release the GIL), with more it is
  unpacked by a child: a thread's Python-level loop over thousands of entries takes the GIL for
  whole 5 ms switch intervals, ~15 ms of loop lag on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import lambdalet
from lambdalet.api.errors import AwsError, invalid, request_too_large, service_error
from lambdalet.http11 import BodyTooLarge, Request
from lambdalet.limits import MAX_API_REQUEST, MAX_CODE_REQUEST
from lambdalet.store import request_body as rb
from lambdalet.store.code import CodeStore, InvalidCode, StoredCode
from lambdalet.store.request_body import BodyError

_CHILD_MODULE = "lambdalet.store.request_body"
_REPLY_LIMIT = rb.INLINE_BYTES + 4096  # a child's reply line is light by construction
_PIPE_SIZE = 1 << 20
_CENTRAL_ENTRY = b"PK\x01\x02"  # starts each central directory record: counts a zip's entries (at most)
_THREAD_ENTRIES = 64  # a zip of at most this many entries is unpacked in a thread (~3 ms of work)


def body_error(err: BodyError) -> AwsError:
    """The AWS error for a refused body."""
    if err.kind == rb.JSON:
        return AwsError(400, "InvalidRequestContentException", f"Could not parse request body into json: {err.message}")
    if err.kind == rb.ZIP_TOO_LARGE:
        return AwsError(413, "RequestEntityTooLargeException", err.message)
    if err.kind == rb.CODE:
        return invalid(err.message)
    return service_error(f"An internal error occurred: {err.message}")


def parse_light(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; a body too heavy to parse on the loop is refused unparsed
    (no request of the operations that come here is anywhere near that heavy)."""
    if not raw.strip():
        return {}
    if not rb.is_light(raw):
        raise body_error(rb.heavy_error())
    try:
        return rb.loads_object(raw)
    except BodyError as err:
        raise body_error(err) from err


async def read_json(req: Request, operation: str, limit: int = MAX_API_REQUEST) -> dict[str, Any]:
    """The JSON object body of a request other than a code upload."""
    try:
        raw = await req.read(limit)
    except BodyTooLarge as exc:
        raise request_too_large(operation, limit) from exc
    return parse_light(raw)


class CodeUpload:
    """A CreateFunction / UpdateFunctionCode body without its zip (doc), and the zip, stored (decoded,
    validated, unpacked) only once the rest of the request has been validated. close() when done."""

    def __init__(self, doc: dict[str, Any], has_zip: bool) -> None:
        self.doc = doc
        self.has_zip = has_zip

    async def store(self) -> StoredCode:
        """Decode and unpack the zip; raises AwsError in Lambda's terms."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the upload holds (a child process that was not asked to store)."""


class _InlineUpload(CodeUpload):
    """A light body, parsed on the loop; its zip is decoded in a thread and unpacked in a thread
    (a few entries) or by a child process (more: thousands fit in a light body)."""

    def __init__(self, raw: bytes, doc: dict[str, Any], value: Any, code: CodeStore, operation: str) -> None:
        super().__init__(doc, value is not rb.MISSING)
        self._raw = raw
        self._value = value
        self._code = code
        self._operation = operation

    async def store(self) -> StoredCode:
        try:
            data, stored = await asyncio.to_thread(self._inspect)
        except BodyError as err:
            raise body_error(err) from err
        if os.path.isdir(stored.task_root):
            return stored  # the same zip as another function's
        if data.count(_CENTRAL_ENTRY) > _THREAD_ENTRIES:
            child = await _through_child(self._code, self._operation, [self._raw], len(self._raw), None)
            return await child.store()
        try:
            return await asyncio.to_thread(self._code.put, data)
        except InvalidCode as exc:
            raise invalid(str(exc)) from exc

    def _inspect(self) -> tuple[bytes, StoredCode]:
        """The zip and its facts (in a thread: base64 holds the GIL ~1.5 ms for 190 KB, sha256 not)."""
        data = rb.decode_zip(self._value)
        return data, self._code.describe(data)


class _ChildUpload(CodeUpload):
    """A heavy body, parsed, decoded and unpacked by a child process."""

    def __init__(self, proc: subprocess.Popen, to_child: _PipeWriter, from_child: _LineReader) -> None:
        super().__init__({}, False)
        self._proc = proc
        self._to_child = to_child
        self._from_child = from_child

    @classmethod
    def spawn(cls, code_root: str, operation: str) -> _ChildUpload:
        """Start the child. subprocess uses vfork (~1 ms on the loop, whatever the server's size);
        a fork-based spawn (uvloop's) copies the page tables: ~40 ms for a 300 MB server."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-S", "-m", _CHILD_MODULE, code_root, operation],
                stdin=in_r, stdout=out_w, env=child_env(), cwd=code_root, close_fds=True,
            )
        except BaseException:
            for fd in (in_w, out_r):
                os.close(fd)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(in_w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)  # fewer wake-ups per body
        return cls(proc, _PipeWriter(in_w), _LineReader(out_r, _REPLY_LIMIT))

    async def feed(self, chunk: bytes) -> None:
        """Pass one chunk of the body on (an empty one ends it)."""
        try:
            await self._to_child.write(rb.frame(chunk))
        except OSError as exc:  # EPIPE: the child is gone
            raise service_error("An internal error occurred: the code unpacker exited") from exc

    async def reply(self) -> dict[str, Any]:
        """The child's next answer; an error answer becomes the AWS error."""
        line = await self._from_child.readline()
        if line is None:
            raise service_error("An internal error occurred: the code unpacker exited")
        try:
            doc = rb.loads_object(line, rb.MAX_DEPTH + 1)  # light, and the body's doc one level down
        except BodyError as exc:
            raise service_error("An internal error occurred: the code unpacker answered garbage") from exc
        if "error" in doc:
            err = doc["error"]
            raise body_error(BodyError(err["kind"], err["message"]))
        return doc

    async def store(self) -> StoredCode:
        try:
            try:
                await self._to_child.write(b"1")
            except OSError as exc:
                raise service_error("An internal error occurred: the code unpacker exited") from exc
            stored = (await self.reply())["stored"]
        finally:
            self.close()
        return StoredCode(stored["sha_hex"], stored["sha256_b64"], stored["size"], stored["task_root"])

    def close(self) -> None:
        """Closing stdin ends the child: before the body's end it sees a cut body, after it sees no
        go-ahead; while unpacking it finishes first (and leaves a complete task root or nothing)."""
        if self._to_child.fd < 0 and self._from_child.fd < 0:
            return
        self._to_child.close()
        self._from_child.close()
        reaper = asyncio.get_running_loop().create_task(_reap(self._proc))
        _reapers.add(reaper)
        reaper.add_done_callback(_reapers.discard)


_reapers: set[asyncio.Task[None]] = set()


async def _reap(proc: subprocess.Popen) -> None:
    """Collect the child's exit status without blocking the loop (it exits once its stdin closes)."""
    while proc.poll() is None:
        await asyncio.sleep(0.01)


class _PipeWriter:
    """The non-blocking write end of a pipe, written from the loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.fd < 0:
                raise BrokenPipeError("closed")
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await _ready(self.fd, writable=True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _LineReader:
    """The non-blocking read end of a pipe, read line by line from the loop."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = b""
        os.set_blocking(fd, False)

    async def readline(self) -> bytes | None:
        """The next line, None at the end of the pipe (or past limit: the child is not ours)."""
        while b"\n" not in self.buf:
            if self.fd < 0 or len(self.buf) > self.limit:
                return None
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                await _ready(self.fd, writable=False)
                continue
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def _ready(fd: int, *, writable: bool) -> None:
    """Wait until fd can be written (or read)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


def child_env() -> dict[str, str]:
    """The server's environment, with lambdalet importable without site-packages (-S starts faster)."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(lambdalet.__file__)))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": src + (os.pathsep + path if path else "")}


async def check_json_payload(payload: bytes, code: CodeStore) -> None:
    """Check that an Invoke payload too heavy to parse on the loop is JSON, in a child process;
    raises the AwsError the caller gets (InvalidRequestContentException)."""
    upload = await _through_child(code, "Invoke", [payload], len(payload), None)
    upload.close()


async def receive_code(req: Request, code: CodeStore, operation: str) -> CodeUpload:
    """Receive a CreateFunction / UpdateFunctionCode body: parsed here if light, else by a child."""
    declared = req.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > MAX_CODE_REQUEST):
        raise request_too_large(operation, MAX_CODE_REQUEST)
    body = req.stream()
    head: list[bytes] = []
    size = 0
    async for chunk in body:
        head.append(chunk)
        size += len(chunk)
        if size > rb.INLINE_BYTES:
            break
    else:  # the whole body is here, and small: a zip's base64 holds no separators, so a code request
        # this small that is not light is refused right away
        raw = b"".join(head)
        doc = parse_light(raw)
        return _InlineUpload(raw, doc, rb.take_zip(doc, operation), code, operation)
    return await _through_child(code, operation, head, size, body)


async def _through_child(code: CodeStore, operation: str, head: list[bytes], size: int,
                         rest: AsyncIterator[bytes] | None) -> _ChildUpload:
    """Stream the body (what arrived, then the rest as it arrives) into a child and take its first
    answer: the body's doc, without the zip."""
    upload = _ChildUpload.spawn(code.root, operation)
    try:
        for chunk in head:
            await upload.feed(chunk)
        head.clear()
        if rest is not None:
            async for chunk in rest:
                size += len(chunk)
                if size > MAX_CODE_REQUEST:
                    raise request_too_large(operation, MAX_CODE_REQUEST)
                await upload.feed(chunk)
        await upload.feed(b"")
        reply = await upload.reply()
    except BaseException:
        upload.close()
        raise
    upload.doc, upload.has_zip = reply["doc"], bool(reply["zip"])
    return upload
