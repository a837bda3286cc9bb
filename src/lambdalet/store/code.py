"""Function code: validate a deployment zip and unpack it, once per distinct zip, into a task root."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass

from lambdalet.limits import MAX_UNZIPPED


class InvalidCode(ValueError):
    """The zip cannot be used as function code; the message is Lambda's."""


@dataclass
class StoredCode:
    sha_hex: str
    sha256_b64: str  # CodeSha256 as Lambda reports it
    size: int
    task_root: str


class CodeStore:
    """Zips and their unpacked task roots under <data-dir>/code."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def task_root(self, sha_hex: str) -> str:
        return os.path.join(self.root, sha_hex, "task")

    def zip_path(self, sha_hex: str) -> str:
        return os.path.join(self.root, sha_hex + ".zip")

    def put(self, data: bytes) -> StoredCode:
        """Validate and unpack a zip; identical zips share one task root."""
        digest = hashlib.sha256(data)
        sha_hex = digest.hexdigest()
        stored = StoredCode(sha_hex, base64.b64encode(digest.digest()).decode(), len(data), self.task_root(sha_hex))
        if os.path.isdir(stored.task_root):
            return stored
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise InvalidCode(
                "Could not unzip uploaded file. Please check your file, then try to upload again."
            ) from exc
        if not infos:
            raise InvalidCode("Uploaded file must be a non-empty zip")
        total = sum(i.file_size for i in infos)
        if total > MAX_UNZIPPED:
            raise InvalidCode(f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")
        staging = tempfile.mkdtemp(dir=self.root, prefix=".unpack-")
        try:
            _extract(archive, infos, staging)
            _read_only(staging)
            final_dir = os.path.join(self.root, sha_hex)
            os.makedirs(final_dir, exist_ok=True)
            with open(self.zip_path(sha_hex), "wb") as f:
                f.write(data)
            try:
                os.rename(staging, stored.task_root)
            except OSError:
                if not os.path.isdir(stored.task_root):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return stored

    def read_zip(self, sha_hex: str) -> bytes | None:
        try:
            with open(self.zip_path(sha_hex), "rb") as f:
                return f.read()
        except OSError:
            return None


def _read_only(root: str) -> None:
    """Lambda's task root is read-only; so is the unpacked code, shared by every environment."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o222)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555)
    os.chmod(root, 0o555)


def _safe_relpath(name: str) -> str:
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if norm.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise InvalidCode(f"Could not unzip uploaded file: the entry '{name}' points outside the package.")
    return os.path.join(*parts) if parts else ""


def _extract(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: str) -> None:
    dest_real = os.path.realpath(dest)
    for info in infos:
        rel = _safe_relpath(info.filename)
        if not rel:
            continue
        target = os.path.join(dest, rel)
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_ISDIR(mode):
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if stat.S_ISLNK(mode):
            link = archive.read(info).decode("utf-8", "replace")
            resolved = os.path.realpath(os.path.join(os.path.dirname(target), link))
            if os.path.isabs(link) or not (resolved == dest_real or resolved.startswith(dest_real + os.sep)):
                raise InvalidCode(f"Could not unzip uploaded file: the link '{info.filename}' points outside "
                                  "the package.")
            os.symlink(link, target)
            continue
        with archive.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        perms = stat.S_IMODE(mode) if mode else 0o644
        os.chmod(target, perms | 0o444 if perms else 0o644)
