"""Plain dataclasses that cross module boundaries (client -> sync -> store -> events -> plugins).

Field names equal the catalog's column names, so a record maps to a row without glue. JSON-typed
fields hold JSON *text* exactly as W&B sent it; `Run.config_values()` and friends decode it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import jsontext


def loads_lenient(text: str | None, default: Any = None) -> Any:
    """Decode W&B JSON text, which may hold NaN/Infinity tokens, or the catalog's form of it."""
    return jsontext.loads(text, default)


def dumps_compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


class Record:
    """Mixin: row conversion for dataclasses whose fields are catalog columns."""

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_row(cls, row: dict[str, Any]):
        """A record from a catalog row; JSON fields get back the text W&B sent (jsontext)."""
        names = set(cls.columns())
        return cls(**{k: jsontext.from_catalog(v) if k in jsontext.JSON_FIELDS and isinstance(v, str) else v
                      for k, v in row.items() if k in names})

    def to_row(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class Entity(Record):
    name: str
    id: str | None = None
    is_team: int = 0
    created_at: str | None = None


@dataclass
class User(Record):
    username: str
    id: str | None = None
    name: str | None = None
    email: str | None = None
    entity: str | None = None
    admin: int = 0
    teams: str = "[]"


@dataclass
class Project(Record):
    entity: str
    name: str
    id: str | None = None
    internal_id: str | None = None
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    username: str | None = None


@dataclass
class Run(Record):
    run_id: str  # the SDK's run.id, the id in URLs (GraphQL's Run.name)
    storage_id: str | None = None  # GraphQL Run.id
    display_name: str | None = None  # the SDK's run.name
    state: str | None = None
    config: str = "{}"  # wrapped: {"k": {"value": v, "desc": null}}
    summary: str = "{}"
    system_metrics: str = "{}"
    tags: str = "[]"
    notes: str | None = None
    description: str | None = None
    group_name: str | None = None
    job_type: str | None = None
    host: str | None = None
    commit_hash: str | None = None
    username: str | None = None  # the user's login
    user_display_name: str | None = None  # the user's display name (GraphQL's User.name)
    sweep_name: str | None = None
    read_only: int = 0
    created_at: str | None = None
    heartbeat_at: str | None = None
    updated_at: str | None = None
    history_keys: str = "{}"
    last_step: int = -1
    history_line_count: int = 0
    events_line_count: int = 0

    def config_values(self) -> dict[str, Any]:
        """Unwrapped config, as `wandb.Api().run().config` shows it (without `_wandb`)."""
        raw = loads_lenient(self.config, {}) or {}
        out = {}
        for k, v in raw.items():
            if k in ("_wandb", "wandb_version"):
                continue
            out[k] = v.get("value") if isinstance(v, dict) and "value" in v else v
        return out

    def summary_values(self) -> dict[str, Any]:
        return loads_lenient(self.summary, {}) or {}

    def tag_list(self) -> list[str]:
        return list(loads_lenient(self.tags, []) or [])

    # The names before the catalog took the SDK's (docs/plugins.md, "Renamed fields"): kept one
    # release for plugins written against them.
    @property
    def name(self) -> str:
        """Deprecated: the run id, now `run_id` (the SDK's `run.name` is `display_name`)."""
        _renamed("Run.name", "Run.run_id (the SDK's run.name is Run.display_name)")
        return self.run_id

    @property
    def user_name(self) -> str | None:
        """Deprecated: now `user_display_name`."""
        _renamed("Run.user_name", "Run.user_display_name")
        return self.user_display_name


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and goes away in the next release: use {new}", DeprecationWarning,
                  stacklevel=3)


@dataclass
class RunFile(Record):
    name: str
    size: int
    md5: str  # hex; W&B sends base64, converted at the client boundary
    id: str | None = None
    mimetype: str | None = None
    updated_at: str | None = None


@dataclass
class ArtifactEntry(Record):
    path: str
    digest: str  # as in the manifest: base64 md5, base64 xxh128, or a reference's etag
    size: int
    md5: str | None = None  # object key (hex); None for references
    ref: str | None = None
    birth_artifact_id: str | None = None
    extra: str = "{}"


@dataclass
class Artifact(Record):
    id: str
    version_index: int
    type_name: str
    collection_name: str = ""  # not a column of `artifacts`; resolved to collection_pk by the catalog
    membership_id: str | None = None
    aliases: str = "[]"
    tags: str = "[]"
    state: str = "COMMITTED"
    digest: str | None = None
    digest_algorithm: str = "MANIFEST_MD5"
    description: str | None = None
    metadata: str = "{}"
    size: int = 0
    file_count: int = 0
    commit_hash: str | None = None
    history_step: int | None = None
    ttl_duration_seconds: int = -1
    created_at: str | None = None
    updated_at: str | None = None
    manifest_md5: str | None = None

    def alias_list(self) -> list[str]:
        return list(loads_lenient(self.aliases, []) or [])


@dataclass
class ArtifactCollection(Record):
    name: str
    type_name: str
    id: str | None = None
    kind: str = "SEQUENCE"
    description: str | None = None
    tags: str = "[]"
    created_at: str | None = None
    updated_at: str | None = None


@dataclass
class Sweep(Record):
    name: str
    id: str | None = None
    display_name: str | None = None
    config: str = ""  # YAML text
    method: str | None = None
    state: str | None = None
    description: str | None = None
    best_loss: float | None = None
    metric_name: str | None = None
    metric_goal: str | None = None
    run_count: int = 0
    run_count_expected: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass
class Report(Record):
    id: str
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    spec: str = "{}"
    username: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass
class HistoryRow:
    step: int
    row: str  # the JSON text of the row


@dataclass
class PassStats:
    runs_seen: int = 0
    runs_changed: int = 0
    history_rows: int = 0
    event_rows: int = 0
    files: int = 0
    file_bytes: int = 0
    artifacts: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
