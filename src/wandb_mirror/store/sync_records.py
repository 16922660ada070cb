"""What the sync engine writes to (and reads back from) the catalog, one named method per act.

The sync modules hold no SQL: each thing a pass records (a pass row, sync state, a quarantined
item, tombstones, a run with everything hanging off it, an artifact version, links, sweeps) is one
method here taking plain dataclasses and values, and writes its change-log rows in the same
transaction. This is the seam another catalog backend implements. `Catalog` mixes it in; methods
annotate `self: _Core` so they can use its helpers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..models import Artifact, ArtifactEntry, Run, RunFile, Sweep, User
from ..times import utcnow
from .changelog import Change, insert_change, max_seq

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from contextlib import AbstractContextManager

# tables whose rows a tombstone may mark (the table name is interpolated, so it must be one of these)
TOMBSTONE_TABLES = frozenset({"projects", "runs", "files", "artifacts", "artifact_collections", "sweeps", "reports"})
_KEYED = {"sweeps": "name", "reports": "id"}


@dataclass
class Tombstone:
    """A row upstream no longer lists; applied (tombstoned_at set, `tombstoned` change) when proven."""

    table: str
    pk: int
    change: Change      # the `tombstoned` change, written only if the row was not tombstoned already


@dataclass
class PassEnd:
    pass_id: int
    finished_at: str
    status: str
    requests: int
    stats: dict[str, Any]
    errors: list[str]


@dataclass
class RunRecord:
    """One run's transaction: its row with new change markers and all that hangs off it."""

    project_pk: int
    run: Run
    mirrored_at: str
    changes: list[Change] = field(default_factory=list)
    events: list[str] | None = None            # system-metrics rows; None: unchanged
    files: list[RunFile] = field(default_factory=list)
    state: dict[str, str | None] = field(default_factory=dict)   # sync_state keys to set (None: delete)
    tombstones: list[Tombstone] = field(default_factory=list)    # of the run's files, proven by its listing
    staged_history: int | None = None  # staging_run_pk() the new run's history was written under
    replace_history: bool = False      # the staged rows replace all the run had (upstream rewrote it)


@dataclass
class RunRecorded:
    run_pk: int
    event_rows: int  # system-metrics rows written (0 when they were unchanged)
    tombstoned: int  # rows tombstoned with it


@dataclass
class ArtifactVersionRecord:
    """A verified artifact version: its row, manifest entries, links and change, in one transaction."""

    project_pk: int
    artifact: Artifact
    entries: list[ArtifactEntry]
    producer_run_pk: int | None = None
    consumer_run_pk: int | None = None
    changes: list[Change] = field(default_factory=list)


class _Core(Protocol):
    """The parts of Catalog these methods build on."""

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]: ...
    def query_one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None: ...
    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def upsert_user(self, u: User) -> None: ...
    def upsert_run(self, project_pk: int, run: Run, *, mirrored_at: str | None = None) -> int: ...
    def replace_events(self, run_pk: int, rows: Iterable[str]) -> int: ...
    def upsert_file(self, run_pk: int, f: RunFile, *, mirrored_at: str | None = None) -> int: ...
    def upsert_artifact(self, collection_pk: int, a: Artifact, entries: list[ArtifactEntry] | None = None, *,
                        producer_run_pk: int | None = None, mirrored_at: str | None = None) -> int: ...
    def upsert_sweep(self, project_pk: int, s: Sweep) -> int: ...


