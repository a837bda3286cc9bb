"""The embedded SQLite database: one file in the data directory, used from the event loop's thread."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable, Iterator
from itertools import chain

CHUNK_SHIFT = 20  # a chunk holds fewer than 1 << CHUNK_SHIFT events
_MIGRATED_CHUNK = 2000  # events at most in a chunk made from older data dirs' rows (as in a flush's)

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,           -- FunctionConfiguration as AWS returns it (JSON)
    code_sha TEXT NOT NULL,         -- hex sha256 of the zip, unpacked in code/<sha>/
    url_config TEXT,                -- FunctionUrlConfig (JSON) or NULL
    reserved_concurrency INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS function_versions (
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    config TEXT NOT NULL,           -- the version's FunctionConfiguration (JSON)
    code_sha TEXT NOT NULL,
    source_revision TEXT NOT NULL,  -- RevisionId of $LATEST when it was published
    PRIMARY KEY (function, version)
);
CREATE TABLE IF NOT EXISTS function_aliases (
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,           -- AliasConfiguration (JSON)
    url_config TEXT,                -- the alias's FunctionUrlConfig (JSON) or NULL
    PRIMARY KEY (function, name)
);
CREATE TABLE IF NOT EXISTS version_counters (
    function TEXT PRIMARY KEY,
    last INTEGER NOT NULL           -- the last version number published (never reused)
);
CREATE TABLE IF NOT EXISTS provisioned_concurrency (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,        -- a version number or an alias name
    requested INTEGER NOT NULL,
    modified TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
CREATE TABLE IF NOT EXISTS async_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    client_context TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS event_invoke_configs (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,        -- $LATEST, a version or an alias
    config TEXT NOT NULL,           -- FunctionEventInvokeConfig without FunctionArn (JSON)
    PRIMARY KEY (function, qualifier)
);
CREATE TABLE IF NOT EXISTS recursion_configs (
    function TEXT PRIMARY KEY,
    recursive_loop TEXT NOT NULL    -- Allow | Terminate
);
CREATE TABLE IF NOT EXISTS log_groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_streams (
    id INTEGER PRIMARY KEY,
    group_name TEXT NOT NULL,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    first_event INTEGER,
    last_event INTEGER,
    last_ingestion INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    first_chunk INTEGER,            -- log_chunks.id of the stream's first and last chunk
    last_chunk INTEGER,
    UNIQUE (group_name, name)
);
CREATE TABLE IF NOT EXISTS log_chunks (  -- one group's events of one flush, stream by stream (pack_chunk)
    id INTEGER PRIMARY KEY,         -- an event's id is id << CHUNK_SHIFT | its index in the chunk
    group_id INTEGER NOT NULL,      -- log_groups.id
    min_ts INTEGER NOT NULL,        -- the events' smallest and largest timestamp
    max_ts INTEGER NOT NULL,
    ingestion INTEGER NOT NULL,     -- when the chunk was committed: its events' ingestionTime
    streams BLOB NOT NULL,          -- per stream: its id, number of events and bytes of messages
    stamps BLOB NOT NULL,           -- per stream: its events' timestamps, then their messages' lengths
                                    -- (all 64-bit little-endian integers)
    messages BLOB NOT NULL          -- the messages one after the other, UTF-8
);
-- A stream's chunks are found through its group's, between its first and last chunk. (A row per stream
-- and flush cost ~40% more per flush with 8 streams, and an index by stream ~50% more again: a page
-- more per stream.)
CREATE INDEX IF NOT EXISTS log_chunks_by_group ON log_chunks (group_id, id);
"""


