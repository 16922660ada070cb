"""The objects hooks receive: plain dataclasses built from the catalog, never raw GraphQL.

Every event object reflects the catalog *at delivery time* (delivery is at-least-once and may lag
the change it reports); the change-specific values (old/new state, the field diffs, step range)
come from the change row itself.

JSON-typed fields (`config`, `summary`, `tags`, ...) hold JSON text exactly as W&B sent it, like
the catalog; use the helpers (`run.summary_values()`, `run.config_values()`, `run.tag_list()`)
to get Python values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import models

__all__ = ["Run", "File", "Artifact", "Sweep", "FieldChange", "CycleStats", "FINISHED_STATES"]

#: Run states after which a run no longer changes by itself.
FINISHED_STATES = frozenset({"finished", "crashed", "failed", "killed"})


@dataclass
class Run(models.Run):
    """A run as mirrored (all `models.Run` fields) plus where it lives.

    `run_id` is the run id used in URLs (the SDK's `run.id`); `display_name` is the SDK's `run.name`;
    `storage_id` is the id W&B mutations take.
    """

    entity: str = ""
    project: str = ""
    project_internal_id: str | None = None  # Project.internalId; deleteFiles needs it
    mirrored_at: str | None = None
    tombstoned_at: str | None = None
    pk: int | None = None  # catalog key; for the store handle, not for upstream

    @property
    def path(self) -> str:
        """`entity/project/run_id`, the form W&B's `Api.run()` takes."""
        return f"{self.entity}/{self.project}/{self.run_id}"

    @property
    def is_finished(self) -> bool:
        """True when the run reached a terminal state (finished, crashed, failed, killed)."""
        return (self.state or "") in FINISHED_STATES


@dataclass
class File(models.RunFile):
    """A run file as mirrored. `md5` is hex and is also the key of its bytes in the object store."""

    entity: str = ""
    project: str = ""
    run: str = ""  # the run id
    mirrored_at: str | None = None
    tombstoned_at: str | None = None
    changed: bool = True  # False when a pass re-listed the file with the same content
    run_pk: int | None = None

    @property
    def path(self) -> str:
        """`entity/project/run/name`."""
        return f"{self.entity}/{self.project}/{self.run}/{self.name}"


@dataclass
class Artifact(models.Artifact):
    """An artifact version as mirrored (all `models.Artifact` fields) plus where it lives."""

    entity: str = ""
    project: str = ""
    producer_run: str | None = None  # the id of the run that logged it, when known
    mirrored_at: str | None = None
    tombstoned_at: str | None = None
    pk: int | None = None

    @property
    def qualified_name(self) -> str:
        """`entity/project/collection:vN`, the form `wandb.Api().artifact()` takes."""
        return f"{self.entity}/{self.project}/{self.collection_name}:v{self.version_index}"


@dataclass
class Sweep(models.Sweep):
    """A sweep as mirrored, plus where it lives. `metric_name`/`metric_goal` come from its config."""

    entity: str = ""
    project: str = ""
    tombstoned_at: str | None = None
    pk: int | None = None

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    def config_values(self) -> dict[str, Any]:
        """The sweep configuration (W&B stores YAML); {} when it cannot be parsed."""
        import yaml

        try:
            value = yaml.safe_load(self.config or "") or {}
        except yaml.YAMLError:
            return {}
        return value if isinstance(value, dict) else {}

    def metric(self) -> tuple[str | None, str]:
        """(metric name, goal) with the goal normalised to "minimize" or "maximize".

        Falls back to the sweep config's `metric: {name, goal}` when the catalog columns are empty;
        W&B's default goal is minimize.
        """
        name, goal = self.metric_name, self.metric_goal
        if not name:
            m = self.config_values().get("metric") or {}
            if isinstance(m, dict):
                name = m.get("name")
                goal = goal or m.get("goal")
        goal = (goal or "minimize").lower()
        return name, ("maximize" if goal.startswith("max") else "minimize")


@dataclass
class Automation:
    """An automation (W&B trigger) as mirrored: `scope` {"typename", "id", "name"}, `event`
    {"eventType", "filter"} and `action` {"typename", ...} as W&B returns them (never a secret)."""

    id: str
    entity: str
    name: str
    description: str | None = None
    enabled: bool = True
    scope: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)
    action: dict[str, Any] = field(default_factory=dict)
    updated_at: str | None = None

    @classmethod
    def from_payload(cls, entity: str, d: dict[str, Any]) -> Automation:
        return cls(id=str(d.get("id") or ""), entity=entity, name=str(d.get("name") or ""),
                   description=d.get("description"), enabled=bool(d.get("enabled", True)),
                   scope=dict(d.get("scope") or {}), event=dict(d.get("event") or {}),
                   action=dict(d.get("action") or {}), updated_at=d.get("updated_at"))


@dataclass
class FieldChange:
    """One changed field of `run_updated`: the values before and after (decoded JSON values)."""

    before: Any = None
    after: Any = None


@dataclass
class CycleStats:
    """What one daemon cycle did; passed to `cycle_finished`.

    `pass_status` is the sync pass result ("ok", "errors", "failed", or "skipped" when no sync
    engine ran); `events` counts change rows delivered to plugins in this cycle.
    """

    cycle: int = 0
    started_at: str = ""
    finished_at: str = ""
    pass_id: int | None = None
    pass_status: str = "skipped"
    pass_duration_s: float = 0.0
    changes: int = 0
    events: int = 0
    plugin_failures: int = 0
    sync: dict[str, Any] = field(default_factory=dict)  # the sync engine's own statistics, verbatim