class SyncRecords:
    # -- passes ----------------------------------------------------------------------------
    def begin_pass(self: _Core, started_at: str, *, worker: str | None = None,
                   stale_before: float | None = None) -> tuple[int, int]:
        """Mark passes cut short and start a new one. Returns (pass id, the change seq before it).

        A 'running' pass was cut short when its process ended: with the store lock held alone
        (`stale_before` None) that is every one; with several workers (store/claims.py), only those
        whose worker has not renewed them since `stale_before` (epoch seconds), or this worker's own."""
        with self.transaction() as conn:
            error = json.dumps(["interrupted: the process ended during this pass"])
            if stale_before is None:
                conn.execute("UPDATE passes SET status = 'failed', finished_at = COALESCE(finished_at, ?), "
                             "errors = ? WHERE status = 'running'", [started_at, error])
            else:
                conn.execute("UPDATE passes SET status = 'failed', finished_at = COALESCE(finished_at, ?), "
                             "errors = ? WHERE status = 'running' "
                             "AND (renewed_at IS NULL OR renewed_at < ? OR worker = ?)",
                             [started_at, error, stale_before, worker])
            pass_id = int(conn.execute("INSERT INTO passes (started_at, status, worker, renewed_at) "
                                       "VALUES (?, 'running', ?, ?)",
                                       [started_at, worker, time.time()]).lastrowid or 0)
            return pass_id, max_seq(conn)

    def finish_pass(self: _Core, end: PassEnd) -> int:
        """Record how a pass ended; returns the last change seq."""
        with self.transaction() as conn:
            last = max_seq(conn)
            conn.execute("UPDATE passes SET finished_at = ?, status = ?, requests = ?, stats = ?, errors = ? "
                         "WHERE id = ?",
                         [end.finished_at, end.status, end.requests, json.dumps(end.stats),
                          json.dumps(end.errors[:1000]), end.pass_id])
            return last

    # -- who, where ------------------------------------------------------------------------
    def record_viewer(self: _Core, user: User, entity: str | None, teams: list[str], upstream: str) -> None:
        with self.transaction() as conn:
            self.upsert_user(user)
            if entity:
                conn.execute("INSERT OR IGNORE INTO entities (name) VALUES (?)", [entity])
                self.set_meta("default_entity", entity)
            self.set_meta("viewer", user.username)
            self.set_meta("upstream", upstream)
            for team in teams:
                conn.execute("INSERT OR IGNORE INTO entities (name, is_team) VALUES (?, 1)", [team])

    def add_entity(self: _Core, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO entities (name) VALUES (?)", [name])

    def ensure_project(self: _Core, entity: str, name: str, *, id: str | None = None,
                       internal_id: str | None = None) -> int:
        """The pk of a project row, creating a minimal one (for artifacts that live in other projects)."""
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO projects (entity, name, id, internal_id) VALUES (?, ?, ?, ?)",
                         [entity, name, id, internal_id])
            return int(conn.execute("SELECT pk FROM projects WHERE entity = ? AND name = ?",
                                    [entity, name]).fetchone()[0])

    def set_project_internal_id(self: _Core, project_pk: int, internal_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE projects SET internal_id = ? WHERE pk = ?", [internal_id, project_pk])

    def live_projects(self: _Core, entity: str) -> list[tuple[int, str]]:
        """(pk, name) of the entity's projects that are not tombstoned and hold mirrored data."""
        rows = self.query("SELECT pk, name FROM projects WHERE entity = ? AND tombstoned_at IS NULL", [entity])
        return [(r["pk"], r["name"]) for r in rows
                if self.scalar("SELECT 1 FROM runs WHERE project_pk = ? LIMIT 1", [r["pk"]])
                or self.scalar("SELECT 1 FROM artifact_collections WHERE project_pk = ? LIMIT 1", [r["pk"]])]

    # -- sync state ------------------------------------------------------------------------
    def sync_state(self: _Core, project_pk: int, key: str) -> str | None:
        value = self.scalar("SELECT value FROM sync_state WHERE project_pk = ? AND key = ?", [project_pk, key])
        return None if value is None else str(value)

    def sync_states(self: _Core, project_pk: int, prefix: str) -> dict[str, str | None]:
        """Every key starting with `prefix`, the prefix removed."""
        rows = self.query("SELECT key, value FROM sync_state WHERE project_pk = ? AND substr(key, 1, ?) = ?",
                          [project_pk, len(prefix), prefix])
        return {r["key"][len(prefix):]: r["value"] for r in rows}

    def set_sync_state(self: _Core, project_pk: int, values: Mapping[str, str | None]) -> None:
        with self.transaction() as conn:
            _set_state(conn, project_pk, values)

    # -- quarantine, tombstones ------------------------------------------------------------
    def quarantine(self: _Core, pass_id: int | None, kind: str, upstream_path: str, reason: str,
                   detail: str | None = None) -> None:
        """Record an item that failed verification or was unsafe (once per kind, path and reason)."""
        now = utcnow()
        with self.transaction() as conn:
            row = conn.execute("SELECT pk FROM quarantine WHERE kind = ? AND upstream_path = ? AND reason = ?",
                               [kind, upstream_path, reason]).fetchone()
            if row:
                conn.execute("UPDATE quarantine SET at = ?, pass_id = ?, detail = ? WHERE pk = ?",
                             [now, pass_id, detail, row[0]])
            else:
                conn.execute("INSERT INTO quarantine (at, pass_id, kind, upstream_path, reason, detail) "
                             "VALUES (?, ?, ?, ?, ?, ?)", [now, pass_id, kind, upstream_path, reason, detail])

    def retry_refused(self: _Core, project_pk: int, where: str, kind: str, reason_prefix: str) -> set[str]:
        """Drop the quarantine rows of `kind` ('run', 'file', 'artifact') under `where` (ENTITY/PROJECT) whose
        reason starts with `reason_prefix`, and give their runs a retry; returns the run ids."""
        prefix = where + "/"
        rows = self.query("SELECT pk, upstream_path FROM quarantine WHERE kind = ? AND substr(reason, 1, ?) = ? "
                          "AND substr(upstream_path, 1, ?) = ?",
                          [kind, len(reason_prefix), reason_prefix, len(prefix), prefix])
        if not rows:
            return set()
        # a file row is WHERE/RUN_ID/NAME (a run id holds no '/'); a run row is WHERE/repr(RUN_ID)
        runs = {r["upstream_path"][len(prefix):].split("/", 1)[0] for r in rows} if kind == "file" else set()
        with self.transaction() as conn:
            _set_state(conn, project_pk, {f"retry:{run}": "1" for run in runs})
            conn.executemany("DELETE FROM quarantine WHERE pk = ?", [(r["pk"],) for r in rows])
        return runs

    def apply_tombstones(self: _Core, tombstones: list[Tombstone]) -> int:
        """Mark rows deleted upstream, each with its `tombstoned` change; returns how many were new."""
        if not tombstones:
            return 0
        with self.transaction() as conn:
            return _tombstone(conn, tombstones, utcnow())

    def live_keys(self: _Core, table: str, project_pk: int) -> dict[str, int]:
        """key -> pk of a project's sweeps (by name) or reports (by id) that are not tombstoned."""
        key = _KEYED[table]
        rows = self.query(f"SELECT pk, {key} FROM {table} WHERE project_pk = ? AND tombstoned_at IS NULL",
                          [project_pk])
        return {r[key]: r["pk"] for r in rows}

    # -- runs ------------------------------------------------------------------------------
    def stored_runs(self: _Core, project_pk: int) -> dict[str, dict[str, Any]]:
        """A project's runs with their change markers, by run id."""
        rows = self.query(
            "SELECT pk, run_id, state, heartbeat_at, updated_at, history_line_count, last_step, tags, notes, "
            "display_name, description, group_name, job_type, sweep_name, commit_hash, mirrored_at, tombstoned_at "
            "FROM runs WHERE project_pk = ?", [project_pk])
        return {r["run_id"]: r for r in rows}

    def run_payload(self: _Core, run_pk: int) -> tuple[str | None, str | None, str | None] | None:
        """(config, summary, system_metrics) as stored."""
        row = self.query_one("SELECT config, summary, system_metrics FROM runs WHERE pk = ?", [run_pk])
        return (row["config"], row["summary"], row["system_metrics"]) if row else None

    def run_files(self: _Core, run_pk: int) -> dict[str, dict[str, Any]]:
        """A run's files (pk, name, md5, tombstoned_at) by name."""
        rows = self.query("SELECT pk, name, md5, tombstoned_at FROM files WHERE run_pk = ?", [run_pk])
        return {r["name"]: r for r in rows}

    def record_run(self: _Core, rec: RunRecord) -> RunRecorded:
        """The run row, its events, files, sync state, tombstones and changes: all or nothing."""
        with self.transaction() as conn:
            run_pk = self.upsert_run(rec.project_pk, rec.run, mirrored_at=rec.mirrored_at)
            written = 0
            if rec.events is not None:
                cur = [r[0] for r in conn.execute("SELECT row FROM events WHERE run_pk = ? ORDER BY seq", [run_pk])]
                if cur != rec.events:
                    written = self.replace_events(run_pk, rec.events)
            for f in rec.files:
                self.upsert_file(run_pk, f)
            if rec.staged_history is not None:
                if rec.replace_history:
                    conn.execute("DELETE FROM history WHERE run_pk = ?", [run_pk])
                    conn.execute("DELETE FROM history_segments WHERE run_pk = ?", [run_pk])
                conn.execute("INSERT OR REPLACE INTO history (run_pk, step, row) SELECT ?, step, row FROM history "
                             "WHERE run_pk = ?", [run_pk, rec.staged_history])
                conn.execute("DELETE FROM history WHERE run_pk = ?", [rec.staged_history])
                # rows from parquet exports went straight into segments under the staging pk
                conn.execute("UPDATE history_segments SET run_pk = ? WHERE run_pk = ?", [run_pk, rec.staged_history])
                _set_state(conn, rec.project_pk, {_staging_key(rec.run.run_id): None})
            _set_state(conn, rec.project_pk, rec.state)
            now = utcnow()
            for c in rec.changes:
                insert_change(conn, c, now)
            return RunRecorded(run_pk, written, _tombstone(conn, rec.tombstones, now))

    def history_row(self: _Core, run_pk: int, step: int) -> str | None:
        value = self.scalar("SELECT row FROM history WHERE run_pk = ? AND step = ?", [run_pk, step])
        return None if value is None else str(value)

    def staging_run_pk(self: _Core, project_pk: int, run_id: str) -> int:
        """A negative stand-in pk under which a new run's history is written before its row exists
        (no run has it, so no reader sees those rows). The same run gets the same one until recorded."""
        key = _staging_key(run_id)
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM sync_state WHERE project_pk = ? AND key = ?",
                               [project_pk, key]).fetchone()
            if row:
                pk = int(row[0])
                conn.execute("DELETE FROM history WHERE run_pk = ?", [pk])  # each fetch starts afresh
                conn.execute("DELETE FROM history_segments WHERE run_pk = ?", [pk])
                return pk
            low_state = conn.execute("SELECT MIN(CAST(value AS INTEGER)) FROM sync_state "
                                     "WHERE substr(key, 1, 8) = 'staging:'").fetchone()[0]
            low_history = conn.execute("SELECT MIN(pk) FROM (SELECT MIN(run_pk) AS pk FROM history "
                                       "UNION ALL SELECT MIN(run_pk) FROM history_segments)").fetchone()[0]
            pk = min(-1, (low_state or 0) - 1, (low_history or 0) - 1)
            _set_state(conn, project_pk, {key: str(pk)})
            return pk

    # -- artifacts -------------------------------------------------------------------------
    def collection_row(self: _Core, project_pk: int, name: str) -> dict[str, Any] | None:
        return self.query_one("SELECT pk, updated_at, tombstoned_at, description, tags FROM artifact_collections "
                              "WHERE project_pk = ? AND name = ?", [project_pk, name])

    def live_collections(self: _Core, project_pk: int) -> list[dict[str, Any]]:
        return self.query("SELECT pk, name, type_name FROM artifact_collections WHERE project_pk = ? "
                          "AND tombstoned_at IS NULL", [project_pk])

    def live_versions(self: _Core, project_pk: int, collection: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT a.pk, a.id, a.version_index FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
            "WHERE c.project_pk = ? AND c.name = ? AND a.tombstoned_at IS NULL", [project_pk, collection])

    def artifact_row(self: _Core, artifact_id: str) -> dict[str, Any] | None:
        return self.query_one("SELECT pk, aliases, tags, description, metadata, manifest_md5, tombstoned_at, "
                              "collection_pk FROM artifacts WHERE id = ?", [artifact_id])

    def md5_of_xxh128(self: _Core, digest: str, size: int) -> str | None:
        """The md5 of a file an earlier version listed with this XXH128 digest and size, if any."""
        value = self.scalar("SELECT md5 FROM artifact_files WHERE digest = ? AND size = ? AND md5 IS NOT NULL "
                            "AND extra LIKE '%XXH128%' LIMIT 1", [digest, size])
        return None if value is None else str(value)

    def link_artifact(self: _Core, artifact_pk: int, *, producer_run_pk: int | None = None,
                      consumer_run_pk: int | None = None, changes: list[Change] | None = None) -> None:
        """Link a version to the run that logged / used it."""
        with self.transaction() as conn:
            _link(conn, artifact_pk, producer_run_pk, consumer_run_pk)
            for c in changes or ():
                insert_change(conn, c, utcnow())

    def refresh_artifact(self: _Core, artifact_pk: int, a: Artifact, *, producer_run_pk: int | None = None,
                         consumer_run_pk: int | None = None, changes: list[Change] | None = None) -> None:
        """A known version's mutable fields (aliases, tags, description, metadata); un-tombstones it."""
        with self.transaction() as conn:
            _link(conn, artifact_pk, producer_run_pk, consumer_run_pk)
            conn.execute("UPDATE artifacts SET aliases = ?, tags = ?, description = ?, metadata = ?, updated_at = ?, "
                         "tombstoned_at = NULL WHERE pk = ?",
                         [a.aliases, a.tags, a.description, a.metadata, a.updated_at, artifact_pk])
            for c in changes or ():
                insert_change(conn, c, utcnow())

    def record_artifact_version(self: _Core, rec: ArtifactVersionRecord) -> int:
        """Collection, type, version, entries, link and change in one transaction; returns the version's pk."""
        a = rec.artifact
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO artifact_collections (project_pk, name, type_name) VALUES (?, ?, ?)",
                         [rec.project_pk, a.collection_name, a.type_name])
            cpk = conn.execute("SELECT pk FROM artifact_collections WHERE project_pk = ? AND name = ?",
                               [rec.project_pk, a.collection_name]).fetchone()[0]
            conn.execute("INSERT OR IGNORE INTO artifact_types (project_pk, name) VALUES (?, ?)",
                         [rec.project_pk, a.type_name])
            clash = conn.execute("SELECT pk, id FROM artifacts WHERE collection_pk = ? AND version_index = ? "
                                 "AND id != ?", [cpk, a.version_index, a.id]).fetchone()
            if clash:
                # the upstream re-created this version number (deleted and re-logged): keep the old row,
                # tombstoned, under a negative index so both stay addressable.
                conn.execute("UPDATE artifacts SET version_index = -pk, tombstoned_at = COALESCE(tombstoned_at, ?) "
                             "WHERE pk = ?", [utcnow(), clash[0]])
            apk = self.upsert_artifact(cpk, a, rec.entries, producer_run_pk=rec.producer_run_pk)
            _link(conn, apk, None, rec.consumer_run_pk)
            for c in rec.changes:
                insert_change(conn, c, utcnow())
            return apk

    # -- sweeps, reports -------------------------------------------------------------------
    def sweep_row(self: _Core, project_pk: int, name: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM sweeps WHERE project_pk = ? AND name = ?", [project_pk, name])

    def record_sweep(self: _Core, project_pk: int, sweep: Sweep, changes: list[Change]) -> None:
        with self.transaction() as conn:
            self.upsert_sweep(project_pk, sweep)
            for c in changes:
                insert_change(conn, c, utcnow())

    def report_row(self: _Core, project_pk: int, report_id: str) -> dict[str, Any] | None:
        return self.query_one("SELECT * FROM reports WHERE project_pk = ? AND id = ?", [project_pk, report_id])


def _staging_key(run: str) -> str:
    return f"staging:{run}"


def _set_state(conn: sqlite3.Connection, project_pk: int, values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            conn.execute("DELETE FROM sync_state WHERE project_pk = ? AND key = ?", [project_pk, key])
        else:
            conn.execute("INSERT INTO sync_state (project_pk, key, value) VALUES (?, ?, ?) "
                         "ON CONFLICT (project_pk, key) DO UPDATE SET value = excluded.value", [project_pk, key, value])


def _tombstone(conn: sqlite3.Connection, tombstones: list[Tombstone], now: str) -> int:
    n = 0
    for t in tombstones:
        if t.table not in TOMBSTONE_TABLES:
            raise ValueError(f"not a tombstone table: {t.table!r}")
        cur = conn.execute(f"UPDATE {t.table} SET tombstoned_at = ? WHERE pk = ? AND tombstoned_at IS NULL", [now, t.pk])
        if cur.rowcount:
            insert_change(conn, t.change, now)
            n += 1
    return n


def _link(conn: sqlite3.Connection, artifact_pk: int, producer_run_pk: int | None, consumer_run_pk: int | None) -> None:
    if producer_run_pk is not None:
        conn.execute("UPDATE artifacts SET producer_run_pk = ? WHERE pk = ? AND producer_run_pk IS NOT ?",
                     [producer_run_pk, artifact_pk, producer_run_pk])
    if consumer_run_pk is not None:
        conn.execute("INSERT OR IGNORE INTO artifact_usage (artifact_pk, run_pk) VALUES (?, ?)",
                     [artifact_pk, consumer_run_pk])