def connect(path: str) -> sqlite3.Connection:
    """Open (and create) the database with settings for many small writes."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    _migrate_logs(db)
    db.executescript(SCHEMA)
    _migrate_events(db)
    return db


def pack_events(stamps: list[int], messages: list[str]) -> tuple[bytes, bytes]:
    """One stream's part of a chunk's stamps and messages columns."""
    return (struct.pack(f"<{2 * len(stamps)}q", *stamps, *map(len, messages)),  # (lengths in code points)
            "".join(messages).encode("utf-8", "surrogatepass"))


def pack_chunk(parts: list[tuple[int, bytes, bytes]]) -> tuple[bytes, bytes, bytes]:
    """A chunk's streams, stamps and messages columns for (stream id, pack_events(...)) parts."""
    header = struct.pack(f"<{3 * len(parts)}q",
                         *chain.from_iterable((sid, len(stamps) // 16, len(text)) for sid, stamps, text in parts))
    return header, b"".join(stamps for _, stamps, _ in parts), b"".join(text for _, _, text in parts)


def chunk_parts(streams: bytes, stamps: bytes, messages: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(stream id, index of its first event, its stamps, its messages) of each stream in a chunk."""
    header = struct.unpack(f"<{len(streams) // 8}q", streams)
    first = offset = 0
    for n in range(0, len(header), 3):
        sid, count, size = header[n:n + 3]
        yield sid, first, stamps[16 * first:16 * (first + count)], messages[offset:offset + size]
        first += count
        offset += size


def unpack_events(stamps: bytes, messages: bytes) -> tuple[tuple[int, ...], list[str]]:
    """The timestamps and messages pack_events packed."""
    count = len(stamps) // 16
    meta = struct.unpack(f"<{2 * count}q", stamps)
    text = messages.decode("utf-8", "surrogatepass")
    out = []
    end = 0
    for length in meta[count:]:
        start, end = end, end + length
        out.append(text[start:end])
    return meta[:count], out


def _migrate_logs(db: sqlite3.Connection) -> None:
    """Data dirs from before log events referred to streams by id: their logs move to the tables that
    came next (one row per event in log_events, which _migrate_events turns into chunks)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(log_events)")}
    if "group_name" not in columns:
        return
    with db:
        db.execute("BEGIN")
        for table in ("log_groups", "log_streams", "log_events"):
            db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        for statement in SCHEMA.split(";"):  # (executescript would commit the transaction first)
            if statement.strip():
                db.execute(statement)
        db.execute(_EVENT_ROWS)  # (_migrate_events moves them into chunks next)
        db.execute("INSERT INTO log_groups (name, created) SELECT name, created FROM old_log_groups")
        db.execute("INSERT INTO log_streams (group_name, name, created, first_event, last_event, last_ingestion,"
                   " stored_bytes) SELECT group_name, name, created, first_event, last_event, last_ingestion,"
                   " stored_bytes FROM old_log_streams")
        db.execute("INSERT INTO log_events (id, stream_id, group_id, timestamp, ingestion, message)"
                   " SELECT e.id, s.id, g.id, e.timestamp, e.ingestion, e.message FROM old_log_events e"
                   " JOIN log_streams s ON s.group_name = e.group_name AND s.name = e.stream_name"
                   " JOIN log_groups g ON g.name = e.group_name")
        for table in ("log_events", "log_streams", "log_groups"):
            db.execute(f"DROP TABLE old_{table}")


_EVENT_ROWS = """CREATE TABLE log_events (id INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL,
    group_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, ingestion INTEGER NOT NULL, message TEXT NOT NULL)"""


def _migrate_events(db: sqlite3.Connection) -> None:
    """Data dirs from before chunks kept one log_events row per event: they move into chunks, in one
    transaction. A chunk takes a run of consecutive events of one stream with one ingestion time (up
    to 2,000), so the events keep their order across the store and their times."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_events'").fetchone() is None:
        return
    with db:
        db.execute("BEGIN IMMEDIATE")
        columns = {row[1] for row in db.execute("PRAGMA table_info(log_streams)")}
        for column in ("first_chunk", "last_chunk"):
            if column not in columns:
                db.execute(f"ALTER TABLE log_streams ADD COLUMN {column} INTEGER")
        rows = db.execute("SELECT stream_id, group_id, ingestion, timestamp, message FROM log_events ORDER BY id")
        spans: dict[int, list[int]] = {}  # stream id: [first chunk, last chunk]
        after = db.execute("SELECT COALESCE(MAX(id), 0) FROM log_chunks").fetchone()[0]
        db.executemany("INSERT INTO log_chunks (id, group_id, min_ts, max_ts, ingestion, streams, stamps, messages)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _chunks(rows, after, spans))
        db.executemany("UPDATE log_streams SET first_chunk = ?, last_chunk = ? WHERE id = ?",
                       [(first, last, sid) for sid, (first, last) in spans.items()])
        db.execute("DROP TABLE log_events")


def _chunks(rows: Iterable[tuple[int, int, int, int, str]], after: int, spans: dict[int, list[int]]
            ) -> Iterator[tuple]:
    """log_chunks rows for (stream id, group id, ingestion, timestamp, message) rows in order, numbered
    from after + 1; each stream's first and last chunk go into spans."""
    run: tuple[int, int, int] | None = None  # (stream id, group id, ingestion) of the chunk being filled
    stamps: list[int] = []
    messages: list[str] = []
    chunk = after
    for sid, gid, ingestion, ts, message in rows:
        if (sid, gid, ingestion) != run or len(stamps) == _MIGRATED_CHUNK:
            if run is not None:
                yield _chunk_row(chunk, run, stamps, messages)
            run, stamps, messages = (sid, gid, ingestion), [], []
            chunk += 1
            spans.setdefault(sid, [chunk, chunk])[1] = chunk
        stamps.append(ts)
        messages.append(message)
    if run is not None:
        yield _chunk_row(chunk, run, stamps, messages)


def _chunk_row(chunk: int, run: tuple[int, int, int], stamps: list[int], messages: list[str]) -> tuple:
    sid, gid, ingestion = run
    return (chunk, gid, min(stamps), max(stamps), ingestion, *pack_chunk([(sid, *pack_events(stamps, messages))]))
