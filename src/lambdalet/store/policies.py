"""Functions' tags and resource-based policies, in SQLite (they outlive restarts, not their function)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS function_tags (
    function TEXT PRIMARY KEY,
    tags TEXT NOT NULL                -- {key: value} (JSON)
);
CREATE TABLE IF NOT EXISTS function_policies (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,          -- '$LATEST' for the unqualified function, else a version or alias
    statements TEXT NOT NULL,         -- the policy's Statement list (JSON)
    PRIMARY KEY (function, qualifier)
);
"""


class PolicyStore:
    """Tags (per function) and policy statements (per function and qualifier)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(_SCHEMA)

    def tags(self, function: str) -> dict[str, str]:
        row = self.db.execute("SELECT tags FROM function_tags WHERE function = ?", (function,)).fetchone()
        return json.loads(row[0]) if row else {}

    def set_tags(self, function: str, tags: dict[str, str]) -> None:
        if not tags:
            self.db.execute("DELETE FROM function_tags WHERE function = ?", (function,))
            return
        self.db.execute("INSERT INTO function_tags (function, tags) VALUES (?, ?) ON CONFLICT (function)"
                        " DO UPDATE SET tags = excluded.tags", (function, json.dumps(tags)))

    def statements(self, function: str, qualifier: str) -> list[dict[str, Any]]:
        row = self.db.execute("SELECT statements FROM function_policies WHERE function = ? AND qualifier = ?",
                              (function, qualifier)).fetchone()
        return json.loads(row[0]) if row else []

    def set_statements(self, function: str, qualifier: str, statements: list[dict[str, Any]]) -> None:
        """Store the policy's statements; an empty list removes the policy."""
        if not statements:
            self.db.execute("DELETE FROM function_policies WHERE function = ? AND qualifier = ?",
                            (function, qualifier))
            return
        self.db.execute("INSERT INTO function_policies (function, qualifier, statements) VALUES (?, ?, ?)"
                        " ON CONFLICT (function, qualifier) DO UPDATE SET statements = excluded.statements",
                        (function, qualifier, json.dumps(statements)))

    def forget(self, function: str) -> None:
        """Drop everything of a deleted function (a new one of the same name starts bare, as on Lambda)."""
        with self.db:
            self.db.execute("DELETE FROM function_tags WHERE function = ?", (function,))
            self.db.execute("DELETE FROM function_policies WHERE function = ?", (function,))
