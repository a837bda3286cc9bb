"""Function code: validate a deployment zip and unpack it, once per distinct zip, into a task root.

Unpacking never writes through a symbolic link, however the zip chains them: the entries are first
planned as a tree (a link is a leaf: nothing may sit below it, no name may appear twice, no file may
sit where a directory is), then the directories are made and the files written while no link exists
yet, and the links are made last. Each link's target is then resolved in the finished tree
(os.path.realpath) and must stay inside it. Any problem is InvalidCode with Lambda's message, and the
staging directory is removed, so a failed upload leaves nothing behind.

This module is imported by the code-request child process (lambdalet.store.request_body) too: it
stays stdlib-only and cheap to import (no dataclasses, no typing).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import stat
import tempfile
import zipfile

from lambdalet.limits import MAX_UNZIPPED

UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."
_MAX_LINK_TARGET = 4095  # PATH_MAX - 1: a longer link target cannot be made anyway
_COPY_CHUNK = 1 << 20
_STAGING_PREFIX = ".unpack-"
_ZIP_TEMP_PREFIX = ".zip-"


class InvalidCode(ValueError):
    """The zip cannot be used as function code; the message is Lambda's."""


class StoredCode:
    """A zip that is stored and unpacked: what the function configuration reports about it."""

    __slots__ = ("sha256_b64", "sha_hex", "size", "task_root")

    def __init__(self, sha_hex: str, sha256_b64: str, size: int, task_root: str) -> None:
        self.sha_hex = sha_hex
        self.sha256_b64 = sha256_b64  # CodeSha256 as Lambda reports it
        self.size = size
        self.task_root = task_root

    def __repr__(self) -> str:
        return f"StoredCode({self.sha_hex!r}, size={self.size})"


class _Entry:
    """One planned node of the unpacked tree."""

    __slots__ = ("info", "kind", "rel")

    def __init__(self, rel: str, kind: str, info: zipfile.ZipInfo | None) -> None:
        self.rel = rel  # path below the destination, "/"-separated, normalized
        self.kind = kind  # "dir", "file" or "link"
        self.info = info  # None for a directory only implied by a deeper entry


class CodeStore:
    """Zips and their unpacked task roots under <data-dir>/code."""

    def __init__(self, root: str, *, sweep: bool = True) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        if sweep:
            self.sweep()

    def task_root(self, sha_hex: str) -> str:
        return os.path.join(self.root, sha_hex, "task")

    def zip_path(self, sha_hex: str) -> str:
        return os.path.join(self.root, sha_hex + ".zip")

    def sweep(self) -> None:
        """Remove what an interrupted upload left behind (a staging directory, a half-written zip)."""
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith(_STAGING_PREFIX):
                remove_tree(path)
            elif name.startswith(_ZIP_TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def put(self, data: bytes) -> StoredCode:
        """Validate and unpack a zip (raises InvalidCode); identical zips share one task root."""
        stored = self.describe(data)
        if os.path.isdir(stored.task_root):
            return stored
        staging = tempfile.mkdtemp(dir=self.root, prefix=_STAGING_PREFIX)
        try:
            unpack(data, staging)
            self._keep_zip(stored.sha_hex, data)
            os.makedirs(os.path.dirname(stored.task_root), exist_ok=True)
            try:
                os.rename(staging, stored.task_root)  # moving a directory needs it writable
            except OSError:
                if not os.path.isdir(stored.task_root):
                    raise
            else:
                os.chmod(stored.task_root, 0o555)
        except OSError as exc:
            raise InvalidCode(UNZIP_ERROR) from exc
        finally:
            if os.path.lexists(staging):
                remove_tree(staging)
        return stored

    def describe(self, data: bytes) -> StoredCode:
        """The facts Lambda reports about a zip (sha256 releases the GIL on big inputs)."""
        digest = hashlib.sha256(data)
        sha_hex = digest.hexdigest()
        return StoredCode(sha_hex, base64.b64encode(digest.digest()).decode(), len(data), self.task_root(sha_hex))

    def _keep_zip(self, sha_hex: str, data: bytes) -> None:
        """Write the zip for GetFunction's Code.Location, atomically (a reader never sees half of it)."""
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=_ZIP_TEMP_PREFIX)
        try:
            with open(fd, "wb") as f:
                f.write(data)
                os.fchmod(f.fileno(), 0o644)
            os.replace(temp, self.zip_path(sha_hex))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def read_zip(self, sha_hex: str) -> bytes | None:
        try:
            with open(self.zip_path(sha_hex), "rb") as f:
                return f.read()
        except OSError:
            return None


