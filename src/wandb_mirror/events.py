"""The change kinds: one typed event class per kind, the one declaration of each.

A sync unit builds an event in the transaction that records its data (`changes` row: `kind`, the
`run` and `subject` columns, and the JSON `payload`); delivery reads the row back with
`event_from_row` and calls the plugin hook named like the kind with `event.hook_args(view)`.

    run_created                run=ID     {"state", "display_name", "created_at"}
    run_state_changed          run=ID     {"old", "new"}
    run_updated                run=ID     {"changes": {"summary"|"config"|"tags"|"notes"|...: {"before", "after"}}}
                               (summary/config: only the keys that differ, absent keys left out;
                                config values in W&B's wrapped form {"value": v, "desc": null})
    history_appended           run=ID     {"first_step", "last_step", "rows"}
    file_mirrored              run=ID subject=FILE  {"name", "md5", "size", "changed"}
    artifact_version_mirrored  run=PRODUCER|None subject=ARTIFACT_ID
                               {"id", "collection", "type", "version_index", "digest", "aliases", "size", "file_count"}
    artifact_aliases_changed   subject=ARTIFACT_ID {"id", "collection", "version_index", "added", "removed", "aliases"}
    sweep_updated              subject=SWEEP {"name", "state", "changes"}   (changes: {"field": {"before", "after"}})
    sweep_finished             subject=SWEEP {"name", "state", "best_loss"}
    tombstoned                 run=ID if a run or its file, subject=KEY {"kind", "key"}
    artifact_linked            subject=ARTIFACT_ID {"id", "registry", "collection", "version_index", "aliases"}
    artifact_unlinked          subject=ARTIFACT_ID {"id", "registry", "collection", "version_index", "aliases"}
    registry_aliases_changed   subject=ARTIFACT_ID {"id", "registry", "collection", "version_index", "added", "removed"}
                               (events of a registry carry the organization's entity and the registry project)
    console_appended           run=ID     {"first_line", "last_line"}
    automation_changed         subject=AUTOMATION_ID {"id", "name", "changes", "automation"}

Rows written by older versions may lack payload keys: a missing key reads as its default, and a
missing subject field as the row's `subject` column.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .hooks.types import Artifact, FieldChange, File, Run, Sweep
from .models import loads_lenient

# run_updated fields whose before/after values are JSON text in the catalog
JSON_FIELDS = frozenset({"config", "summary", "system_metrics", "tags", "history_keys"})


class Subjects(Protocol):
    """Where an event finds the catalog objects its hook receives (a `hooks.StoreView`)."""

    def run(self, entity: str, project: str, run_id: str) -> Run | None: ...
    def file(self, run: Run, name: str) -> File | None: ...
    def artifact(self, artifact_id: str) -> Artifact | None: ...
    def artifacts(self, entity: str | None = None, project: str | None = None, *, run: Run | None = None,
                  collection: str | None = None, include_tombstoned: bool = False) -> list[Artifact]: ...
    def sweep(self, entity: str, project: str, name: str) -> Sweep | None: ...


@dataclass(frozen=True, kw_only=True)
class Event:
    """One change of one project. `kind` is also the name of the hook it is delivered to."""

    kind: ClassVar[str]
    subject_field: ClassVar[str | None] = None  # the payload field that is also the `subject` column

    # where it happened: filled in from the scope that emits it (sync) or the row it is read from
    entity: str = ""
    project: str = ""
    run: str | None = None  # the `run` column (the run id), None for events about no run

    @property
    def hook(self) -> str:
        return self.kind

    @property
    def subject(self) -> str | None:
        return None if self.subject_field is None else getattr(self, self.subject_field)

    def payload(self) -> dict[str, Any]:
        """The JSON payload stored in `changes.payload`."""
        return {_key(f): getattr(self, f.name) for f in _payload_fields(type(self))}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        """The event of a `changes` row (`payload` as JSON text or an already decoded dict)."""
        payload = row.get("payload")
        if not isinstance(payload, dict):
            payload = loads_lenient(payload, {}) or {}
        values: dict[str, Any] = {}
        for f in _payload_fields(cls):
            value = payload.get(_key(f))
            if value is None and f.metadata.get("alias"):
                value = payload.get(f.metadata["alias"])
            if value is None and f.name == cls.subject_field:
                value = row.get("subject")
            if value is not None:
                values[f.name] = value
        return cls(entity=row.get("entity") or "", project=row.get("project") or "", run=row.get("run"), **values)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        """The hook's own arguments; LookupError when the subject is not in the catalog."""
        raise NotImplementedError

    def describe(self) -> str:
        where = "/".join(x for x in (self.entity, self.project, self.run) if x)
        return f"{self.kind} {where}" + (f" {self.subject}" if self.subject else "")

    # -- lookups shared by the kinds ------------------------------------------------------------
    def _run(self, view: Subjects) -> Run:
        run = view.run(self.entity, self.project, self.run or "")
        if run is None:
            raise LookupError(f"run {self.entity}/{self.project}/{self.run} is not in the catalog")
        return run

    def _artifact(self, view: Subjects, artifact_id: str | None) -> Artifact:
        art = view.artifact(artifact_id) if artifact_id else None
        if art is None and artifact_id and ":" in artifact_id:
            # a "collection:vN" subject
            coll, _, ver = artifact_id.rpartition(":")
            wanted = int(ver.lstrip("v")) if ver.lstrip("v").isdigit() else -1
            art = next((a for a in view.artifacts(self.entity, self.project, collection=coll, include_tombstoned=True)
                        if a.version_index == wanted), None)
        if art is None:
            raise LookupError(f"artifact {artifact_id} is not in the catalog")
        return art

    def _sweep(self, view: Subjects, name: str | None) -> Sweep:
        sweep = view.sweep(self.entity, self.project, name or "")
        if sweep is None:
            raise LookupError(f"sweep {self.entity}/{self.project}/{name} is not in the catalog")
        return sweep


