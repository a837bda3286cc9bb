"""Log groups, streams and events (the CloudWatch Logs model), buffered in memory, kept in SQLite.

Appends are buffered and written in batches so logging never slows the invoke path; every query
flushes first, so readers always see every event appended before they asked.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass

_FLUSH_DELAY = 0.05
_FLUSH_AT = 2000


@dataclass
class LogEvent:
    id: int
    stream: str
    timestamp: int
    ingestion: int
    message: str


class LogStore:
    """Implements the environment's LogSink and the queries behind the Logs API."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._pending: list[tuple[str, str, int, int, str]] = []
        self._known_streams: set[tuple[str, str]] = set()
        self._flush_handle: asyncio.TimerHandle | None = None

    # -- writing
    def append(self, group: str, stream: str, message: str, ts_ms: int) -> None:
        if (group, stream) not in self._known_streams:
            self._known_streams.add((group, stream))
            self.db.execute("INSERT OR IGNORE INTO log_groups (name, created) VALUES (?, ?)", (group, ts_ms))
            self.db.execute("INSERT OR IGNORE INTO log_streams (group_name, name, created) VALUES (?, ?, ?)",
                            (group, stream, ts_ms))
        self._pending.append((group, stream, ts_ms, int(time.time() * 1000), message))
        if len(self._pending) >= _FLUSH_AT:
            self.flush()
        elif self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_handle = loop.call_later(_FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        streams: dict[tuple[str, str], list[int]] = {}
        for group, stream, ts, ingest, message in rows:
            s = streams.setdefault((group, stream), [ts, ts, ingest, 0])
            s[0] = min(s[0], ts)
            s[1] = max(s[1], ts)
            s[2] = max(s[2], ingest)
            s[3] += len(message.encode())
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO log_events (group_name, stream_name, timestamp, ingestion, message)"
                " VALUES (?, ?, ?, ?, ?)", rows)
            for (group, stream), (first, last, ingest, size) in streams.items():
                self.db.execute(
                    "UPDATE log_streams SET first_event = COALESCE(MIN(first_event, ?), ?),"
                    " last_event = MAX(COALESCE(last_event, 0), ?), last_ingestion = ?,"
                    " stored_bytes = stored_bytes + ? WHERE group_name = ? AND name = ?",
                    (first, first, last, ingest, size, group, stream))

    def delete_group(self, group: str) -> None:
        self.flush()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM log_events WHERE group_name = ?", (group,))
            self.db.execute("DELETE FROM log_streams WHERE group_name = ?", (group,))
            self.db.execute("DELETE FROM log_groups WHERE name = ?", (group,))
        self._known_streams = {k for k in self._known_streams if k[0] != group}

    # -- reading
    def groups(self, prefix: str = "") -> list[tuple[str, int, int]]:
        """(name, created, stored bytes) of groups whose name starts with prefix, by name."""
        self.flush()
        return self.db.execute(
            "SELECT g.name, g.created, COALESCE((SELECT SUM(stored_bytes) FROM log_streams s"
            " WHERE s.group_name = g.name), 0) FROM log_groups g WHERE substr(g.name, 1, ?) = ? ORDER BY g.name",
            (len(prefix), prefix)).fetchall()

    def group_exists(self, group: str) -> bool:
        self.flush()
        return self.db.execute("SELECT 1 FROM log_groups WHERE name = ?", (group,)).fetchone() is not None

    def streams(self, group: str, prefix: str = "", by_last_event: bool = False, descending: bool = False
                ) -> list[tuple]:
        """(name, created, first, last, last ingestion, stored bytes) of a group's streams."""
        self.flush()
        order = "COALESCE(last_event, created)" if by_last_event else "name"
        direction = "DESC" if descending else "ASC"
        return self.db.execute(
            "SELECT name, created, first_event, last_event, last_ingestion, stored_bytes FROM log_streams"
            f" WHERE group_name = ? AND substr(name, 1, ?) = ? ORDER BY {order} {direction}, name {direction}",
            (group, len(prefix), prefix)).fetchall()

    def stream_exists(self, group: str, stream: str) -> bool:
        self.flush()
        return self.db.execute("SELECT 1 FROM log_streams WHERE group_name = ? AND name = ?",
                               (group, stream)).fetchone() is not None

    def stream_events(self, group: str, stream: str, *, after_id: int | None = None,
                      before_id: int | None = None, start: int | None = None, end: int | None = None,
                      limit: int = 10000, from_head: bool = True) -> list[LogEvent]:
        """Events of one stream in order; from the head, or the newest `limit` ones."""
        self.flush()
        sql = ["SELECT id, stream_name, timestamp, ingestion, message FROM log_events"
               " WHERE group_name = ? AND stream_name = ?"]
        args: list = [group, stream]
        for cond, value in (("id > ?", after_id), ("id < ?", before_id), ("timestamp >= ?", start),
                            ("timestamp < ?", end)):
            if value is not None:
                sql.append("AND " + cond)
                args.append(value)
        sql.append("ORDER BY id " + ("ASC" if from_head else "DESC") + " LIMIT ?")
        args.append(limit)
        rows = [LogEvent(*r) for r in self.db.execute(" ".join(sql), args)]
        if not from_head:
            rows.reverse()
        return rows

    def group_events(self, group: str, *, streams: list[str] | None = None, stream_prefix: str = "",
                     start: int | None = None, end: int | None = None, after_id: int = 0,
                     batch: int = 10000) -> list[LogEvent]:
        """A batch of a group's events in (timestamp, id) order after event after_id."""
        self.flush()
        sql = ["SELECT id, stream_name, timestamp, ingestion, message FROM log_events WHERE group_name = ?"]
        args: list = [group]
        if streams:
            sql.append(f"AND stream_name IN ({','.join('?' * len(streams))})")
            args.extend(streams)
        if stream_prefix:
            sql.append("AND substr(stream_name, 1, ?) = ?")
            args.extend([len(stream_prefix), stream_prefix])
        if start is not None:
            sql.append("AND timestamp >= ?")
            args.append(start)
        if end is not None:
            sql.append("AND timestamp <= ?")
            args.append(end)
        sql.append("AND id > ? ORDER BY id LIMIT ?")
        args.extend([after_id, batch])
        return [LogEvent(*r) for r in self.db.execute(" ".join(sql), args)]
