"""The change log: typed events written in the same transaction as the data they describe.

One function per kind. Each takes the open connection of the catalog transaction that records the
data (so an event exists if and only if its data does), a `Scope` saying which pass and project it
belongs to, and the kind's fields. `changes.seq` is AUTOINCREMENT and SQLite has one writer at a
time, so seq order is commit order; events of one run are therefore in the order they happened.

Payloads (JSON in `changes.payload`; `run` and `subject` columns make them queryable):

    run_created                run=NAME   {"state", "display_name", "created_at"}
    run_state_changed          run=NAME   {"old", "new"}
    run_updated                run=NAME   {"changes": {"summary"|"config"|"tags"|"notes"|...: {"before", "after"}}}
                               (summary/config: only the keys that differ, absent keys left out;
                                config values in W&B's wrapped form {"value": v, "desc": null})
    history_appended           run=NAME   {"first_step", "last_step", "rows"}
    file_mirrored              run=NAME subject=FILE  {"name", "md5", "size", "changed"}
    artifact_version_mirrored  run=PRODUCER|None subject=ARTIFACT_ID
                               {"id", "collection", "type", "version_index", "digest", "aliases", "size", "file_count"}
    artifact_aliases_changed   subject=ARTIFACT_ID {"id", "collection", "version_index", "added", "removed", "aliases"}
    sweep_updated              subject=SWEEP {"name", "state", "changes"}   (changes: {"field": {"before", "after"}})
    sweep_finished             subject=SWEEP {"name", "state", "best_loss"}
    tombstoned                 run=NAME if a run or its file, subject=KEY {"kind", "key"}
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..store.catalog import utcnow

KINDS = (
    "run_created", "run_state_changed", "run_updated", "history_appended", "file_mirrored",
    "artifact_version_mirrored", "artifact_aliases_changed", "sweep_updated", "sweep_finished", "tombstoned",
)


@dataclass(frozen=True)
class Scope:
    pass_id: int | None
    entity: str
    project: str


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"), default=str)


def record(conn: sqlite3.Connection, scope: Scope, kind: str, payload: dict[str, Any], *, run: str | None = None,
           subject: str | None = None, at: str | None = None) -> int:
    """Insert one change event; returns its seq. Must run inside the data's transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    cur = conn.execute(
        "INSERT INTO changes (pass_id, at, kind, entity, project, run, subject, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [scope.pass_id, at or utcnow(), kind, scope.entity, scope.project, run, subject, _json(payload)],
    )
    return int(cur.lastrowid)


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
def run_created(conn: sqlite3.Connection, scope: Scope, run: str, *, state: str | None, display_name: str | None,
                created_at: str | None) -> int:
    return record(conn, scope, "run_created", {"state": state, "display_name": display_name, "created_at": created_at},
                  run=run)


def run_state_changed(conn: sqlite3.Connection, scope: Scope, run: str, old: str | None, new: str | None) -> int:
    return record(conn, scope, "run_state_changed", {"old": old, "new": new}, run=run)


def run_updated(conn: sqlite3.Connection, scope: Scope, run: str, changes: dict[str, dict[str, Any]]) -> int:
    return record(conn, scope, "run_updated", {"changes": changes}, run=run)


def history_appended(conn: sqlite3.Connection, scope: Scope, run: str, first_step: int, last_step: int,
                     rows: int) -> int:
    return record(conn, scope, "history_appended", {"first_step": first_step, "last_step": last_step, "rows": rows},
                  run=run)


def file_mirrored(conn: sqlite3.Connection, scope: Scope, run: str, name: str, md5: str, size: int,
                  changed: bool) -> int:
    return record(conn, scope, "file_mirrored", {"name": name, "md5": md5, "size": size, "changed": changed},
                  run=run, subject=name)


# ---------------------------------------------------------------------------------------------
# artifacts, sweeps, tombstones
# ---------------------------------------------------------------------------------------------
def artifact_version_mirrored(conn: sqlite3.Connection, scope: Scope, *, artifact_id: str, collection: str,
                              type_name: str, version_index: int, digest: str | None, aliases: list[str],
                              size: int, file_count: int, run: str | None = None) -> int:
    return record(conn, scope, "artifact_version_mirrored", {
        "id": artifact_id, "collection": collection, "type": type_name, "version_index": version_index,
        "digest": digest, "aliases": aliases, "size": size, "file_count": file_count}, run=run, subject=artifact_id)


def artifact_aliases_changed(conn: sqlite3.Connection, scope: Scope, *, artifact_id: str, collection: str,
                             version_index: int, added: list[str], removed: list[str], aliases: list[str]) -> int:
    return record(conn, scope, "artifact_aliases_changed", {
        "id": artifact_id, "collection": collection, "version_index": version_index, "added": added,
        "removed": removed, "aliases": aliases}, subject=artifact_id)


def sweep_updated(conn: sqlite3.Connection, scope: Scope, name: str, state: str | None,
                  changes: dict[str, dict[str, Any]]) -> int:
    return record(conn, scope, "sweep_updated", {"name": name, "state": state, "changes": changes}, subject=name)


def sweep_finished(conn: sqlite3.Connection, scope: Scope, name: str, state: str | None,
                   best_loss: float | None) -> int:
    return record(conn, scope, "sweep_finished", {"name": name, "state": state, "best_loss": best_loss}, subject=name)


def tombstoned(conn: sqlite3.Connection, scope: Scope, kind: str, key: str, *, run: str | None = None) -> int:
    return record(conn, scope, "tombstoned", {"kind": kind, "key": key}, run=run, subject=key)


# ---------------------------------------------------------------------------------------------
# diffs for run_updated / sweep_updated
# ---------------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    # NaN != NaN, so compare encodings; also tells 1 from 1.0 only where JSON does (it does not).
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return _json(a) == _json(b)


def dict_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """{"before": {changed keys: old}, "after": {changed keys: new}} or None when equal."""
    b: dict[str, Any] = {}
    a: dict[str, Any] = {}
    for k in before.keys() | after.keys():
        if k in before and k in after and _same(before[k], after[k]):
            continue
        if k in before:
            b[k] = before[k]
        if k in after:
            a[k] = after[k]
    if not a and not b:
        return None
    return {"before": b, "after": a}


def changes_feed(conn: sqlite3.Connection, after_seq: int = 0, *, limit: int = 1000,
                 kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Change events after `after_seq`, oldest first, with payloads decoded (for readers and tests)."""
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
                    "run": run, "subject": subject, "payload": json.loads(payload)})
    return out