def _payload_fields(cls: type[Event]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name not in ("entity", "project", "run")]


def _key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key", f.name)


def _stored_as(key: str, *, alias: str | None = None) -> dict[str, str]:
    return {"key": key, **({"alias": alias} if alias else {})}


# -------------------------------------------------------------------------------------------------
# runs
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RunCreated(Event):
    kind: ClassVar[str] = "run_created"
    state: str | None = None
    display_name: str | None = None
    created_at: str | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"run": self._run(view)}


@dataclass(frozen=True, kw_only=True)
class RunStateChanged(Event):
    kind: ClassVar[str] = "run_state_changed"
    old: str | None = None
    new: str | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"run": self._run(view), "old": self.old, "new": self.new}


@dataclass(frozen=True, kw_only=True)
class RunUpdated(Event):
    kind: ClassVar[str] = "run_updated"
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        changes = {}
        for name, change in (self.changes or {}).items():
            change = change if isinstance(change, dict) else {}
            changes[name] = FieldChange(_decode(name, change.get("before")), _decode(name, change.get("after")))
        return {"run": self._run(view), "changes": changes}


@dataclass(frozen=True, kw_only=True)
class HistoryAppended(Event):
    kind: ClassVar[str] = "history_appended"
    first_step: int | None = None
    last_step: int | None = None
    rows: int | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"run": self._run(view), "first_step": self.first_step, "last_step": self.last_step}


@dataclass(frozen=True, kw_only=True)
class FileMirrored(Event):
    kind: ClassVar[str] = "file_mirrored"
    subject_field: ClassVar[str | None] = "name"
    name: str | None = None
    md5: str | None = None
    size: int | None = None
    changed: bool = True

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        run = self._run(view)
        file = view.file(run, self.name or "")
        if file is None:
            raise LookupError(f"file {run.path}/{self.name} is not in the catalog")
        file.changed = bool(self.changed)
        return {"run": run, "file": file}


# -------------------------------------------------------------------------------------------------
# artifacts, sweeps, tombstones
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ArtifactVersionMirrored(Event):
    kind: ClassVar[str] = "artifact_version_mirrored"
    subject_field: ClassVar[str | None] = "artifact_id"
    artifact_id: str | None = field(default=None, metadata=_stored_as("id", alias="artifact_id"))
    collection: str | None = None
    type_name: str | None = field(default=None, metadata=_stored_as("type"))
    version_index: int | None = None
    digest: str | None = None
    aliases: list[str] = field(default_factory=list)
    size: int | None = None
    file_count: int | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"artifact": self._artifact(view, self.artifact_id)}


@dataclass(frozen=True, kw_only=True)
class ArtifactAliasesChanged(Event):
    kind: ClassVar[str] = "artifact_aliases_changed"
    subject_field: ClassVar[str | None] = "artifact_id"
    artifact_id: str | None = field(default=None, metadata=_stored_as("id", alias="artifact_id"))
    collection: str | None = None
    version_index: int | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"artifact": self._artifact(view, self.artifact_id), "added": list(self.added or []),
                "removed": list(self.removed or [])}


@dataclass(frozen=True, kw_only=True)
class SweepUpdated(Event):
    kind: ClassVar[str] = "sweep_updated"
    subject_field: ClassVar[str | None] = "name"
    name: str | None = None
    state: str | None = None
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"sweep": self._sweep(view, self.name)}


