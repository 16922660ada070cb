"""The change log's rows: what a change is (plain values), and the SQL that writes and reads them.

A change is written in the same transaction as the data it describes (so an event exists if and
only if its data does). `changes.seq` is AUTOINCREMENT and SQLite has one writer at a time, so seq
order is commit order. What each kind's payload holds is sync/changes.py's business; this module
only stores and returns them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .. import jsontext


@dataclass(frozen=True)
class Scope:
    """Which pass and project a change belongs to."""

    pass_id: int | None
    entity: str
    project: str


@dataclass(frozen=True)
class Change:
    """One row of the change log, before it is written."""

    scope: Scope
    kind: str
    payload: dict[str, Any]
    run: str | None = None
    subject: str | None = None
    at: str | None = None


def encode(value: Any) -> str:
    """A payload as catalog JSON (strict: see jsontext)."""
    return jsontext.to_catalog(json.dumps(value, allow_nan=True, separators=(",", ":"), default=str))


def insert_change(conn: sqlite3.Connection, change: Change, at: str) -> int:
    """Insert one change in the caller's transaction; returns its seq."""
    s = change.scope
    cur = conn.execute(
        "INSERT INTO changes (pass_id, at, kind, entity, project, run, subject, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [s.pass_id, change.at or at, change.kind, s.entity, s.project, change.run, change.subject,
         encode(change.payload)],
    )
    return int(cur.lastrowid or 0)


def max_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])


def select_changes(conn: sqlite3.Connection, after_seq: int = 0, *, limit: int = 1000,
                   kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Change rows after `after_seq`, oldest first, with payloads decoded."""
    sql = "SELECT seq, pass_id, at, kind, entity, project, run, subject, payload FROM changes WHERE seq > ?"
    params: list[Any] = [after_seq]
    if kinds:
        sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
        params += list(kinds)
    sql += " ORDER BY seq LIMIT ?"
    params.append(limit)
    out = []
    for row in conn.execute(sql, params).fetchall():
        seq, pass_id, at, kind, entity, project, run, subject, payload = row
        out.append({"seq": seq, "pass_id": pass_id, "at": at, "kind": kind, "entity": entity, "project": project,
                    "run": run, "subject": subject, "payload": jsontext.loads(payload, {})})
    return out
