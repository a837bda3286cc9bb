"""Unpacking deployment zips: links, conflicts, broken zips and limits; the code-request child."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lambdalet
from lambdalet.limits import MAX_UNZIPPED
from lambdalet.store import request_body as rb
from lambdalet.store.code import UNZIP_ERROR, CodeStore, InvalidCode

LINK = stat.S_IFLNK | 0o777
DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o644


def make_zip(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A zip of (name, mode, content) entries, in order, duplicates allowed."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # "Duplicate name"
        for name, mode, content in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return buf.getvalue()


def tree(root: Path) -> set[str]:
    """Every path under root (links not followed), relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


@pytest.fixture
def store(tmp_path: Path) -> CodeStore:
    return CodeStore(str(tmp_path / "outer" / "mid" / "code"))


def put_fails(store: CodeStore, data: bytes, match: str = UNZIP_ERROR) -> None:
    """put() refuses data with Lambda's message and leaves nothing behind."""
    with pytest.raises(InvalidCode) as exc:
        store.put(data)
    assert match in str(exc.value)
    assert os.listdir(store.root) == []


def test_the_chained_link_attack_writes_nothing_outside(store, tmp_path):
    attack = [("a", LINK, b"b/c/d/../../.."), ("b", LINK, b"."), ("c", LINK, b"."), ("d", LINK, b"."),
              ("a/X", FILE, b"pwned")]
    put_fails(store, make_zip(attack))
    put_fails(store, make_zip(attack[:4]), "points outside the package")  # the links alone escape too
    assert tree(tmp_path) == {"outer", "outer/mid", "outer/mid/code"}


@pytest.mark.parametrize("entries", [
    [("up", LINK, b"..")],
    [("abs", LINK, b"/etc")],
    [("d/", DIR, b""), ("d/up", LINK, b"../..")],
    [("x", LINK, b"y/../.."), ("y", LINK, b".")],
    [("l1", LINK, b"l2/.."), ("l2", LINK, b"l3/.."), ("l3", LINK, b".")],  # ends one level up
])
def test_links_that_resolve_outside_are_refused(store, entries):
    put_fails(store, make_zip(entries), "points outside the package")


def test_relative_links_inside_the_package_work(store):
    stored = store.put(make_zip([
        ("node_modules/pkg/bin/cli.js", 0o100755, b"#!/usr/bin/env node\n"),
        ("node_modules/.bin/cli", LINK, b"../pkg/bin/cli.js"),
        ("lib", LINK, b"node_modules/pkg"),
        ("self", LINK, b"."),
        ("loop-a", LINK, b"loop-b"), ("loop-b", LINK, b"loop-a"),  # harmless: ELOOP when used
        ("dangling", LINK, b"not/there"),
    ]))
    root = Path(stored.task_root)
    assert (root / "node_modules/.bin/cli").read_bytes() == b"#!/usr/bin/env node\n"
    assert os.access(root / "node_modules/.bin/cli", os.X_OK)
    assert (root / "lib/bin/cli.js").exists() and (root / "self/lib").is_symlink()
    assert os.readlink(root / "node_modules/.bin/cli") == "../pkg/bin/cli.js"


