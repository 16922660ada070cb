"""`StoreView`: the read-only store handle plugins get as the `store` argument.

Plugins read the mirror through this (runs, history, files, artifacts, sweeps, object bytes) and
keep their own small durable state in `store.state` (a per-plugin JSON key/value table). They
never write the catalog's mirrored data: that belongs to the sync engine.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .. import jsontext
from ..models import ArtifactEntry
from ..store import Store
from ..times import utcnow
from .types import Artifact, File, Run, Sweep

__all__ = ["StoreView", "PluginState"]

_RUN_SQL = (
    "SELECT r.*, p.entity AS entity, p.name AS project, p.internal_id AS project_internal_id "
    "FROM runs r JOIN projects p ON p.pk = r.project_pk"
)
_FILE_SQL = (
    "SELECT f.*, r.run_id AS run, p.entity AS entity, p.name AS project "
    "FROM files f JOIN runs r ON r.pk = f.run_pk JOIN projects p ON p.pk = r.project_pk"
)
_ARTIFACT_SQL = (
    "SELECT a.*, c.name AS collection_name, p.entity AS entity, p.name AS project, pr.run_id AS producer_run "
    "FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
    "JOIN projects p ON p.pk = c.project_pk LEFT JOIN runs pr ON pr.pk = a.producer_run_pk"
)
_SWEEP_SQL = "SELECT s.*, p.entity AS entity, p.name AS project FROM sweeps s JOIN projects p ON p.pk = s.project_pk"


def run_from_row(row: dict[str, Any]) -> Run:
    return Run.from_row(row)


def file_from_row(row: dict[str, Any]) -> File:
    row = dict(row)
    row["run_pk"] = row.get("run_pk")
    return File.from_row(row)


def artifact_from_row(row: dict[str, Any]) -> Artifact:
    return Artifact.from_row(row)


def sweep_from_row(row: dict[str, Any]) -> Sweep:
    return Sweep.from_row(row)


class PluginState:
    """A plugin's own durable key/value state (JSON values), in the catalog table `plugin_state`."""

    def __init__(self, store: Store, plugin: str):
        self._store = store
        self.plugin = plugin

    def get(self, key: str, default: Any = None) -> Any:
        text = self._store.catalog.scalar(
            "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", [self.plugin, key]
        )
        return default if text is None else jsontext.loads(text)

    def set(self, key: str, value: Any) -> None:
        with self._store.catalog.transaction() as conn:
            conn.execute(
                "INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [self.plugin, key, jsontext.dumps(value), utcnow()],
            )

    def delete(self, key: str) -> None:
        with self._store.catalog.transaction() as conn:
            conn.execute("DELETE FROM plugin_state WHERE plugin = ? AND key = ?", [self.plugin, key])

    def items(self, prefix: str = "") -> dict[str, Any]:
        """Every key starting with `prefix`, with its value."""
        rows = self._store.catalog.query(
            "SELECT key, value FROM plugin_state WHERE plugin = ? AND substr(key, 1, ?) = ? ORDER BY key",
            [self.plugin, len(prefix), prefix],
        )
        return {r["key"]: jsontext.loads(r["value"]) for r in rows}


