"""The log store's chunks (one row per group and flush) behind the Logs API: paging at chunk edges,
times inside chunks, odd messages, many streams a flush, batching, restart, migration of older data dirs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lambdalet.api.logs_api import LogsApi
from lambdalet.store import LogStore, connect
from lambdalet.store.database import CHUNK_SHIFT

GROUP = "/aws/lambda/f"


def fill(store: LogStore, flushes: list[list[tuple[str, str, int]]], group: str = GROUP) -> None:
    """Append each batch of (stream, message, timestamp) inside an event loop and flush it: one chunk
    per batch."""
    async def run() -> None:
        for batch in flushes:
            for stream, message, ts in batch:
                store.append(group, stream, message, ts)
            store.flush()
    asyncio.run(run())


def call(store: LogStore, operation: str, **body: Any) -> dict[str, Any]:
    return LogsApi(store, "us-east-1", "123456789012").handle("Logs_20140328." + operation, json.dumps(body).encode())


def forward_pages(store: LogStore, stream: str, limit: int, **times: int) -> list[list[tuple[int, str]]]:
    """GetLogEvents pages from the head, following nextForwardToken until it comes back unchanged."""
    pages, token = [], None
    for _ in range(1000):
        body: dict[str, Any] = dict(logGroupName=GROUP, logStreamName=stream, limit=limit, startFromHead=True, **times)
        if token:
            body["nextToken"] = token
        doc = call(store, "GetLogEvents", **body)
        pages.append([(e["timestamp"], e["message"]) for e in doc["events"]])
        if doc["nextForwardToken"] == token:
            return pages
        token = doc["nextForwardToken"]
    raise AssertionError("GetLogEvents kept giving new tokens")


def backward_pages(store: LogStore, stream: str, limit: int, **times: int) -> list[list[tuple[int, str]]]:
    """GetLogEvents pages from the tail, following nextBackwardToken until it comes back unchanged."""
    pages, token = [], None
    for _ in range(1000):
        body: dict[str, Any] = dict(logGroupName=GROUP, logStreamName=stream, limit=limit, **times)
        if token:
            body["nextToken"] = token
        doc = call(store, "GetLogEvents", **body)
        pages.append([(e["timestamp"], e["message"]) for e in doc["events"]])
        if doc["nextBackwardToken"] == token:
            return pages
        token = doc["nextBackwardToken"]
    raise AssertionError("GetLogEvents kept giving new tokens")


def filter_pages(store: LogStore, limit: int, **body: Any) -> list[list[dict[str, Any]]]:
    pages, token = [], None
    for _ in range(1000):
        doc = call(store, "FilterLogEvents", logGroupName=GROUP, limit=limit, **body,
                   **({"nextToken": token} if token else {}))
        pages.append(doc["events"])
        token = doc.get("nextToken")
        if token is None:
            return pages
    raise AssertionError("FilterLogEvents kept giving new tokens")


def split(items: list, limit: int) -> list[list]:
    return [items[i:i + limit] for i in range(0, len(items), limit)]


@pytest.fixture
def store(tmp_path):
    logs = LogStore(connect(str(tmp_path / "state.db")))
    yield logs
    logs.close()


def test_a_chunk_edge_inside_a_get_log_events_page_forward_and_backward(store):
    events = [(100 + n, f"line {n}\n") for n in range(15)]
    fill(store, [[("s", m, ts) for ts, m in events[i:i + 5]] for i in range(0, 15, 5)])
    ids = [e.id for e in store.stream_events(GROUP, "s")]
    assert [i >> CHUNK_SHIFT for i in ids] == [ids[0] >> CHUNK_SHIFT] * 5 + [ids[5] >> CHUNK_SHIFT] * 5 + [
        ids[10] >> CHUNK_SHIFT] * 5  # three chunks of five
    assert ids == sorted(ids) and len(set(ids)) == 15
    for limit in (1, 4, 5, 6, 14, 15, 16):
        assert [p for p in forward_pages(store, "s", limit) if p] == split(events, limit)
        assert [p for p in backward_pages(store, "s", limit) if p] == [
            events[max(0, n - limit):n] for n in range(len(events), 0, -limit)]


def test_start_and_end_times_inside_chunks(store):
    fill(store, [[("s", f"{ts}\n", ts) for ts in range(100, 110)], [("s", f"{ts}\n", ts) for ts in range(110, 120)]])
    got = [e["timestamp"] for e in call(store, "GetLogEvents", logGroupName=GROUP, logStreamName="s",
                                        startFromHead=True, startTime=103, endTime=113)["events"]]
    assert got == list(range(103, 113))  # GetLogEvents: endTime is exclusive
    got = [e["timestamp"] for e in call(store, "FilterLogEvents", logGroupName=GROUP, startTime=103, endTime=113)[
        "events"]]
    assert got == list(range(103, 114))  # FilterLogEvents: inclusive
    assert call(store, "GetLogEvents", logGroupName=GROUP, logStreamName="s", startTime=120)["events"] == []
    assert [p for p in forward_pages(store, "s", 3, startTime=108, endTime=112) if p] == [
        [(108, "108\n"), (109, "109\n"), (110, "110\n")], [(111, "111\n")]]
    latest = call(store, "GetLogEvents", logGroupName=GROUP, logStreamName="s", limit=2, endTime=111)["events"]
    assert [e["timestamp"] for e in latest] == [109, 110]


def test_timestamps_out_of_order_keep_the_append_order(store):
    fill(store, [[("s", "b\n", 200), ("s", "a\n", 100), ("s", "c\n", 300)], [("s", "d\n", 50)]])
    assert [m for _, m in forward_pages(store, "s", 10)[0]] == ["b\n", "a\n", "c\n", "d\n"]
    (stream,) = call(store, "DescribeLogStreams", logGroupName=GROUP)["logStreams"]
    assert (stream["firstEventTimestamp"], stream["lastEventTimestamp"]) == (50, 300)
    assert [m for _, m in forward_pages(store, "s", 10, startTime=150)[0]] == ["b\n", "c\n"]


MESSAGES = ["with\nnewlines\n\n", "nul\x00inside\x00", "", "äöü é 日本語 🦆\n", "\r\n\t", "x" * 70000,
            "\udcff lone surrogate", "last\n"]


def test_messages_with_newlines_nul_and_non_ascii_come_back_as_they_were(store, tmp_path):
    fill(store, [[("s", m, 1000 + n) for n, m in enumerate(MESSAGES)]])
    assert [e.message for e in store.stream_events(GROUP, "s")] == MESSAGES
    assert [e["message"] for e in call(store, "FilterLogEvents", logGroupName=GROUP)["events"]] == MESSAGES
    size = sum(len(m.encode("utf-8", "surrogatepass")) for m in MESSAGES)
    (stream,) = call(store, "DescribeLogStreams", logGroupName=GROUP)["logStreams"]
    assert stream["storedBytes"] == size
    assert call(store, "DescribeLogGroups")["logGroups"][0]["storedBytes"] == size
    store.close()
    again = LogStore(connect(str(tmp_path / "state.db")))
    try:
        assert [e.message for e in again.stream_events(GROUP, "s")] == MESSAGES
    finally:
        again.close()


def test_many_streams_in_one_flush(store):
    names = [f"2026/12/01/[$LATEST]{n:032x}" for n in range(300)]
    batch = [(names[n % 300], f"event {n}\n", 1000 + n // 300) for n in range(1800)]  # (one flush: under 2,000)
    other = [(names[n], f"other {n}\n", 1000) for n in range(3)]

    async def run() -> None:  # one flush, with another group's events among them
        for n, (stream, message, ts) in enumerate(batch):
            store.append(GROUP, stream, message, ts)
            if n % 600 == 0:
                store.append("/aws/lambda/other", *other[n // 600])
        store.flush()
    asyncio.run(run())
    assert store.db.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0] == 2  # one a group
    assert [(e.stream, e.message, e.timestamp) for e in store.group_events("/aws/lambda/other")] == other
    assert [e.message for e in store.stream_events("/aws/lambda/other", names[1])] == ["other 1\n"]
    for name in (names[0], names[7], names[299]):
        mine = [(ts, m) for s, m, ts in batch if s == name]
        assert [e for p in forward_pages(store, name, 4) for e in p] == mine
    everything = [e for p in filter_pages(store, 700) for e in p]
    assert sorted(e["message"] for e in everything) == sorted(m for _, m, _ in batch)
    assert len({e["eventId"] for e in everything}) == 1800
    some = [e for p in filter_pages(store, 3, logStreamNames=[names[5], names[250]]) for e in p]
    assert sorted((e["logStreamName"], e["message"]) for e in some) == sorted(
        (s, m) for s, m, _ in batch if s in (names[5], names[250]))
    prefixed = [e for p in filter_pages(store, 9, logStreamNamePrefix=names[0][:-1]) for e in p]
    assert {e["logStreamName"] for e in prefixed} == set(names[:16])
    assert len(prefixed) == 16 * 6
    streams = call(store, "DescribeLogStreams", logGroupName=GROUP, limit=50)["logStreams"]
    assert all(s["storedBytes"] == sum(len(m) for n, m, _ in batch if n == s["logStreamName"]) for s in streams)


def test_filter_log_events_pages_cross_chunks_and_keep_timestamp_order_in_a_page(store):
    fill(store, [[("a", f"a{n}\n", 10 + n) for n in range(4)] + [("b", f"b{n}\n", 10 + n) for n in range(4)],
                 [("b", "b4\n", 5), ("a", "a4\n", 30)]])
    # pages of 3 in the order stored (a0-a3, b0-b3, then b4, a4), each sorted by timestamp
    pages = filter_pages(store, 3)
    assert [[e["message"] for e in p] for p in pages] == [
        ["a0\n", "a1\n", "a2\n"], ["b0\n", "b1\n", "a3\n"], ["b4\n", "b2\n", "b3\n"], ["a4\n"]]
    matching = [[e["message"] for e in p] for p in filter_pages(store, 2, filterPattern="?a3 ?b4 ?a4")]
    assert matching == [["b4\n", "a3\n"], ["a4\n"]]
    # a batch of group_events ending inside a chunk continues after its last event
    first = store.group_events(GROUP, batch=5)
    rest = store.group_events(GROUP, after_id=first[-1].id, batch=100)
    assert [e.message for e in first + rest] == ["a0\n", "a1\n", "a2\n", "a3\n", "b0\n", "b1\n", "b2\n", "b3\n",
                                                 "b4\n", "a4\n"]


def test_flushes_at_2000_events_and_after_50_ms(tmp_path):
    path = str(tmp_path / "state.db")
    store = LogStore(connect(path))
    other = sqlite3.connect(path)

    def stored() -> int:
        return other.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0]

    async def run() -> None:
        for n in range(1999):
            store.append(GROUP, "s", f"{n}\n", 1)
        assert stored() == 0
        store.append(GROUP, "s", "2000th\n", 1)
        assert stored() == 1
        store.append(GROUP, "s", "one more\n", 1)
        assert stored() == 1
        await asyncio.sleep(0.2)
        assert stored() == 2

    try:
        asyncio.run(run())
        assert len(store.stream_events(GROUP, "s")) == 2001
    finally:
        other.close()
        store.close()


def test_without_an_event_loop_each_event_is_written_at_once(tmp_path):
    path = str(tmp_path / "state.db")
    store = LogStore(connect(path))
    other = sqlite3.connect(path)
    try:
        store.append(GROUP, "s", "one\n", 1)
        store.append(GROUP, "s", "two\n", 2)
        assert other.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0] == 2
        fill(store, [[("s", "three\n", 3), ("s", "four\n", 4)]])  # (inside a loop: batched again)
        assert other.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0] == 3
    finally:
        other.close()
        store.close()


def test_restart_keeps_events_ids_and_totals(tmp_path):
    path = str(tmp_path / "state.db")
    store = LogStore(connect(path))
    fill(store, [[("s", "one\n", 10), ("t", "two\n", 11)], [("s", "three\n", 12)]])
    before = [(e.id, e.message, e.timestamp, e.ingestion) for e in store.group_events(GROUP)]
    streams = call(store, "DescribeLogStreams", logGroupName=GROUP)
    token = call(store, "GetLogEvents", logGroupName=GROUP, logStreamName="s", startFromHead=True)["nextForwardToken"]

    async def pending() -> None:
        store.append(GROUP, "s", "four\n", 13)  # buffered, committed by close
    asyncio.run(pending())
    store.close()
    again = LogStore(connect(path))
    try:
        after = [(e.id, e.message, e.timestamp, e.ingestion) for e in again.group_events(GROUP)]
        assert after[:3] == before and after[3][1] == "four\n" and after[3][0] > before[-1][0]
        assert call(again, "DescribeLogStreams", logGroupName=GROUP)["logStreams"][1] == streams["logStreams"][1]
        more = call(again, "GetLogEvents", logGroupName=GROUP, logStreamName="s", nextToken=token)["events"]
        assert [e["message"] for e in more] == ["four\n"]
        fill(again, [[("u", "five\n", 14)]])
        assert again.group_events(GROUP)[-1].id > after[-1][0]
    finally:
        again.close()


def test_delete_group_removes_its_chunks_only(store):
    fill(store, [[("s", "mine\n", 1)]])
    fill(store, [[("s", "other\n", 2)]], group="/aws/lambda/other")
    store.delete_group(GROUP)
    assert not store.group_exists(GROUP) and store.group_events(GROUP) == []
    assert store.db.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0] == 1
    assert [e.message for e in store.group_events("/aws/lambda/other")] == ["other\n"]
    fill(store, [[("s", "again\n", 3)]])
    assert [e.message for e in store.stream_events(GROUP, "s")] == ["again\n"]


# The log tables as the two earlier layouts made them (their rows must still be readable after an upgrade).
ROW_PER_EVENT_SCHEMA = """
CREATE TABLE log_groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created INTEGER NOT NULL);
CREATE TABLE log_streams (id INTEGER PRIMARY KEY, group_name TEXT NOT NULL, name TEXT NOT NULL,
    created INTEGER NOT NULL, first_event INTEGER, last_event INTEGER, last_ingestion INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0, UNIQUE (group_name, name));
