"""Layer versions: their description (AWS's GetLayerVersion shape, without Content.Location), the
code they were published with (a task root of the code store) and their resource policy.

Version numbers are never reused: a layer's counter outlives its deleted versions, as on Lambda, so
a layer version ARN always names the same content. A deleted version is only marked so: functions
that were configured with it keep it, as on Lambda.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL     -- the highest version ever published
);
CREATE TABLE IF NOT EXISTS layer_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,                -- GetLayerVersion's answer without Content.Location (JSON)
    code_sha TEXT NOT NULL,           -- hex sha256 of the zip, unpacked in code/<sha>/task
    policy TEXT,                      -- {"RevisionId": ..., "Statement": [...]} (JSON) or NULL
    deleted INTEGER NOT NULL DEFAULT 0,  -- gone from the API, still used by the functions that have it
    PRIMARY KEY (name, version)
);
"""


@dataclass
class LayerVersion:
    name: str
    version: int
    doc: dict[str, Any]
    code_sha: str
    policy: dict[str, Any] | None


class LayerStore:
    """The layer_versions table (small, and off the invoke path: every call is a query)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(_SCHEMA)

    def publish(self, name: str, make_doc, code_sha: str) -> LayerVersion:
        """Store the next version of layer name; make_doc(version) gives its doc."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT last_version FROM layers WHERE name = ?", (name,)).fetchone()
            version = (row[0] if row else 0) + 1
            self.db.execute("INSERT INTO layers (name, last_version) VALUES (?, ?) ON CONFLICT (name)"
                            " DO UPDATE SET last_version = excluded.last_version", (name, version))
            doc = make_doc(version)
            self.db.execute("INSERT INTO layer_versions (name, version, doc, code_sha) VALUES (?, ?, ?, ?)",
                            (name, version, json.dumps(doc), code_sha))
        return LayerVersion(name, version, doc, code_sha, None)

    def get(self, name: str, version: int, *, deleted: bool = False) -> LayerVersion | None:
        """A version (with deleted, also one that was deleted)."""
        row = self.db.execute("SELECT name, version, doc, code_sha, policy FROM layer_versions"
                              " WHERE name = ? AND version = ? AND deleted <= ?",
                              (name, version, int(deleted))).fetchone()
        return _version(row) if row else None

    def versions(self, name: str) -> list[LayerVersion]:
        """The layer's versions, newest first."""
        rows = self.db.execute("SELECT name, version, doc, code_sha, policy FROM layer_versions"
                               " WHERE name = ? AND NOT deleted ORDER BY version DESC", (name,))
        return [_version(row) for row in rows]

    def total_size(self) -> int:
        """Bytes of every layer version's zip that is not deleted (GetAccountSettings' TotalCodeSize)."""
        return sum(_version(row).doc["Content"]["CodeSize"] for row in self.db.execute(
            "SELECT name, version, doc, code_sha, policy FROM layer_versions WHERE NOT deleted"))

    def names(self) -> list[str]:
        """Names of the layers that have at least one version, sorted."""
        return [row[0] for row in self.db.execute("SELECT DISTINCT name FROM layer_versions WHERE NOT deleted"
                                                     " ORDER BY name")]

    def delete(self, name: str, version: int) -> None:
        self.db.execute("UPDATE layer_versions SET deleted = 1, policy = NULL WHERE name = ? AND version = ?",
                        (name, version))

    def set_policy(self, name: str, version: int, policy: dict[str, Any] | None) -> None:
        self.db.execute("UPDATE layer_versions SET policy = ? WHERE name = ? AND version = ?",
                        (None if policy is None else json.dumps(policy), name, version))


def _version(row: tuple) -> LayerVersion:
    name, version, doc, code_sha, policy = row
    return LayerVersion(name, version, json.loads(doc), code_sha, json.loads(policy) if policy else None)
