"""Accepted asynchronous (Event) invocations, persisted until they have run, so none is lost."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass


@dataclass
class AsyncEvent:
    id: int
    function: str
    request_id: str
    payload: bytes
    client_context: str | None
    attempts: int
    created: float


class AsyncEventQueue:
    """A durable queue of Event invocations with per-event retry times."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def put(self, function: str, request_id: str, payload: bytes, client_context: str | None) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO async_events (function, request_id, payload, client_context, attempts, not_before,"
            " created) VALUES (?, ?, ?, ?, 0, ?, ?)", (function, request_id, payload, client_context, now, now))

    def due(self, limit: int = 100) -> list[AsyncEvent]:
        rows = self.db.execute(
            "SELECT id, function, request_id, payload, client_context, attempts, created FROM async_events"
            " WHERE not_before <= ? ORDER BY not_before, id LIMIT ?", (time.time(), limit)).fetchall()
        return [AsyncEvent(*r) for r in rows]

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT MIN(not_before) FROM async_events").fetchone()
        return row[0] if row else None

    def postpone(self, event_id: int, delay: float, attempted: bool) -> None:
        self.db.execute("UPDATE async_events SET not_before = ?, attempts = attempts + ? WHERE id = ?",
                        (time.time() + delay, 1 if attempted else 0, event_id))

    def complete(self, event_id: int, follow_ups: list[tuple[str, str, bytes]]) -> None:
        """Remove an event that is done and queue the (function, request id, payload) Event invocations it
        leads to (its destinations), in one transaction: a crash in between neither loses nor repeats them."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            for function, request_id, payload in follow_ups:
                self.db.execute(
                    "INSERT INTO async_events (function, request_id, payload, client_context, attempts, not_before,"
                    " created) VALUES (?, ?, ?, NULL, 0, ?, ?)", (function, request_id, payload, now, now))
            self.db.execute("DELETE FROM async_events WHERE id = ?", (event_id,))

    def delete(self, event_id: int) -> None:
        self.db.execute("DELETE FROM async_events WHERE id = ?", (event_id,))

    def delete_function(self, function: str) -> None:
        """Drop the function's queued events, those for its versions and aliases (`name:qualifier`) too."""
        self.db.execute("DELETE FROM async_events WHERE function = ? OR substr(function, 1, ?) = ?",
                        (function, len(function) + 1, function + ":"))
