"""Which stored projects go where, and what restoring them will write (the `--dry-run` plan)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..org_models import REGISTRY_PREFIX
from ..store.reader import StoredProject, StoreReader


@dataclass
class Move:
    source: StoredProject
    entity: str
    project: str

    @property
    def src(self) -> str:
        return f"{self.source.project.entity}/{self.source.project.name}"

    @property
    def dst(self) -> str:
        return f"{self.entity}/{self.project}"


@dataclass
class ProjectPlan:
    move: Move
    runs: int = 0
    history_rows: int = 0
    events: int = 0
    files: int = 0
    file_bytes: int = 0
    artifact_versions: int = 0
    collections: int = 0
    sweeps: int = 0
    deleted: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.move.src} -> {self.move.dst}: {self.runs} runs ({self.history_rows} history rows, "
                f"{self.events} event rows, {self.files} files, {self.file_bytes / 1e6:.1f} MB), "
                f"{self.artifact_versions} artifact versions in {self.collections} collections, {self.sweeps} sweeps"
                + (f"; {len(self.deleted)} items deleted upstream included" if self.deleted else ""))


def _split(text: str, what: str) -> tuple[str | None, str]:
    parts = text.split("/")
    if len(parts) == 1 and parts[0]:
        return None, parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise UsageError(f"--project: {what} {text!r} is not PROJECT or ENTITY/PROJECT")


def resolve_moves(reader: StoreReader, projects: list[str], entity: str | None) -> list[Move]:
    """`--project SRC=DST` (or just SRC) and `--entity E` turned into moves; every project when none is named."""
    # registries are projects too, but restored by restore/org.py: links, not logged versions
    stored = [p for p in reader.projects() if not p.project.name.startswith(REGISTRY_PREFIX)]
    if not stored:
        raise UsageError(f"the store {reader.store.path} holds no projects to restore")
    if not projects:
        return [Move(p, entity or p.project.entity, p.project.name) for p in stored]
    moves = []
    for spec in projects:
        src_text, sep, dst_text = spec.partition("=")
        src_entity, src_name = _split(src_text, "source")
        matches = [p for p in stored if p.project.name == src_name
                   and (src_entity is None or p.project.entity == src_entity)]
        if not matches:
            raise UsageError(f"--project: the store holds no project {src_text!r}")
        if len(matches) > 1:
            raise UsageError(f"--project: {src_text!r} is in several entities ("
                             + ", ".join(m.project.entity for m in matches) + "); write ENTITY/PROJECT")
        src = matches[0]
        dst_entity, dst_name = _split(dst_text, "destination") if sep else (None, src.project.name)
        moves.append(Move(src, dst_entity or entity or src.project.entity, dst_name))
    targets = [m.dst for m in moves]
    dup = next((t for t in targets if targets.count(t) > 1), None)
    if dup:
        raise UsageError(f"--project: two projects would be restored into {dup}")
    return moves


def plan_project(reader: StoreReader, move: Move) -> ProjectPlan:
    pk = move.source.pk
    plan = ProjectPlan(move)
    if move.source.deleted:
        plan.deleted.append(f"project {move.src}")
    for r in reader.runs(pk):
        plan.runs += 1
        plan.history_rows += r.run.history_line_count
        plan.events += r.run.events_line_count
        if r.deleted:
            plan.deleted.append(f"run {r.run.run_id}")
        for f in reader.files(r.pk):
            plan.files += 1
            plan.file_bytes += f.file.size
            if f.deleted:
                plan.deleted.append(f"file {r.run.run_id}/{f.file.name}")
    arts = reader.artifacts(pk)
    plan.artifact_versions = len(arts)
    plan.collections = len({a.collection for a in arts})
    plan.deleted += [f"artifact {a.collection}:v{a.artifact.version_index}" for a in arts if a.deleted]
    plan.sweeps = len(reader.sweeps(pk))
    return plan
