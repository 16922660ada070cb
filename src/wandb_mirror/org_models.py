"""Plain records for the organization side of W&B: teams' members, registries and their links,
console lines, integrations and automations (what fixtures, sync and the catalog exchange).

Secrets have no field here on purpose: a webhook's secret or a Slack token can never be stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

REGISTRY_PREFIX = "wandb-registry-"


def registry_project(name: str) -> str:
    """`model` -> `wandb-registry-model` (a name already prefixed is kept)."""
    return name if name.startswith(REGISTRY_PREFIX) else REGISTRY_PREFIX + name


@dataclass
class Organization:
    name: str
    id: str
    org_entity: str
    org_entity_id: str

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TeamMember:
    team: str
    username: str
    id: str
    name: str | None = None
    email: str | None = None
    admin: int = 0
    pending: int = 0
    account_type: str = "USER"
    role: str = "member"

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Registry:
    """Settings of a registry project (its description lives on the project row)."""

    access: str = "PRIVATE"          # W&B's project access: PRIVATE (organization) | RESTRICTED
    allow_all_types: int = 0
    artifact_types: str = "[]"        # JSON list of type names

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Link:
    """One artifact version linked into a registry collection, as version `version_index` there."""

    membership_id: str
    version_index: int
    aliases: str = "[]"              # JSON list
    created_at: str | None = None


@dataclass
class ConsoleLine:
    number: int
    line: str
    timestamp: str | None = None
    level: str = ""
    label: str = ""


@dataclass
class Integration:
    id: str
    entity: str
    kind: str                        # GenericWebhookIntegration | SlackIntegration
    name: str | None = None
    url_endpoint: str | None = None
    team_name: str | None = None
    channel_name: str | None = None
    created_at: str | None = None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Automation:
    id: str
    entity: str
    name: str
    scope: str                       # JSON {"typename", "id", "name"}
    event: str                       # JSON {"eventType", "filter"}
    action: str                      # JSON {"typename", ...}
    description: str | None = None
    enabled: int = 1
    created_at: str | None = None
    updated_at: str | None = None

    def to_row(self) -> dict[str, Any]:
        return asdict(self)
