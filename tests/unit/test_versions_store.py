"""Versions and aliases in SQLite, data dirs from before versions, qualifier lookups, model validation text."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from lambdalet.api import validation as v
from lambdalet.api.errors import AwsError, validation
from lambdalet.api.functions import FunctionManager
from lambdalet.api.layers import FunctionLayers
from lambdalet.store import (
    AliasRecord,
    CodeStore,
    FunctionRecord,
    FunctionStore,
    VersionRecord,
    VersionStore,
    connect,
)
from lambdalet.store.layers import LayerStore
from lambdalet.store.policies import PolicyStore

OLD_SCHEMA = """
CREATE TABLE functions (name TEXT PRIMARY KEY, config TEXT NOT NULL, code_sha TEXT NOT NULL, url_config TEXT,
                        reserved_concurrency INTEGER, created REAL NOT NULL);
"""


def _config(name: str, **extra) -> dict:
    return {"FunctionName": name, "FunctionArn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
            "Version": "$LATEST", "RevisionId": "r0", "State": "Active", "LastUpdateStatus": "Successful",
            "CodeSha256": "c", "MemorySize": 128, "Timeout": 3, **extra}


def _manager(db: sqlite3.Connection, tmp_path: Path) -> FunctionManager:
    functions = FunctionStore(db)
    layers = FunctionLayers(LayerStore(db), str(tmp_path / "opt.layers"), str(tmp_path / "opt"), "us-east-1",
                            "000000000000")
    return FunctionManager(functions, CodeStore(str(tmp_path / "code")), "us-east-1", "000000000000", layers,
                           PolicyStore(db), {}, versions=VersionStore(db, functions))


def test_a_data_dir_from_before_versions_keeps_its_functions_as_latest(tmp_path: Path) -> None:
    path = tmp_path / "lambdalet.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO functions VALUES (?, ?, ?, NULL, NULL, 0)",
                ("old", json.dumps(_config("old", State="Pending")), "sha"))
    old.commit()
    old.close()
    db = connect(str(path))
    manager = _manager(db, tmp_path)
    rec, qualifier = manager.get("old")
    assert qualifier is None and rec.config["State"] == "Active"  # settled: nothing is being created any more
    assert manager.versions.versions("old") == [] and manager.versions.last_number("old") == 0
    assert manager.qualifier_exists(rec, None) and manager.qualifier_exists(rec, "$LATEST")
    assert not manager.qualifier_exists(rec, "1") and not manager.qualifier_exists(rec, "live")
    assert manager.resolve("old:$LATEST") == (rec, rec.config["FunctionArn"] + ":$LATEST")


def test_versions_and_aliases_are_stored_and_loaded_again(tmp_path: Path) -> None:
    db = connect(str(tmp_path / "lambdalet.db"))
    manager = _manager(db, tmp_path)
    function = FunctionRecord("fn", _config("fn"), "sha0", None, 3)
    assert manager.store.create(function)
    manager.versions.add_version(VersionRecord("fn", "1", _config("fn", Version="1"), "sha1", "r0", function))
    manager.versions.add_version(VersionRecord("fn", "2", _config("fn", Version="2"), "sha2", "r1", function))
    manager.versions.delete_version("fn", "2")
    manager.versions.save_alias(AliasRecord("fn", "live", {"Name": "live", "FunctionVersion": "1"}))
    db.close()

    db = connect(str(tmp_path / "lambdalet.db"))
    manager = _manager(db, tmp_path)
    function, _ = manager.get("fn")
    assert [ver.version for ver in manager.versions.versions("fn")] == ["1"]
    assert manager.versions.last_number("fn") == 2  # a deleted number is never given again
    version = manager.versions.version("fn", "1")
    assert version is not None and version.code_sha == "sha1" and version.reserved_concurrency == 3
    assert version.pool_key == "fn:1" and function.pool_key == "fn"
    assert manager.qualifier_exists(function, "1") and manager.qualifier_exists(function, "live")
    assert not manager.qualifier_exists(function, "2")
    target, arn = manager.resolve("fn", "live")
    assert target is version and arn.endswith(":function:fn:live")
    assert manager.find("fn:live") == (version, arn) and manager.find("fn:9") is None and manager.find("x") is None
    manager.versions.delete_function("fn")
    assert manager.versions.last_number("fn") == 0 and manager.versions.aliases("fn") == []


def test_model_constraints_are_worded_as_aws_does() -> None:
    errors: list[str] = []
    v.check_function_name(errors, "a b")
    v.check_string(errors, None, "role", v.ROLE, required=True)
    v.check_string(errors, "x" * 257, "description", max_len=256)
    message = validation(errors).message
    assert message.startswith("3 validation errors detected: Value 'a b' at 'functionName' failed to satisfy "
                              "constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?")
    assert "; Value null at 'role' failed to satisfy constraint: Member must not be null; " in message
    assert message.endswith("at 'description' failed to satisfy constraint: Member must have length less than or "
                            "equal to 256")
    assert validation(["one"]).message == "1 validation error detected: one"
    assert v.max_items_errors("0") == ["Value '0' at 'maxItems' failed to satisfy constraint: Member must have "
                                       "value greater than or equal to 1"]


@pytest.mark.parametrize(("raw", "parts"), [
    ("fn", ("fn", None, None, None)),
    ("fn:live", ("fn", "live", None, None)),
    ("123456789012:function:fn:7", ("fn", "7", "123456789012", None)),
    ("arn:aws:lambda:eu-central-1:123456789012:function:fn:$LATEST", ("fn", "$LATEST", "123456789012",
                                                                       "eu-central-1")),
])
def test_names_and_arns_are_taken_apart(raw: str, parts: tuple) -> None:
    assert v.locate(raw) == parts


def test_other_regions_and_mismatched_qualifiers_are_refused(tmp_path: Path) -> None:
    manager = _manager(connect(str(tmp_path / "lambdalet.db")), tmp_path)
    with pytest.raises(AwsError) as exc:
        manager.locate("arn:aws:lambda:eu-central-1:000000000000:function:fn")
    assert (exc.value.status, exc.value.message) == (
        404, "Functions from 'eu-central-1' are not reachable in this region ('us-east-1')")
    with pytest.raises(AwsError) as exc:
        manager.locate("fn:a", "b")
    assert exc.value.code == "InvalidParameterValueException"
    with pytest.raises(AwsError) as exc:
        manager.locate("fn", "bad qualifier!")
    assert exc.value.code == "ValidationException" and "at 'qualifier'" in exc.value.message
