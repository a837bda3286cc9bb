"""Recursive loop detection settings (PutFunctionRecursionConfig), per function."""

from __future__ import annotations

import sqlite3

DEFAULT = "Terminate"


class RecursionConfigStore:
    """The recursion_configs table: a function without a row has Lambda's default, Terminate."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, function: str) -> str:
        row = self.db.execute("SELECT recursive_loop FROM recursion_configs WHERE function = ?", (function,)).fetchone()
        return DEFAULT if row is None else row[0]

    def put(self, function: str, recursive_loop: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO recursion_configs (function, recursive_loop) VALUES (?, ?)",
                        (function, recursive_loop))

    def delete_function(self, function: str) -> None:
        self.db.execute("DELETE FROM recursion_configs WHERE function = ?", (function,))
