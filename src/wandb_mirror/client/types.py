"""What the client returns: the catalog dataclasses (models.py) plus what only the wire has
(download URLs, change markers, where an artifact lives). No raw GraphQL dicts cross this line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import Artifact, ArtifactCollection, Project, Report, Run, RunFile, Sweep, User


@dataclass
class Problem:
    """Something unsafe or malformed in an upstream answer. The sync engine quarantines it."""

    kind: str           # run | file | history_row | event_row | artifact | artifact_file | sweep | report | ...
    upstream_path: str  # entity/project/run[/name] or similar
    reason: str
    detail: str | None = None


@dataclass
class Viewer:
    user: User
    entity: str | None
    teams: list[str] = field(default_factory=list)


@dataclass
class RunListing:
    """A run as a Runs/Run query returned it.

    `run` always carries the metadata; when the query used the full fragment, `full` is True and
    config, summary, system metrics and history keys are filled in too (otherwise they are the
    dataclass defaults and must not be compared). `file_count` and `updated_at` are change markers.
    """

    run: Run
    full: bool
    file_count: int | None = None
    last_step: int = -1          # historyKeys.lastStep (full only); -1 when there is no history
    problems: list[Problem] = field(default_factory=list)


@dataclass
class RemoteFile:
    file: RunFile            # md5 is hex (converted from W&B's base64); "" when upstream gave none
    url: str | None          # under the API host: needs auth
    direct_url: str | None   # presigned: no auth


@dataclass
class RemoteArtifact:
    artifact: Artifact
    entity: str              # where the artifact's collection lives (may differ from the run's project)
    project: str
    project_id: str | None = None
    project_internal_id: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class RemoteCollection:
    collection: ArtifactCollection
    entity: str
    project: str


@dataclass
class ArtifactTypeInfo:
    name: str
    id: str | None = None
    description: str | None = None
    created_at: str | None = None


@dataclass
class RunsInfo:
    """Project-level facts a Runs query returns beside its runs."""

    internal_id: str | None = None
    run_count: int | None = None   # runCount(filters) as the server reports it
    found: bool = True
    listed: int = 0                # distinct runs the pages held
    duplicates: int = 0            # runs a page repeated (W&B pagination bug): the listing may also miss some

    def complete(self) -> bool:
        """Whether the listing can be trusted to hold every run (so absent runs were deleted)."""
        if not self.found or self.duplicates:
            return False
        return self.run_count is None or self.listed >= self.run_count


__all__ = [
    "Problem", "Viewer", "RunListing", "RemoteFile", "RemoteArtifact", "RemoteCollection", "ArtifactTypeInfo",
    "RunsInfo", "Project", "Report", "Sweep",
]
