"""Published versions and aliases of functions, kept in SQLite and cached for the invoke path."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from lambdalet.store.functions import FunctionRecord, FunctionStore


@dataclass
class VersionRecord:
    """One published version: its own FunctionConfiguration and code, never changed after publishing."""

    name: str
    version: str  # "1", "2", ...
    config: dict[str, Any]
    code_sha: str
    source_revision: str  # the RevisionId of $LATEST it was published from
    function: FunctionRecord  # the function it belongs to (reserved concurrency is the function's)

    @property
    def pool_key(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def reserved_concurrency(self) -> int | None:
        return self.function.reserved_concurrency

    @property
    def url_config(self) -> None:
        return None  # function URLs are on $LATEST or an alias, never on a version


@dataclass
class AliasRecord:
    """An alias: its AliasConfiguration as AWS returns it, and its function URL config, if any."""

    function: str
    name: str
    config: dict[str, Any]
    url_config: dict[str, Any] | None = None


class VersionStore:
    """CRUD over the function_versions, function_aliases and version_counters tables."""

    def __init__(self, db: sqlite3.Connection, functions: FunctionStore) -> None:
        self.db = db
        self._versions: dict[str, dict[str, VersionRecord]] = {}
        self._aliases: dict[str, dict[str, AliasRecord]] = {}
        for name, version, config, code_sha, source in db.execute(
                "SELECT function, version, config, code_sha, source_revision FROM function_versions"
                " ORDER BY function, version"):
            rec = functions.get(name)
            if rec is not None:
                self._versions.setdefault(name, {})[str(version)] = VersionRecord(
                    name, str(version), json.loads(config), code_sha, source, rec)
        for name, alias, config, url_config in db.execute(
                "SELECT function, name, config, url_config FROM function_aliases ORDER BY function, name"):
            self._aliases.setdefault(name, {})[alias] = AliasRecord(
                name, alias, json.loads(config), json.loads(url_config) if url_config else None)

    # -- versions
    def versions(self, name: str) -> list[VersionRecord]:
        """The function's published versions, oldest first."""
        return sorted(self._versions.get(name, {}).values(), key=lambda v: int(v.version))

    def version(self, name: str, version: str) -> VersionRecord | None:
        found = self._versions.get(name)
        return None if found is None else found.get(version)

    def last_number(self, name: str) -> int:
        """The number of the last version ever published (numbers are never reused), 0 for none."""
        row = self.db.execute("SELECT last FROM version_counters WHERE function = ?", (name,)).fetchone()
        return 0 if row is None else row[0]

    def add_version(self, rec: VersionRecord) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO function_versions (function, version, config, code_sha, source_revision)"
                " VALUES (?, ?, ?, ?, ?)",
                (rec.name, int(rec.version), json.dumps(rec.config), rec.code_sha, rec.source_revision))
            self.db.execute(
                "INSERT INTO version_counters (function, last) VALUES (?, ?)"
                " ON CONFLICT (function) DO UPDATE SET last = excluded.last", (rec.name, int(rec.version)))
        self._versions.setdefault(rec.name, {})[rec.version] = rec

    def save_version(self, rec: VersionRecord) -> None:
        """Store a version's settled state (its configuration is otherwise immutable)."""
        self.db.execute("UPDATE function_versions SET config = ? WHERE function = ? AND version = ?",
                        (json.dumps(rec.config), rec.name, int(rec.version)))

    def delete_version(self, name: str, version: str) -> None:
        self.db.execute("DELETE FROM function_versions WHERE function = ? AND version = ?", (name, int(version)))
        self.delete_provisioned(name, version)
        self._versions.get(name, {}).pop(version, None)

    # -- aliases
    def aliases(self, name: str) -> list[AliasRecord]:
        return sorted(self._aliases.get(name, {}).values(), key=lambda a: a.name)

    def alias(self, name: str, alias: str) -> AliasRecord | None:
        found = self._aliases.get(name)
        return None if found is None else found.get(alias)

    def save_alias(self, rec: AliasRecord) -> None:
        self.db.execute(
            "INSERT INTO function_aliases (function, name, config, url_config) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (function, name) DO UPDATE SET config = excluded.config, url_config = excluded.url_config",
            (rec.function, rec.name, json.dumps(rec.config), None if rec.url_config is None else
             json.dumps(rec.url_config)))
        self._aliases.setdefault(rec.function, {})[rec.name] = rec

    def delete_alias(self, name: str, alias: str) -> None:
        self.db.execute("DELETE FROM function_aliases WHERE function = ? AND name = ?", (name, alias))
        self.delete_provisioned(name, alias)
        self._aliases.get(name, {}).pop(alias, None)

    def alias_by_url_id(self, url_id: str) -> AliasRecord | None:
        for aliases in self._aliases.values():
            for rec in aliases.values():
                if rec.url_config and rec.url_config.get("_UrlId") == url_id:
                    return rec
        return None

    # -- provisioned concurrency
    def provisioned(self, name: str) -> dict[str, tuple[int, str]]:
        """The function's provisioned concurrency configs: {qualifier: (requested, last modified)}."""
        return {q: (n, modified) for q, n, modified in self.db.execute(
            "SELECT qualifier, requested, modified FROM provisioned_concurrency WHERE function = ?"
            " ORDER BY qualifier", (name,))}

    def save_provisioned(self, name: str, qualifier: str, requested: int, modified: str) -> None:
        self.db.execute(
            "INSERT INTO provisioned_concurrency (function, qualifier, requested, modified) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (function, qualifier) DO UPDATE SET requested = excluded.requested,"
            " modified = excluded.modified", (name, qualifier, requested, modified))

    def delete_provisioned(self, name: str, qualifier: str) -> None:
        self.db.execute("DELETE FROM provisioned_concurrency WHERE function = ? AND qualifier = ?", (name, qualifier))

    # -- the whole function
    def delete_function(self, name: str) -> None:
        """Forget every version, alias, provisioned concurrency config and the version counter of a function."""
        with self.db:
            self.db.execute("BEGIN")
            for table in ("function_versions", "function_aliases", "version_counters", "provisioned_concurrency"):
                self.db.execute(f"DELETE FROM {table} WHERE function = ?", (name,))
        self._versions.pop(name, None)
        self._aliases.pop(name, None)
