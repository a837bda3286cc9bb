"""Event invoke configurations (PutFunctionEventInvokeConfig and friends), one per function qualifier."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


class EventConfigStore:
    """The event_invoke_configs table, cached in memory: the async worker reads it for every event."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        rows = db.execute("SELECT function, qualifier, config FROM event_invoke_configs")
        self._cache: dict[tuple[str, str], dict[str, Any]] = {(f, q): json.loads(c) for f, q, c in rows}

    def get(self, function: str, qualifier: str) -> dict[str, Any] | None:
        return self._cache.get((function, qualifier))

    def put(self, function: str, qualifier: str, config: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO event_invoke_configs (function, qualifier, config) VALUES (?, ?, ?)",
                        (function, qualifier, json.dumps(config)))
        self._cache[(function, qualifier)] = config

    def delete(self, function: str, qualifier: str) -> bool:
        """Remove one configuration; False when there was none."""
        self.db.execute("DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?", (function, qualifier))
        return self._cache.pop((function, qualifier), None) is not None

    def of_function(self, function: str) -> list[tuple[str, dict[str, Any]]]:
        """(qualifier, configuration) pairs of a function, by qualifier."""
        return sorted((q, c) for (f, q), c in self._cache.items() if f == function)

    def delete_function(self, function: str) -> None:
        self.db.execute("DELETE FROM event_invoke_configs WHERE function = ?", (function,))
        for key in [k for k in self._cache if k[0] == function]:
            del self._cache[key]
