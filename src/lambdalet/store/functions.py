"""Function records: configuration (in AWS's FunctionConfiguration shape), code, URL config, concurrency."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class FunctionRecord:
    name: str
    config: dict[str, Any]
    code_sha: str
    url_config: dict[str, Any] | None
    reserved_concurrency: int | None
    version: ClassVar[str] = "$LATEST"  # (a class constant, not a property: read on every invoke)

    @property
    def pool_key(self) -> str:
        """The scheduler's key for the environments running this record's code ($LATEST: the name)."""
        return self.name


class FunctionStore:
    """CRUD over the functions table, with an in-memory cache for the invoke path."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._cache: dict[str, FunctionRecord] = {}
        for row in db.execute("SELECT name, config, code_sha, url_config, reserved_concurrency FROM functions"):
            rec = _record(row)
            self._cache[rec.name] = rec

    def get(self, name: str) -> FunctionRecord | None:
        return self._cache.get(name)

    def all(self) -> list[FunctionRecord]:
        return [self._cache[k] for k in sorted(self._cache)]

    def create(self, rec: FunctionRecord) -> bool:
        """Insert; False when the name is taken."""
        try:
            self.db.execute(
                "INSERT INTO functions (name, config, code_sha, url_config, reserved_concurrency, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (rec.name, json.dumps(rec.config), rec.code_sha, _dump(rec.url_config),
                 rec.reserved_concurrency, time.time()))
        except sqlite3.IntegrityError:
            return False
        self._cache[rec.name] = rec
        return True

    def save(self, rec: FunctionRecord) -> None:
        self.db.execute(
            "UPDATE functions SET config = ?, code_sha = ?, url_config = ?, reserved_concurrency = ?"
            " WHERE name = ?",
            (json.dumps(rec.config), rec.code_sha, _dump(rec.url_config), rec.reserved_concurrency, rec.name))
        self._cache[rec.name] = rec

    def delete(self, name: str) -> None:
        self.db.execute("DELETE FROM functions WHERE name = ?", (name,))
        self._cache.pop(name, None)

    def by_url_id(self, url_id: str) -> FunctionRecord | None:
        for rec in self._cache.values():
            if rec.url_config and rec.url_config.get("_UrlId") == url_id:
                return rec
        return None


def _dump(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _record(row: tuple) -> FunctionRecord:
    name, config, code_sha, url_config, reserved = row
    return FunctionRecord(name, json.loads(config), code_sha, json.loads(url_config) if url_config else None,
                          reserved)
