"""The embedded SQLite database: one file in the data directory, used from the event loop's thread."""

from __future__ import annotations

import sqlite3

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
    UNIQUE (group_name, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY,         -- (not AUTOINCREMENT: its sqlite_sequence update cost ~8 µs a warm invoke)
    stream_id INTEGER NOT NULL,     -- log_streams.id
    group_id INTEGER NOT NULL,      -- log_groups.id
    timestamp INTEGER NOT NULL,
    ingestion INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream_id, id);
CREATE INDEX IF NOT EXISTS log_events_by_group ON log_events (group_id, id);
"""


def connect(path: str) -> sqlite3.Connection:
    """Open (and create) the database with settings for many small writes."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    _migrate_logs(db)
    db.executescript(SCHEMA)
    return db


def _migrate_logs(db: sqlite3.Connection) -> None:
    """Data dirs from before log events referred to streams by id: their logs move to the new tables."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(log_events)")}
    if "group_name" not in columns:
        return
    with db:
        db.execute("BEGIN")
        for table in ("log_groups", "log_streams", "log_events"):
            db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        db.execute("DROP INDEX IF EXISTS log_events_by_stream")
        db.execute("DROP INDEX IF EXISTS log_events_by_time")
        for statement in SCHEMA.split(";"):  # (executescript would commit the transaction first)
            if statement.strip():
                db.execute(statement)
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
