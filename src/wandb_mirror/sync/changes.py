"""The change log: typed events written in the same transaction as the data they describe.

One function per kind. Each takes a sink, a `Scope` saying which pass and project it belongs to, and
the kind's fields. The sink is either a list, which collects the changes for the catalog method that
records their data (so an event exists if and only if its data does), or the open connection of a
catalog transaction, which writes it at once. The catalog keeps seq order = commit order, so events
of one run are in the order they happened.

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

import math
import sqlite3
from typing import Any

from ..store.catalog import utcnow
from ..store.changelog import Change, Scope, encode, insert_change, select_changes

KINDS = (
    "run_created", "run_state_changed", "run_updated", "history_appended", "file_mirrored",
    "artifact_version_mirrored", "artifact_aliases_changed", "sweep_updated", "sweep_finished", "tombstoned",
)

# where a change goes: collected for a catalog record method, or written in an open transaction
Sink = list[Change] | sqlite3.Connection


def make(scope: Scope, kind: str, payload: dict[str, Any], *, run: str | None = None,
         subject: str | None = None, at: str | None = None) -> Change:
    """One change of a known kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    return Change(scope, kind, payload, run=run, subject=subject, at=at)


def record(sink: Sink, scope: Scope, kind: str, payload: dict[str, Any], *, run: str | None = None,
           subject: str | None = None, at: str | None = None) -> int:
    """Add one change to `sink`; returns its seq when written at once (0 when collected)."""
    change = make(scope, kind, payload, run=run, subject=subject, at=at)
    if isinstance(sink, list):
        sink.append(change)
        return 0
    return insert_change(sink, change, utcnow())


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
def run_created(sink: Sink, scope: Scope, run: str, *, state: str | None, display_name: str | None,
                created_at: str | None) -> int:
    return record(sink, scope, "run_created", {"state": state, "display_name": display_name, "created_at": created_at},
                  run=run)


def run_state_changed(sink: Sink, scope: Scope, run: str, old: str | None, new: str | None) -> int:
    return record(sink, scope, "run_state_changed", {"old": old, "new": new}, run=run)


def run_updated(sink: Sink, scope: Scope, run: str, changes: dict[str, dict[str, Any]]) -> int:
    return record(sink, scope, "run_updated", {"changes": changes}, run=run)


def history_appended(sink: Sink, scope: Scope, run: str, first_step: int, last_step: int,
                     rows: int) -> int:
    return record(sink, scope, "history_appended", {"first_step": first_step, "last_step": last_step, "rows": rows},
                  run=run)


def file_mirrored(sink: Sink, scope: Scope, run: str, name: str, md5: str, size: int,
                  changed: bool) -> int:
    return record(sink, scope, "file_mirrored", {"name": name, "md5": md5, "size": size, "changed": changed},
                  run=run, subject=name)


# ---------------------------------------------------------------------------------------------
# artifacts, sweeps, tombstones
# ---------------------------------------------------------------------------------------------
def artifact_version_mirrored(sink: Sink, scope: Scope, *, artifact_id: str, collection: str,
                              type_name: str, version_index: int, digest: str | None, aliases: list[str],
                              size: int, file_count: int, run: str | None = None) -> int:
    return record(sink, scope, "artifact_version_mirrored", {
        "id": artifact_id, "collection": collection, "type": type_name, "version_index": version_index,
        "digest": digest, "aliases": aliases, "size": size, "file_count": file_count}, run=run, subject=artifact_id)


def artifact_aliases_changed(sink: Sink, scope: Scope, *, artifact_id: str, collection: str,
                             version_index: int, added: list[str], removed: list[str], aliases: list[str]) -> int:
    return record(sink, scope, "artifact_aliases_changed", {
        "id": artifact_id, "collection": collection, "version_index": version_index, "added": added,
        "removed": removed, "aliases": aliases}, subject=artifact_id)


def sweep_updated(sink: Sink, scope: Scope, name: str, state: str | None,
                  changes: dict[str, dict[str, Any]]) -> int:
    return record(sink, scope, "sweep_updated", {"name": name, "state": state, "changes": changes}, subject=name)


def sweep_finished(sink: Sink, scope: Scope, name: str, state: str | None,
                   best_loss: float | None) -> int:
    return record(sink, scope, "sweep_finished", {"name": name, "state": state, "best_loss": best_loss}, subject=name)


def tombstoned(sink: Sink, scope: Scope, kind: str, key: str, *, run: str | None = None) -> int:
    return record(sink, scope, "tombstoned", {"kind": kind, "key": key}, run=run, subject=key)


# ---------------------------------------------------------------------------------------------
# diffs for run_updated / sweep_updated
# ---------------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    # NaN != NaN, so compare encodings; also tells 1 from 1.0 only where JSON does (it does not).
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return encode(a) == encode(b)


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
    return select_changes(conn, after_seq, limit=limit, kinds=kinds)


__all__ = ["KINDS", "Change", "Scope", "Sink", "make", "record", "dict_diff", "changes_feed"]
