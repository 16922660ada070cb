"""Reading a whole store back out, for `restore` and `checkout`: plain records, deleted items on request.

Everything here is read-only and ordered the way a writer needs it: runs by creation, artifact
versions by collection and version index, history by step, events by line. `include_deleted`
includes what upstream deleted (tombstoned rows); without it a reader sees what upstream shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..models import Artifact, ArtifactEntry, Project, Run, RunFile, Sweep
from ..org_models import ConsoleLine
from . import Store


def _live(alias: str, include_deleted: bool) -> str:
    return "" if include_deleted else f" AND {alias}.tombstoned_at IS NULL"


@dataclass
class StoredProject:
    pk: int
    project: Project
    deleted: bool


@dataclass
class StoredRun:
    pk: int
    run: Run
    deleted: bool


@dataclass
class StoredFile:
    file: RunFile
    deleted: bool


@dataclass
class StoredArtifact:
    pk: int
    collection: str
    artifact: Artifact
    manifest_md5: str | None
    producer: str | None  # run id
    consumers: list[str] = field(default_factory=list)  # run ids
    deleted: bool = False


class StoreReader:
    def __init__(self, store: Store, *, include_deleted: bool = False):
        self.store = store
        self.include_deleted = include_deleted
        self._q = store.catalog.query

    def projects(self) -> list[StoredProject]:
        rows = self._q(f"SELECT * FROM projects p WHERE 1=1{_live('p', self.include_deleted)} ORDER BY entity, name")
        return [StoredProject(r["pk"], Project.from_row(r), bool(r["tombstoned_at"])) for r in rows]

    def project(self, entity: str, name: str) -> StoredProject | None:
        return next((p for p in self.projects() if (p.project.entity, p.project.name) == (entity, name)), None)

    def runs(self, project_pk: int) -> list[StoredRun]:
        rows = self._q(f"SELECT * FROM runs r WHERE project_pk = ?{_live('r', self.include_deleted)} "
                       "ORDER BY created_at, run_id", [project_pk])
        return [StoredRun(r["pk"], Run.from_row(r), bool(r["tombstoned_at"])) for r in rows]

    def run(self, project_pk: int, run_id: str) -> StoredRun | None:
        return next((r for r in self.runs(project_pk) if r.run.run_id == run_id), None)

    def history(self, run_pk: int, *, after_step: int | None = None) -> Iterator[tuple[int, str]]:
        """(step, row JSON) in step order, from the store's one history reader (segments and tail)."""
        return self.store.history.texts(run_pk, min_step=None if after_step is None else after_step + 1)

    def events(self, run_pk: int) -> list[str]:
        return [r["row"] for r in self._q("SELECT row FROM events WHERE run_pk = ? ORDER BY seq", [run_pk])]

    def console(self, run_pk: int) -> list[ConsoleLine]:
        """The run's console lines (`logLines`) by number."""
        return [ConsoleLine(number=r["number"], line=r["line"], timestamp=r["timestamp"], level=r["level"] or "",
                            label=r["label"] or "") for r in
                self._q("SELECT * FROM console_lines WHERE run_pk = ? ORDER BY number", [run_pk])]

    def files(self, run_pk: int) -> list[StoredFile]:
        rows = self._q(f"SELECT * FROM files f WHERE run_pk = ?{_live('f', self.include_deleted)} ORDER BY name",
                       [run_pk])
        return [StoredFile(RunFile.from_row(r), bool(r["tombstoned_at"])) for r in rows]

    def artifacts(self, project_pk: int) -> list[StoredArtifact]:
        """Committed versions of every collection, collection by collection, oldest version first."""
        rows = self._q(
            "SELECT a.*, c.name AS collection, r.run_id AS producer, c.tombstoned_at AS coll_deleted "
            "FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
            "LEFT JOIN runs r ON r.pk = a.producer_run_pk "
            f"WHERE c.project_pk = ? AND a.state = 'COMMITTED'{_live('a', self.include_deleted)}"
            f"{_live('c', self.include_deleted)} ORDER BY c.created_at, c.name, a.version_index", [project_pk])
        out = []
        for r in rows:
            consumers = [u["run_id"] for u in self._q(
                "SELECT r.run_id FROM artifact_usage u JOIN runs r ON r.pk = u.run_pk WHERE u.artifact_pk = ? "
                f"{_live('r', self.include_deleted)} ORDER BY r.run_id", [r["pk"]])]
            art = Artifact.from_row({k: v for k, v in r.items() if k not in ("collection", "producer", "coll_deleted")})
            out.append(StoredArtifact(r["pk"], r["collection"], art, r["manifest_md5"], r["producer"], consumers,
                                      bool(r["tombstoned_at"] or r["coll_deleted"])))
        return out

    def artifact_version(self, project_pk: int, collection: str, version: str) -> StoredArtifact | None:
        """`version` is vN or an alias (`latest` included)."""
        for a in reversed(self.artifacts(project_pk)):
            if a.collection != collection:
                continue
            if version == f"v{a.artifact.version_index}" or version in alias_names(a.artifact.aliases):
                return a
        return None

    def entries(self, artifact_pk: int) -> list[ArtifactEntry]:
        return [ArtifactEntry.from_row(r) for r in
                self._q("SELECT * FROM artifact_files WHERE artifact_pk = ? ORDER BY path", [artifact_pk])]

    def sweeps(self, project_pk: int) -> list[Sweep]:
        rows = self._q(f"SELECT * FROM sweeps s WHERE project_pk = ?{_live('s', self.include_deleted)} "
                       "ORDER BY created_at, name", [project_pk])
        return [Sweep.from_row(r) for r in rows]


def alias_names(text: Any) -> list[str]:
    """The alias names of an artifact's `aliases` JSON (plain names or {"alias": name} objects)."""
    try:
        raw = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(a.get("alias")) if isinstance(a, dict) else str(a) for a in raw if a]