def test_unpacked_code_is_read_only_and_keeps_exec_bits(store):
    stored = store.put(make_zip([("bootstrap", 0o104755, b"#!/bin/sh\n"), ("d/f", 0o100666, b"x"),
                                 ("win.txt", 0, b"no unix mode")]))
    root = Path(stored.task_root)
    assert stat.S_IMODE(os.stat(root / "bootstrap").st_mode) == 0o555  # no set-uid
    assert stat.S_IMODE(os.stat(root / "d/f").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(root / "win.txt").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o555 == stat.S_IMODE(os.stat(root).st_mode)
    assert store.read_zip(stored.sha_hex) is not None
    assert store.put(store.read_zip(stored.sha_hex)).task_root == stored.task_root  # unpacked once


@pytest.mark.parametrize("entries", [
    [("a", FILE, b"1"), ("a", FILE, b"2")],  # the same name twice
    [("a", FILE, b"1"), ("./a", FILE, b"2")],  # the same after normalizing
    [("a", FILE, b"1"), ("a/b", FILE, b"2")],  # a file where a directory is
    [("a/b", FILE, b"1"), ("a", FILE, b"2")],
    [("a/", DIR, b""), ("a", FILE, b"2")],
    [("a", LINK, b"b"), ("a/c", FILE, b"x"), ("b/", DIR, b"")],  # nothing below a link
    [("a", LINK, b"x" * 5000)],  # a link target longer than PATH_MAX
    [("a", LINK, b"")],
    [("n" * 300, FILE, b"x")],  # ENAMETOOLONG while unpacking
])
def test_conflicting_entries_are_refused_with_nothing_left(store, entries):
    put_fails(store, make_zip(entries))


def test_duplicate_directories_are_fine(store):
    stored = store.put(make_zip([("a/", DIR, b""), ("a/", DIR, b""), ("a/f", FILE, b"x")]))
    assert (Path(stored.task_root) / "a/f").read_bytes() == b"x"


def _corrupt(data: bytes, content: bytes) -> bytes:
    at = data.index(content)
    return data[:at] + bytes([content[0] ^ 1]) + data[at + 1:]


def test_broken_zips_are_invalid_code(store):
    good = make_zip([("bootstrap", 0o100755, b"#!/bin/sh\necho hello\n"), ("b", FILE, b"x" * 100)])
    put_fails(store, _corrupt(good, b"#!/bin/sh"))  # bad CRC
    put_fails(store, good[: len(good) // 2])  # truncated
    put_fails(store, good[:-30])  # truncated end record
    put_fails(store, b"PK\x03\x04 not really")
    put_fails(store, b"")
    put_fails(store, make_zip([]), "Uploaded file must be a non-empty zip")
    unknown = bytearray(good)  # compression method 99 in every header: NotImplementedError
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := unknown.find(sig, start)) >= 0:
            unknown[start + offset:start + offset + 2] = struct.pack("<H", 99)
            start += 4
    put_fails(store, bytes(unknown))


def test_deflate_errors_are_invalid_code(store):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("f", os.urandom(64) * 64)
    data = bytearray(buf.getvalue())
    start = data.index(b"PK\x03\x04") + 30 + 1
    data[start + 10:start + 40] = b"\xff" * 30  # garbage in the deflate stream
    put_fails(store, bytes(data))


def declaring(total: int) -> bytes:
    """A zip whose central directory declares total unzipped bytes (its first entry lies)."""
    data = bytearray(make_zip([("a", FILE, b"x"), ("b", FILE, b"y")]))
    at = data.index(b"PK\x01\x02")
    data[at + 24:at + 28] = struct.pack("<I", total - 1)
    return bytes(data)


def test_unzipped_size_limit_is_exclusive(store):
    put_fails(store, declaring(MAX_UNZIPPED), f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")
    store.put(declaring(MAX_UNZIPPED - 1))  # written as long as it really is


def test_sweep_removes_what_an_interrupted_upload_left(tmp_path):
    root = tmp_path / "code"
    (root / ".unpack-x" / "d").mkdir(parents=True)
    (root / ".unpack-x" / "d" / "f").write_text("x")
    os.chmod(root / ".unpack-x" / "d", 0o555)
    (root / ".zip-y").write_text("half")
    (root / "keep.zip").write_text("whole")
    CodeStore(str(root))
    assert os.listdir(root) == ["keep.zip"]


# -- property: random trees of files, directories and links, with random names
_PART = st.sampled_from(["a", "b", "c", "d", "X", ".", "..", "", "é", "sp ace", "back\\slash", "a:b"])
_REL = st.lists(_PART, min_size=1, max_size=5).map("/".join)
_NAME = st.tuples(st.sampled_from(["", "", "", "/", "./"]), _REL, st.sampled_from(["", "", "/"])).map("".join)
_TARGET = st.one_of(_REL, st.just("."), st.just(".."), st.sampled_from(["/", "/tmp", "/etc/passwd"]),
                    st.builds(lambda n, r: "/".join([".."] * n + [r]), st.integers(1, 5), _REL))
_ENTRY = st.one_of(
    st.tuples(_NAME, st.sampled_from([FILE, 0o100755, 0, DIR]), st.binary(max_size=20)),
    st.tuples(_NAME, st.just(LINK), _TARGET.map(str.encode)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_ENTRY, min_size=1, max_size=12), outside=st.booleans())
def test_random_trees_never_reach_outside(entries, outside):
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        (top / "outside").mkdir()
        (top / "outside" / "keep").write_text("keep")
        store = CodeStore(str(top / "a" / "b" / "c" / "code"))
        if outside:  # absolute links aimed at a real directory next to the store
            entries = [(n, m, str(top / "outside").encode()) if m == LINK else (n, m, c) for n, m, c in entries]
        try:
            stored = store.put(make_zip(entries))
        except InvalidCode:
            assert os.listdir(store.root) == []
        else:
            root = os.path.realpath(stored.task_root)
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    resolved = os.path.realpath(os.path.join(dirpath, name))
                    assert resolved == root or resolved.startswith(root + os.sep)
        assert tree(top / "outside") == {"keep"}
        assert (top / "outside" / "keep").read_text() == "keep"
        outside_store = {p for p in tree(top) if not p.startswith("a/b/c/code/")}
        assert outside_store == {"outside", "outside/keep", "a", "a/b", "a/b/c", "a/b/c/code"}
        with contextlib.suppress(OSError):  # let TemporaryDirectory remove the read-only tree
            for dirpath, dirnames, _ in os.walk(top):
                for name in dirnames:
                    path = os.path.join(dirpath, name)
                    if not os.path.islink(path):
                        os.chmod(path, 0o755)


# -- request bodies
def test_light_bodies_and_depth():
    assert rb.is_light(b'{"a": [1, 2, 3]}')
    assert not rb.is_light(b"[" + b"0," * rb.INLINE_VALUES + b"0]")
    assert not rb.is_light(b'"' + b"x" * rb.INLINE_BYTES + b'"')
    assert rb.loads_object(b"  ") == {}
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65):
        with pytest.raises(rb.BodyError, match="nesting depth") as exc:
            rb.loads_object(raw)
        assert exc.value.kind == rb.JSON
    assert rb.loads_object(b'{"a":' * 63 + b"1" + b"}" * 63)
    with pytest.raises(rb.BodyError, match="expected an object"):
        rb.loads_object(b"[]")


def test_zip_field_and_decoding():
    doc = {"Code": {"ZipFile": "UEs=", "S3Bucket": "b"}}
    assert rb.take_zip(doc, "CreateFunction") == "UEs=" and doc == {"Code": {"S3Bucket": "b"}}
    assert rb.take_zip({"ZipFile": "x"}, "CreateFunction") is rb.MISSING
    assert rb.take_zip({"ZipFile": None}, "UpdateFunctionCode") is None
    assert rb.decode_zip("UEs=") == b"PK"
    for bad in (None, 7, ["x"], "not base64!", "é"):
        with pytest.raises(rb.BodyError) as exc:
            rb.decode_zip(bad)
        assert exc.value.kind == rb.CODE


class Child:
    """`python -m lambdalet.store.request_body` driven the way the API drives it."""

    def __init__(self, root: str, operation: str = "CreateFunction") -> None:
        src = os.path.dirname(os.path.dirname(lambdalet.__file__))
        argv = [sys.executable, "-P", "-S", "-m", "lambdalet.store.request_body", root, operation]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": src})

    def send_body(self, body: bytes) -> dict:
        for at in range(0, len(body), 65536):
            self.proc.stdin.write(rb.frame(body[at:at + 65536]))
        self.proc.stdin.write(rb.frame(b""))
        self.proc.stdin.flush()
        return self.reply()

    def reply(self) -> dict:
        return json.loads(self.proc.stdout.readline())

    def go(self) -> dict:
        self.proc.stdin.write(b"1")
        self.proc.stdin.flush()
        return self.reply()

    def end(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(10)


def _body(zip_bytes: bytes, **extra) -> bytes:
    return json.dumps({"FunctionName": "f", "Code": {"ZipFile": base64.b64encode(zip_bytes).decode()},
                       **extra}).encode()


def test_child_parses_then_unpacks_on_the_go_ahead(tmp_path):
    child = Child(str(tmp_path))
    first = child.send_body(_body(make_zip([("bootstrap", 0o100755, b"#!/bin/sh\n")]), Timeout=9))
    assert first == {"doc": {"FunctionName": "f", "Code": {}, "Timeout": 9}, "zip": True}
    stored = child.go()["stored"]
    assert child.end() == 0
    assert os.path.isfile(os.path.join(stored["task_root"], "bootstrap"))
    assert stored["size"] > 0 and stored["task_root"] == CodeStore(str(tmp_path)).task_root(stored["sha_hex"])


def test_child_without_go_ahead_unpacks_nothing(tmp_path):
    child = Child(str(tmp_path))
    assert child.send_body(_body(make_zip([("f", FILE, b"x")])))["zip"] is True
    assert child.end() == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("body", "kind", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "json", "more than"),
    (b"[" + b"0," * 20_000 + b"0]", "json", "more than"),
    (b'{"Code": {"ZipFile": "x"}, "Description": "' + b"d" * 300_000 + b'"}', "json", "more than"),
    (b"{not json", "json", "Expecting property name"),
    (b"[]", "json", "expected an object"),
])
def test_child_refuses_bad_bodies_before_unpacking(tmp_path, body, kind, message):
    child = Child(str(tmp_path))
    err = child.send_body(body)["error"]
    assert err["kind"] == kind and message in err["message"]
    assert child.end() == 0


@pytest.mark.parametrize(("zip_field", "kind", "message"), [
    ("!!!", "code", "Could not unzip uploaded file"),
    (base64.b64encode(b"PK\x03\x04 broken").decode(), "code", "Could not unzip uploaded file"),
])
def test_child_reports_zip_errors_after_the_go_ahead(tmp_path, zip_field, kind, message):
    child = Child(str(tmp_path))
    child.send_body(json.dumps({"Code": {"ZipFile": zip_field}}).encode())
    err = child.go()["error"]
    assert err["kind"] == kind and message in err["message"]
    assert child.end() == 0
    assert os.listdir(tmp_path) == []


def test_child_exits_on_a_cut_body(tmp_path):
    child = Child(str(tmp_path))
    child.proc.stdin.write(rb.frame(b'{"a": 1')[:-2])
    assert child.end() == 1