def unpack(data: bytes, dest: str) -> None:
    """Unpack zip bytes into the empty directory dest, whose contents end up read-only (dest itself
    is left for the caller to seal once it is in place); raises InvalidCode.

    On failure dest may hold part of the tree (never anything outside it): the caller removes it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except Exception as exc:  # BadZipFile, but a hostile zip reaches odd corners of zipfile too
        raise InvalidCode(UNZIP_ERROR) from exc
    if not infos:
        raise InvalidCode("Uploaded file must be a non-empty zip")
    if sum(i.file_size for i in infos) >= MAX_UNZIPPED:
        raise InvalidCode(f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")
    entries = plan(infos)
    try:
        _make_dirs(dest, entries)
        _write_files(archive, dest, entries)
        _make_links(archive, dest, entries)
        _verify_links(dest, entries)
        _seal(dest, entries)
    except InvalidCode:
        raise
    except Exception as exc:  # OSError, BadZipFile (CRC), zlib.error, EOFError, RecursionError, ...
        raise InvalidCode(UNZIP_ERROR) from exc


def plan(infos: list[zipfile.ZipInfo]) -> list[_Entry]:
    """The tree the zip describes, parents before children; raises InvalidCode on any conflict."""
    kinds: dict[str, _Entry] = {}
    for info in infos:
        parts = _safe_parts(info.filename)
        if not parts:
            continue
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            known = kinds.get(parent)
            if known is None:
                kinds[parent] = _Entry(parent, "dir", None)
            elif known.kind != "dir":
                raise InvalidCode(UNZIP_ERROR)  # a file or a link where a directory is needed
        rel = "/".join(parts)
        kind = _kind(info)
        known = kinds.get(rel)
        if known is not None:
            if known.kind == kind == "dir":
                continue
            raise InvalidCode(UNZIP_ERROR)  # the same name twice
        kinds[rel] = _Entry(rel, kind, info)
    return list(kinds.values())


def _kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.filename.endswith("/"):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file"


def _safe_parts(name: str) -> tuple[str, ...]:
    """The components of an entry's name below the destination; raises InvalidCode if it leaves it."""
    norm = name.replace("\\", "/")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if norm.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise InvalidCode(f"Could not unzip uploaded file: the entry '{name}' points outside the package.")
    if any("\0" in p for p in parts):
        raise InvalidCode(UNZIP_ERROR)
    return parts


def _path(dest: str, rel: str) -> str:
    return os.path.join(dest, *rel.split("/"))


def _make_dirs(dest: str, entries: list[_Entry]) -> None:
    for entry in entries:
        if entry.kind == "dir":
            os.mkdir(_path(dest, entry.rel), 0o755)


def _file_mode(info: zipfile.ZipInfo) -> int:
    """Read-only, executable where the zip says so; no set-id bits."""
    perms = stat.S_IMODE(info.external_attr >> 16) & 0o777
    return ((perms or 0o644) | 0o444) & 0o555


def _write_files(archive: zipfile.ZipFile, dest: str, entries: list[_Entry]) -> None:
    """Write every regular file; no link exists yet, and O_EXCL | O_NOFOLLOW make sure of it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for entry in entries:
        if entry.kind != "file" or entry.info is None:
            continue
        fd = os.open(_path(dest, entry.rel), flags, 0o600)
        with open(fd, "wb") as out, archive.open(entry.info) as src:
            while chunk := src.read(_COPY_CHUNK):
                out.write(chunk)
            os.fchmod(out.fileno(), _file_mode(entry.info))


def _make_links(archive: zipfile.ZipFile, dest: str, entries: list[_Entry]) -> None:
    for entry in entries:
        if entry.kind != "link" or entry.info is None:
            continue
        if entry.info.file_size > _MAX_LINK_TARGET:
            raise InvalidCode(UNZIP_ERROR)
        target = archive.read(entry.info).decode("utf-8", "surrogateescape")
        if os.path.isabs(target):
            raise _outside(entry)
        os.symlink(target, _path(dest, entry.rel))


def _verify_links(dest: str, entries: list[_Entry]) -> None:
    """Every link, followed through the finished tree (chains included), must stay inside it."""
    root = os.path.realpath(dest)
    for entry in entries:
        if entry.kind != "link":
            continue
        resolved = os.path.realpath(_path(dest, entry.rel))
        if resolved != root and not resolved.startswith(root + os.sep):
            raise _outside(entry)


def _outside(entry: _Entry) -> InvalidCode:
    name = entry.info.filename if entry.info is not None else entry.rel
    return InvalidCode(f"Could not unzip uploaded file: the link '{name}' points outside the package.")


def _seal(dest: str, entries: list[_Entry]) -> None:
    """Lambda's task root is read-only; so is the unpacked code, shared by every environment."""
    for entry in reversed(entries):
        if entry.kind == "dir":
            os.chmod(_path(dest, entry.rel), 0o555)


def remove_tree(path: str) -> None:
    """Remove a directory tree, read-only parts included, without recursion and without following
    links; errors are ignored (what cannot be removed stays)."""
    dirs: list[str] = []
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                os.unlink(current)
                continue
            os.chmod(current, 0o700)
            with os.scandir(current) as it:
                children = list(it)
        except OSError:
            continue
        dirs.append(current)
        for child in children:
            try:
                is_dir = child.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(child.path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(child.path)
    for current in reversed(dirs):
        with contextlib.suppress(OSError):
            os.rmdir(current)