@dataclass(frozen=True, kw_only=True)
class SweepFinished(Event):
    kind: ClassVar[str] = "sweep_finished"
    subject_field: ClassVar[str | None] = "name"
    name: str | None = None
    state: str | None = None
    best_loss: float | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"sweep": self._sweep(view, self.name)}


@dataclass(frozen=True, kw_only=True)
class Tombstoned(Event):
    kind: ClassVar[str] = "tombstoned"
    subject_field: ClassVar[str | None] = "key"
    what: str | None = field(default=None, metadata=_stored_as("kind"))  # "run", "file", "artifact", ...
    key: str | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        key = self.key or "/".join(x for x in (self.entity, self.project, self.run) if x)
        return {"kind": self.what or "unknown", "key": key}


# -------------------------------------------------------------------------------------------------
# registries, console output, automations
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ArtifactLinked(Event):
    """A version was linked into a registry collection (entity/project: the registry's)."""

    kind: ClassVar[str] = "artifact_linked"
    subject_field: ClassVar[str | None] = "artifact_id"
    artifact_id: str | None = field(default=None, metadata=_stored_as("id", alias="artifact_id"))
    registry: str | None = None
    collection: str | None = None
    version_index: int | None = None
    aliases: list[str] = field(default_factory=list)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"artifact": self._artifact(view, self.artifact_id), "registry": self.registry,
                "collection": self.collection}


@dataclass(frozen=True, kw_only=True)
class ArtifactUnlinked(ArtifactLinked):
    kind: ClassVar[str] = "artifact_unlinked"


@dataclass(frozen=True, kw_only=True)
class RegistryAliasesChanged(Event):
    kind: ClassVar[str] = "registry_aliases_changed"
    subject_field: ClassVar[str | None] = "artifact_id"
    artifact_id: str | None = field(default=None, metadata=_stored_as("id", alias="artifact_id"))
    registry: str | None = None
    collection: str | None = None
    version_index: int | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"artifact": self._artifact(view, self.artifact_id), "registry": self.registry,
                "collection": self.collection, "added": list(self.added or []), "removed": list(self.removed or [])}


@dataclass(frozen=True, kw_only=True)
class ConsoleAppended(Event):
    kind: ClassVar[str] = "console_appended"
    first_line: int | None = None
    last_line: int | None = None

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        return {"run": self._run(view), "first_line": self.first_line, "last_line": self.last_line}


@dataclass(frozen=True, kw_only=True)
class AutomationChanged(Event):
    """An automation was mirrored for the first time or changed (entity: the automation's)."""

    kind: ClassVar[str] = "automation_changed"
    subject_field: ClassVar[str | None] = "automation_id"
    automation_id: str | None = field(default=None, metadata=_stored_as("id", alias="automation_id"))
    name: str | None = None
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    automation: dict[str, Any] = field(default_factory=dict)

    def hook_args(self, view: Subjects) -> dict[str, Any]:
        from .hooks.types import Automation

        return {"automation": Automation.from_payload(self.entity, self.automation),
                "changes": {k: FieldChange(v.get("before"), v.get("after")) for k, v in (self.changes or {}).items()}}


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (
    RunCreated, RunStateChanged, RunUpdated, HistoryAppended, FileMirrored,
    ArtifactVersionMirrored, ArtifactAliasesChanged, SweepUpdated, SweepFinished, Tombstoned,
    ArtifactLinked, ArtifactUnlinked, RegistryAliasesChanged, ConsoleAppended, AutomationChanged,
)}
KINDS: tuple[str, ...] = tuple(EVENT_TYPES)


def event_from_row(row: dict[str, Any]) -> Event | None:
    """The typed event of a `changes` row; None for a kind this version does not know."""
    cls = EVENT_TYPES.get(row.get("kind") or "")
    return cls.from_row(row) if cls is not None else None


def _decode(name: str, value: Any) -> Any:
    if name in JSON_FIELDS and isinstance(value, str):
        try:
            return loads_lenient(value)
        except ValueError:
            return value
    return value


__all__ = ["Event", "EVENT_TYPES", "KINDS", "Subjects", "event_from_row", "RunCreated", "RunStateChanged",
           "RunUpdated", "HistoryAppended", "FileMirrored", "ArtifactVersionMirrored", "ArtifactAliasesChanged",
           "SweepUpdated", "SweepFinished", "Tombstoned", "ArtifactLinked", "ArtifactUnlinked",
           "RegistryAliasesChanged", "ConsoleAppended", "AutomationChanged"]