CREATE TABLE log_events (id INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL, group_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL, ingestion INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX log_events_by_stream ON log_events (stream_id, id);
CREATE INDEX log_events_by_group ON log_events (group_id, id);
"""
NAMES_IN_ROWS_SCHEMA = """
CREATE TABLE log_groups (name TEXT PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE log_streams (group_name TEXT NOT NULL, name TEXT NOT NULL, created INTEGER NOT NULL,
    first_event INTEGER, last_event INTEGER, last_ingestion INTEGER, stored_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, name));
CREATE TABLE log_events (id INTEGER PRIMARY KEY AUTOINCREMENT, group_name TEXT NOT NULL,
    stream_name TEXT NOT NULL, timestamp INTEGER NOT NULL, ingestion INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX log_events_by_stream ON log_events (group_name, stream_name, id);
CREATE INDEX log_events_by_time ON log_events (group_name, timestamp);
"""
# (group, stream, timestamp, ingestion, message) in the order they were stored: streams interleaved,
# runs of one stream with one ingestion time, and a run longer than a migrated chunk holds
OLD_EVENTS = ([("/aws/lambda/f", "s", 100, 150, "START\n"), ("/aws/lambda/f", "t", 101, 150, "other\n"),
               ("/aws/lambda/f", "s", 102, 150, "näh\x00\n"), ("/aws/lambda/f", "s", 103, 151, "END\n"),
               ("/aws/lambda/g", "s", 90, 152, "g's\n"), ("/aws/lambda/f", "s", 104, 152, "REPORT\n")]
              + [("/aws/lambda/f", "t", 200 + n, 160, f"{n}\n") for n in range(4500)])


def old_totals(events: list[tuple[str, str, int, int, str]]) -> dict[tuple[str, str], tuple]:
    totals: dict[tuple[str, str], tuple] = {}
    for group, stream, ts, ingestion, message in events:
        first, last, _, size = totals.get((group, stream), (ts, ts, 0, 0))
        totals[(group, stream)] = (min(first, ts), max(last, ts), ingestion, size + len(message.encode()))
    return totals


def write_old_data_dir(path: str, schema: str) -> None:
    db = sqlite3.connect(path)
    db.executescript(schema)
    keys = list(old_totals(OLD_EVENTS))
    groups = list(dict.fromkeys(g for g, _ in keys))
    by_id = schema is ROW_PER_EVENT_SCHEMA
    for n, group in enumerate(groups, 1):
        db.execute("INSERT INTO log_groups VALUES (?, ?, ?)" if by_id else "INSERT INTO log_groups VALUES (?, ?)",
                   ((n, group, 5) if by_id else (group, 5)))
    for n, ((group, stream), (first, last, ingestion, size)) in enumerate(old_totals(OLD_EVENTS).items(), 1):
        row = (group, stream, 5, first, last, ingestion, size)
        db.execute("INSERT INTO log_streams VALUES (?, ?, ?, ?, ?, ?, ?, ?)" if by_id else
                   "INSERT INTO log_streams VALUES (?, ?, ?, ?, ?, ?, ?)", ((n, *row) if by_id else row))
    for group, stream, ts, ingestion, message in OLD_EVENTS:
        if by_id:
            db.execute("INSERT INTO log_events (stream_id, group_id, timestamp, ingestion, message) VALUES"
                       " (?, ?, ?, ?, ?)", (keys.index((group, stream)) + 1, groups.index(group) + 1, ts, ingestion,
                                            message))
        else:
            db.execute("INSERT INTO log_events (group_name, stream_name, timestamp, ingestion, message) VALUES"
                       " (?, ?, ?, ?, ?)", (group, stream, ts, ingestion, message))
    db.commit()
    db.close()


@pytest.mark.parametrize("schema", [ROW_PER_EVENT_SCHEMA, NAMES_IN_ROWS_SCHEMA], ids=["row-per-event", "names-in-rows"])
def test_older_data_dirs_are_migrated_into_chunks(tmp_path, schema):
    path = str(tmp_path / "state.db")
    write_old_data_dir(path, schema)
    store = LogStore(connect(path))
    try:
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "log_events" not in tables and not any(t.startswith("old_") for t in tables)
        # one chunk a run: s(100), t(101), s(102), s(103), g, s(104), then 4,500 of t in chunks of 2,000
        assert store.db.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0] == 6 + 3
        got = [(e.stream, e.timestamp, e.ingestion, e.message) for e in store.group_events("/aws/lambda/f")]
        assert got == [(s, ts, ing, m) for g, s, ts, ing, m in OLD_EVENTS if g == "/aws/lambda/f"]
        assert [e.message for e in store.stream_events("/aws/lambda/f", "s")] == [
            "START\n", "näh\x00\n", "END\n", "REPORT\n"]
        ids = [e.id for e in store.group_events("/aws/lambda/f", batch=10000)]
        assert ids == sorted(ids)
        totals = old_totals(OLD_EVENTS)
        for group in ("/aws/lambda/f", "/aws/lambda/g"):
            for s in call(store, "DescribeLogStreams", logGroupName=group)["logStreams"]:
                first, last, ingestion, size = totals[(group, s["logStreamName"])]
                assert (s["firstEventTimestamp"], s["lastEventTimestamp"], s["lastIngestionTime"],
                        s["storedBytes"]) == (first, last, ingestion, size)
        fill(store, [[("s", "new\n", 300)]])
        assert store.stream_events("/aws/lambda/f", "s")[-1].message == "new\n"
        assert store.group_events("/aws/lambda/f", after_id=ids[-1])[0].message == "new\n"
    finally:
        store.close()
    again = LogStore(connect(path))  # (the migration ran once)
    try:
        assert len(again.group_events("/aws/lambda/f")) == len(got) + 1
    finally:
        again.close()


def test_a_failed_migration_leaves_the_old_rows(tmp_path):
    path = str(tmp_path / "state.db")
    write_old_data_dir(path, ROW_PER_EVENT_SCHEMA)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO log_events (stream_id, group_id, timestamp, ingestion, message) VALUES (1, 1, 1, 1, ?)",
               ("\ud800".encode("utf-8", "surrogatepass"),))  # a BLOB that is no text: the migration fails on it
    db.commit()
    db.close()
    with pytest.raises(TypeError):
        connect(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM log_events").fetchone()[0] == len(OLD_EVENTS) + 1
    assert db.execute("SELECT COUNT(*) FROM log_chunks").fetchone()[0] == 0
    db.close()


# -- a model of the store: random flushes, then every way of paging compared with the plain list

messages = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(["\n", "\x00", "é\n", ""])
flushes = st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), messages, st.integers(100, 110)),
                            max_size=9), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flushes, st.integers(1, 7), st.one_of(st.none(), st.integers(99, 111)),
       st.one_of(st.none(), st.integers(99, 111)))
def test_paging_matches_a_plain_list_of_events(batches, limit, start, end):
    assume(any(batches))  # (the group exists once an event came)
    store = LogStore(connect(":memory:"))
    fill(store, batches)
    stored = []  # the store's order: flush by flush, stream by stream (as first appended), in append order
    for batch in batches:
        for stream in dict.fromkeys(s for s, _, _ in batch):
            stored += [(s, ts, m) for s, m, ts in batch if s == stream]
    times = {k: v for k, v in (("startTime", start), ("endTime", end)) if v is not None}
    low, high = (start if start is not None else 0), (end if end is not None else 1 << 40)
    for stream in dict.fromkeys(s for s, _, _ in stored):
        mine = [(ts, m) for s, ts, m in stored if s == stream and low <= ts < high]
        pages = forward_pages(store, stream, limit, **times)
        assert [p for p in pages if p] == split(mine, limit)
        backward = [p for p in backward_pages(store, stream, limit, **times) if p]
        assert backward == [mine[max(0, n - limit):n] for n in range(len(mine), 0, -limit)]
    inside = [(s, ts, m) for s, ts, m in stored if low <= ts <= high]
    pages = [p for p in filter_pages(store, limit, **times) if p]
    assert [[(e["logStreamName"], e["timestamp"], e["message"]) for e in p] for p in pages] == [
        sorted(p, key=lambda e: e[1]) for p in split(inside, limit)]
    ids = [int(e["eventId"][-20:]) for p in pages for e in p]
    assert sorted(ids) == sorted(set(ids))
    for s in call(store, "DescribeLogStreams", logGroupName=GROUP)["logStreams"]:
        mine_all = [(ts, m) for name, ts, m in stored if name == s["logStreamName"]]
        assert (s["firstEventTimestamp"], s["lastEventTimestamp"]) == (min(mine_all)[0], max(mine_all)[0])
        assert s["storedBytes"] == sum(len(m.encode()) for _, m in mine_all)
    store.close()


def test_ingestion_time_is_when_the_chunk_was_committed(store):
    before = time.time_ns() // 1_000_000
    fill(store, [[("s", "one\n", 1), ("s", "two\n", 2)]])
    after = time.time_ns() // 1_000_000
    events = call(store, "GetLogEvents", logGroupName=GROUP, logStreamName="s")["events"]
    assert len({e["ingestionTime"] for e in events}) == 1 and before <= events[0]["ingestionTime"] <= after