class StoreView:
    """Read access to a store for plugins. Every method returns fresh catalog data."""

    def __init__(self, store: Store, plugin: str = ""):
        self._store = store
        self.plugin = plugin
        self.state = PluginState(store, plugin)

    @property
    def path(self) -> Path:
        """The store directory (read it, never write into it)."""
        return self._store.path

    def _q(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self._store.catalog.query(sql, list(params))

    # -- runs ------------------------------------------------------------------------------
    def run(self, entity: str, project: str, run_id: str | None = None, *, name: str | None = None) -> Run | None:
        """The run `entity/project/run_id` (`name=` is the deprecated spelling of `run_id`)."""
        if name is not None:
            warnings.warn("StoreView.run(name=...) is deprecated: pass run_id", DeprecationWarning, stacklevel=2)
            run_id = name if run_id is None else run_id
        rows = self._q(_RUN_SQL + " WHERE p.entity = ? AND p.name = ? AND r.run_id = ?", [entity, project, run_id])
        return run_from_row(rows[0]) if rows else None

    def runs(
        self,
        entity: str | None = None,
        project: str | None = None,
        *,
        sweep: Sweep | str | None = None,
        states: list[str] | tuple[str, ...] | set[str] | None = None,
        include_tombstoned: bool = False,
    ) -> list[Run]:
        """Runs in catalog order (created_at); filter by project, sweep (object or name) and state."""
        if isinstance(sweep, Sweep):
            entity, project, sweep = sweep.entity, sweep.project, sweep.name
        states = list(states) if states is not None else None
        where, params = _where(("p.entity = ?", entity), ("p.name = ?", project), ("r.sweep_name = ?", sweep),
                               (f"r.state IN ({', '.join('?' * len(states or []))})", states),
                               ("r.tombstoned_at IS NULL", None if include_tombstoned else ()))
        sql = _RUN_SQL + where + " ORDER BY p.entity, p.name, r.created_at, r.run_id"
        return [run_from_row(r) for r in self._q(sql, params)]

    def history(
        self,
        run: Run,
        *,
        min_step: int | None = None,
        max_step: int | None = None,
        keys: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The run's full mirrored history as dicts, by step; `max_step` is exclusive like W&B's.

        With `keys`, each row holds only those keys (and `_step`); rows without any are skipped,
        and only those keys' columns are read from the history segments.
        NaN/Infinity come back as Python floats.
        """
        pk = self._run_pk(run)
        if pk is None:
            return
        for step, row in self._store.history.rows(pk, min_step=min_step, max_step=max_step, keys=keys):
            if keys is not None:
                sub = {k: row[k] for k in keys if k in row}
                if not sub:
                    continue
                sub.setdefault("_step", step)
                row = sub
            yield row

    def history_rows(self, run: Run, *, min_step: int | None = None, max_step: int | None = None) -> Iterator[tuple[int, str]]:
        """(step, row JSON text) pairs (the tail exactly as mirrored, segment rows re-encoded)."""
        pk = self._run_pk(run)
        if pk is None:
            return
        yield from self._store.history.texts(pk, min_step=min_step, max_step=max_step)

    def system_metrics(self, run: Run) -> Iterator[dict[str, Any]]:
        """The run's mirrored system metrics (W&B's events stream), one dict per sample, in order."""
        pk = self._run_pk(run)
        if pk is None:
            return
        cur = self._store.catalog.conn.execute("SELECT row FROM events WHERE run_pk = ? ORDER BY seq", [pk])
        while batch := cur.fetchmany(1000):
            yield from (jsontext.loads(text, {}) or {} for (text,) in batch)

    def history_keys(self, run: Run) -> list[str]:
        """Every key that occurs in the run's mirrored history, sorted."""
        keys: set[str] = set()
        for row in self.history(run):
            keys.update(row)
        return sorted(keys)

    def _run_pk(self, run: Run) -> int | None:
        if run.pk is not None:
            return run.pk
        return self._store.catalog.scalar(
            "SELECT r.pk FROM runs r JOIN projects p ON p.pk = r.project_pk "
            "WHERE p.entity = ? AND p.name = ? AND r.run_id = ?",
            [run.entity, run.project, run.run_id],
        )

    # -- files -----------------------------------------------------------------------------
    def files(self, run: Run, *, include_tombstoned: bool = False) -> list[File]:
        pk = self._run_pk(run)
        sql = _FILE_SQL + " WHERE f.run_pk = ?" + ("" if include_tombstoned else " AND f.tombstoned_at IS NULL")
        return [file_from_row(r) for r in self._q(sql + " ORDER BY f.name", [pk])]

    def file(self, run: Run, name: str) -> File | None:
        rows = self._q(_FILE_SQL + " WHERE f.run_pk = ? AND f.name = ?", [self._run_pk(run), name])
        return file_from_row(rows[0]) if rows else None

    # -- objects ---------------------------------------------------------------------------
    def object_path(self, md5: str) -> Path | None:
        """Where the bytes with this hex md5 live (read-only file; hard-link or copy it, never edit).

        None when the objects are not in a local directory (e.g. on S3): use `open_object`.
        """
        local = getattr(self._store.objects, "path", None)
        return local(md5) if local is not None else None

    def has_object(self, md5: str) -> bool:
        return self._store.objects.has(md5)

    def open_object(self, md5: str) -> BinaryIO:
        return self._store.objects.open(md5)

    def verify_object(self, md5: str, size: int | None = None) -> bool:
        """Re-hash the stored bytes: True only if they exist and match `md5` (and `size` if given)."""
        try:
            info = self._store.objects.hash_object(md5)
        except (OSError, ValueError):
            return False
        return info.md5 == md5 and (size is None or info.size == size)

    # -- artifacts -------------------------------------------------------------------------
    def artifacts(
        self,
        entity: str | None = None,
        project: str | None = None,
        *,
        run: Run | None = None,
        collection: str | None = None,
        include_tombstoned: bool = False,
    ) -> list[Artifact]:
        """Artifact versions; with `run`, those it logged (its output artifacts)."""
        where, params = _where(("a.producer_run_pk = ?", None if run is None else self._run_pk(run)),
                               ("p.entity = ?", entity), ("p.name = ?", project), ("c.name = ?", collection),
                               ("a.tombstoned_at IS NULL", None if include_tombstoned else ()))
        sql = _ARTIFACT_SQL + where + " ORDER BY c.name, a.version_index"
        return [artifact_from_row(r) for r in self._q(sql, params)]

    def artifact(self, artifact_id: str) -> Artifact | None:
        rows = self._q(_ARTIFACT_SQL + " WHERE a.id = ?", [artifact_id])
        return artifact_from_row(rows[0]) if rows else None

    def artifact_files(self, artifact: Artifact) -> list[ArtifactEntry]:
        """The manifest entries; `entry.md5` is the object key (None for reference entries)."""
        pk = artifact.pk
        if pk is None:
            pk = self._store.catalog.scalar("SELECT pk FROM artifacts WHERE id = ?", [artifact.id])
        rows = self._q("SELECT * FROM artifact_files WHERE artifact_pk = ? ORDER BY path", [pk])
        return [ArtifactEntry.from_row(r) for r in rows]

    # -- sweeps ----------------------------------------------------------------------------
    def sweep(self, entity: str, project: str, name: str) -> Sweep | None:
        rows = self._q(_SWEEP_SQL + " WHERE p.entity = ? AND p.name = ? AND s.name = ?", [entity, project, name])
        return sweep_from_row(rows[0]) if rows else None

    def sweeps(self, entity: str | None = None, project: str | None = None) -> list[Sweep]:
        where, params = _where(("s.tombstoned_at IS NULL", ()), ("p.entity = ?", entity), ("p.name = ?", project))
        return [sweep_from_row(r) for r in self._q(_SWEEP_SQL + where + " ORDER BY s.name", params)]

    # -- journal ---------------------------------------------------------------------------
    def journal(self, plugin: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest upstream writes (all plugins unless `plugin` is given), newest first."""
        if plugin is None:
            return self._q("SELECT * FROM journal ORDER BY pk DESC LIMIT ?", [limit])
        return self._q("SELECT * FROM journal WHERE plugin = ? ORDER BY pk DESC LIMIT ?", [plugin, limit])


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """(" WHERE a AND b ...", params) from (clause, value) pairs, skipping those whose value is None.

    A tuple or list value supplies several parameters (an empty one: a clause without parameters).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in conditions:
        if value is None:
            continue
        clauses.append(clause)
        params.extend(value if isinstance(value, (list, tuple)) else [value])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
