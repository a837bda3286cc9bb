"""Log groups, streams and events (the CloudWatch Logs model), buffered in memory, kept in SQLite.

Appends are buffered and committed in batches (every 50 ms, or 2,000 events), so logging never slows
the invoke path; every query flushes first, so readers always see every event appended before they
asked. A flush stores each group's events as one chunk: one log_chunks row holding their timestamps
and messages packed stream by stream (database.pack_chunk), with their time range and one ingestion
time (the commit's), and one update per stream of its totals and its first and last chunk. An event's
id is its chunk's id << CHUNK_SHIFT | its index in the chunk, so ids grow in the order events were
stored, across the whole store (within a flush, stream by stream). With 8 streams and 80 invokes a
flush (~1,600 warm invokes/s) appending and flushing cost ~4-5 µs of the loop's CPU per warm invoke of
3 events, against ~26 µs for one row per event in two indexes (bench/bench_logstore.py).

The batches are committed on the event loop's thread. A writer thread cost ~60-80 µs more per warm
invoke than that (its SQLite steps hand the GIL back and forth with the loop: 610 against 525-558 µs
of server CPU, side by side). What must stay off the loop is the WAL checkpoint, which fsyncs: the
loop's connection never checkpoints, a thread does, every second, on a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from time import time_ns

from lambdalet.store.database import CHUNK_SHIFT, chunk_parts, connect, pack_chunk, pack_events, unpack_events

_FLUSH_DELAY = 0.05
_FLUSH_AT = 2000  # (< 1 << CHUNK_SHIFT: a group's events of one flush fit one chunk)
_CHECKPOINT_EVERY = 1.0
_NO_LOWER = -(1 << 63)
_NO_UPPER = 1 << 63


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
        path = db.execute("PRAGMA database_list").fetchone()[2]
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._groups: dict[str, int] = dict(db.execute("SELECT name, id FROM log_groups"))
        self._streams: dict[tuple[str, str], int] = {
            (g, s): i for i, g, s in db.execute("SELECT id, group_name, name FROM log_streams")}
        self._next_group = 1 + max(self._groups.values(), default=0)
        self._next_stream = 1 + max(self._streams.values(), default=0)
        self._next_chunk = 1 + db.execute("SELECT COALESCE(MAX(id), 0) FROM log_chunks").fetchone()[0]
        # per stream, its events since the last flush: timestamp, message, timestamp, message, ...
        self._pending: dict[tuple[str, str], list] = {}
        self._count = 0  # events in self._pending
        self._flush_at = _FLUSH_AT  # (1 when there is no event loop to flush later)
        self._new: list[tuple[str, tuple]] = []  # group and stream rows to insert before the events
        self._flush_handle: asyncio.TimerHandle | None = None
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint, args=(path,), name="lambdalet-wal",
                                              daemon=True)
        if path:  # (an in-memory database has no WAL)
            self._checkpointer.start()

    # -- writing
    def append(self, group: str, stream: str, message: str, ts_ms: int) -> None:
        key = (group, stream)
        events = self._pending.get(key)
        if events is None:
            events = self._open(key, ts_ms)
        events += (ts_ms, message)
        self._count += 1
        if self._count >= self._flush_at:
            self.flush()

    def extend(self, group: str, stream: str, ts_ms: int, messages: tuple[str, ...]) -> None:
        """Append events that share a timestamp (a platform's START, or END and REPORT)."""
        key = (group, stream)
        events = self._pending.get(key)
        if events is None:
            events = self._open(key, ts_ms)
        for message in messages:
            events += (ts_ms, message)
        self._count += len(messages)
        if self._count >= self._flush_at:
            self.flush()

    def _open(self, key: tuple[str, str], ts_ms: int) -> list:
        """The pending list of a stream's first event since the last flush; the flush timer is armed
        with the first of them all."""
        if key not in self._streams:
            self._add_stream(*key, ts_ms)
        if self._flush_handle is None:
            try:
                self._flush_handle = asyncio.get_running_loop().call_later(_FLUSH_DELAY, self.flush)
                self._flush_at = _FLUSH_AT
            except RuntimeError:  # no loop (tools, tests): write at once
                self._flush_at = 1
        events = self._pending[key] = []
        return events

    def _add_stream(self, group: str, stream: str, ts_ms: int) -> None:
        gid = self._groups.get(group)
        if gid is None:
            gid = self._groups[group] = self._next_group
            self._next_group += 1
            self._new.append(("INSERT OR IGNORE INTO log_groups (id, name, created) VALUES (?, ?, ?)",
                              (gid, group, ts_ms)))
        sid = self._streams[(group, stream)] = self._next_stream
        self._next_stream += 1
        self._new.append(("INSERT OR IGNORE INTO log_streams (id, group_name, name, created) VALUES (?, ?, ?, ?)",
                          (sid, group, stream, ts_ms)))

    def _checkpoint(self, path: str) -> None:
        """Move the WAL into the database file now and then, off the event loop (it fsyncs)."""
        db = connect(path)
        try:
            while not self._closed.wait(_CHECKPOINT_EVERY):
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def flush(self) -> None:
        """Commit everything appended so far (before a query, and at shutdown)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        new, self._new = self._new, []  # a stream's row is committed with or before its events
        pending, self._pending = self._pending, {}
        self._count = 0
        if not pending and not new:
            return
        ingestion = _now_ms()
        chunks: dict[str, list] = {}  # group: [chunk id, min ts, max ts, its streams' parts]
        totals = []
        for key, events in pending.items():
            stamps = events[0::2]
            first, last = min(stamps), max(stamps)
            chunk = chunks.get(key[0])
            if chunk is None:
                chunk = chunks[key[0]] = [self._next_chunk, first, last, []]
                self._next_chunk += 1
            elif first < chunk[1] or last > chunk[2]:
                chunk[1], chunk[2] = min(first, chunk[1]), max(last, chunk[2])
            sid = self._streams[key]
            packed_stamps, messages = pack_events(stamps, events[1::2])
            chunk[3].append((sid, packed_stamps, messages))
            totals.append((first, first, last, ingestion, len(messages), chunk[0], chunk[0], sid))
        db = self.db
        with db:
            db.execute("BEGIN")
            for sql, args in new:
                db.execute(sql, args)
            db.executemany("INSERT INTO log_chunks (id, group_id, min_ts, max_ts, ingestion, streams, stamps,"
                           " messages) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(cid, self._groups[group], first, last, ingestion, *pack_chunk(parts))
                            for group, (cid, first, last, parts) in chunks.items()])
            db.executemany(
                "UPDATE log_streams SET first_event = COALESCE(MIN(first_event, ?), ?),"
                " last_event = MAX(COALESCE(last_event, 0), ?), last_ingestion = ?,"
                " stored_bytes = stored_bytes + ?, first_chunk = COALESCE(first_chunk, ?), last_chunk = ?"
                " WHERE id = ?", totals)

    def close(self) -> None:
        """Commit what is pending and stop the checkpointer."""
        self.flush()
        self._closed.set()
        if self._checkpointer.is_alive():
            self._checkpointer.join(5)

    def delete_group(self, group: str) -> None:
        self.flush()
        gid = self._groups.pop(group, None)
        if gid is None:
            return
        with self.db as db:
            db.execute("BEGIN")
            db.execute("DELETE FROM log_chunks WHERE group_id = ?", (gid,))
            db.execute("DELETE FROM log_streams WHERE group_name = ?", (group,))
            db.execute("DELETE FROM log_groups WHERE id = ?", (gid,))
        self._streams = {k: v for k, v in self._streams.items() if k[0] != group}

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
        return (group, stream) in self._streams

    def stream_events(self, group: str, stream: str, *, after_id: int | None = None,
                      before_id: int | None = None, start: int | None = None, end: int | None = None,
                      limit: int = 10000, from_head: bool = True) -> list[LogEvent]:
        """Events of one stream in order; from the head, or the newest `limit` ones."""
        self.flush()
        sid = self._streams.get((group, stream))
        if sid is None:
            return []
        first, last = self.db.execute("SELECT first_chunk, last_chunk FROM log_streams WHERE id = ?", (sid,)
                                      ).fetchone()
        if first is None:  # (no event yet)
            return []
        if after_id is not None:
            first = max(first, after_id >> CHUNK_SHIFT)
        if before_id is not None:
            last = min(last, before_id >> CHUNK_SHIFT)
        sql = [_SELECT_CHUNKS, "WHERE group_id = ? AND id BETWEEN ? AND ?"]
        args: list = [self._groups[group], first, last]
        for cond, value in (("max_ts >= ?", start), ("min_ts < ?", end)):
            if value is not None:
                sql.append("AND " + cond)
                args.append(value)
        sql.append("ORDER BY id " + ("ASC" if from_head else "DESC"))
        low = _NO_LOWER if after_id is None else after_id
        high = _NO_UPPER if before_id is None else before_id
        earliest = _NO_LOWER if start is None else start
        before = _NO_UPPER if end is None else end
        with contextlib.closing(self.db.execute(" ".join(sql), args)) as chunks:
            found = list(islice((LogEvent(i, stream, ts, ingestion, message)
                                 for i, _, ts, ingestion, message in _unpacked(chunks, {sid}, not from_head)
                                 if low < i < high and earliest <= ts < before), limit))
        if not from_head:
            found.reverse()
        return found

    def group_events(self, group: str, *, streams: list[str] | None = None, stream_prefix: str = "",
                     start: int | None = None, end: int | None = None, after_id: int = 0,
                     batch: int = 10000) -> list[LogEvent]:
        """A batch of a group's events in id order (the order they were stored) after event after_id."""
        self.flush()
        gid = self._groups.get(group)
        if gid is None:
            return []
        names = {sid: name for (g, name), sid in self._streams.items() if g == group}
        sql = [_SELECT_CHUNKS, "WHERE group_id = ?"]
        args: list = [gid]
        wanted = None
        if streams or stream_prefix:
            wanted = {sid for sid, name in names.items()
                      if (not streams or name in streams) and name.startswith(stream_prefix)}
        if start is not None:
            sql.append("AND max_ts >= ?")
            args.append(start)
        if end is not None:
            sql.append("AND min_ts <= ?")
            args.append(end)
        sql.append("AND id >= ? ORDER BY id")
        args.append(after_id >> CHUNK_SHIFT)
        earliest = _NO_LOWER if start is None else start
        latest = _NO_UPPER if end is None else end
        with contextlib.closing(self.db.execute(" ".join(sql), args)) as chunks:
            return list(islice((LogEvent(i, names.get(sid, ""), ts, ingestion, message)
                                for i, sid, ts, ingestion, message in _unpacked(chunks, wanted)
                                if i > after_id and earliest <= ts <= latest), batch))


_SELECT_CHUNKS = "SELECT id, ingestion, streams, stamps, messages FROM log_chunks"


def _unpacked(chunks: Iterable[tuple[int, int, bytes, bytes, bytes]], streams: set[int] | None = None,
              backward: bool = False) -> Iterator[tuple[int, int, int, int, str]]:
    """(id, stream id, timestamp, ingestion, message) of the events in _SELECT_CHUNKS rows, in order,
    or backward (rows given backward too); only those of the given streams if any."""
    for cid, ingestion, *packed in chunks:
        base = cid << CHUNK_SHIFT
        parts = list(chunk_parts(*packed))
        for sid, first, part_stamps, part_messages in reversed(parts) if backward else parts:
            if streams is not None and sid not in streams:
                continue
            stamps, messages = unpack_events(part_stamps, part_messages)
            for i in range(len(stamps) - 1, -1, -1) if backward else range(len(stamps)):
                yield base | (first + i), sid, stamps[i], ingestion, messages[i]


def _now_ms() -> int:
    return time_ns() // 1_000_000
