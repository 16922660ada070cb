"""Reading the organization side of a store back out, for `restore`: organizations, registries with
their collections and links, integrations, automations, team members. Plain records; what upstream
deleted (tombstoned rows) only on request, as in store/reader.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..org_models import REGISTRY_PREFIX
from . import Store


def _list(text: Any) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [v if isinstance(v, str) else str(v.get("alias", "")) for v in value if v] if isinstance(value, list) else []


def _obj(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class StoredOrganization:
    name: str
    org_entity: str
    entities: list[str]  # the team entities the mirror saw in it


@dataclass
class StoredLink:
    version_index: int
    aliases: list[str]
    artifact_pk: int
    source: str  # ENTITY/PROJECT/COLLECTION:vN of the linked version


@dataclass
class StoredRegistryCollection:
    pk: int
    id: str | None
    name: str
    type_name: str
    description: str | None
    tags: list[str]
    links: list[StoredLink] = field(default_factory=list)


@dataclass
class StoredRegistry:
    entity: str
    project: str  # wandb-registry-NAME
    description: str | None
    access: str
    allow_all_types: bool
    artifact_types: list[str]
    collections: list[StoredRegistryCollection] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.project[len(REGISTRY_PREFIX):]


@dataclass
class StoredIntegration:
    id: str
    entity: str
    kind: str
    name: str | None
    url_endpoint: str | None
    team_name: str | None
    channel_name: str | None


@dataclass
class StoredAutomation:
    id: str
    entity: str
    name: str
    description: str | None
    enabled: bool
    scope: dict[str, Any]
    event: dict[str, Any]
    action: dict[str, Any]


class OrgStoreReader:
    def __init__(self, store: Store, *, include_deleted: bool = False):
        self.include_deleted = include_deleted
        self._q = store.catalog.query

    def _live(self, alias: str) -> str:
        return "" if self.include_deleted else f" AND {alias}.tombstoned_at IS NULL"

    def organizations(self) -> list[StoredOrganization]:
        return [StoredOrganization(r["name"], r["org_entity"], [e["name"] for e in self._q(
            "SELECT name FROM entities WHERE organization = ? AND name != ? ORDER BY name", [r["name"], r["org_entity"]])])
            for r in self._q("SELECT * FROM organizations ORDER BY name")]

    def registries(self) -> list[StoredRegistry]:
        """Registries with their collections (oldest first) and each collection's links by version."""
        out = []
        for p in self._q("SELECT p.*, g.access, g.allow_all_types, g.artifact_types FROM projects p "
                         "LEFT JOIN registries g ON g.project_pk = p.pk WHERE p.name LIKE ? ESCAPE '\\' "
                         f"AND p.entity IN (SELECT org_entity FROM organizations){self._live('p')} "
                         "ORDER BY p.entity, p.name", [REGISTRY_PREFIX.replace("_", "\\_") + "%"]):
            reg = StoredRegistry(p["entity"], p["name"], p["description"], p["access"] or "PRIVATE",
                                 bool(p["allow_all_types"]) if p["allow_all_types"] is not None else True,
                                 _list(p["artifact_types"]))
            for c in self._q("SELECT * FROM artifact_collections c WHERE project_pk = ? AND "
                             f"UPPER(COALESCE(kind, '')) = 'PORTFOLIO'{self._live('c')} ORDER BY created_at, name",
                             [p["pk"]]):
                coll = StoredRegistryCollection(c["pk"], c["id"], c["name"], c["type_name"], c["description"],
                                                _list(c["tags"]))
                coll.links = [StoredLink(r["version_index"], [a for a in _list(r["aliases"]) if a != "latest"],
                                         r["artifact_pk"], f"{r['entity']}/{r['project']}/{r['coll']}:v{r['vi']}")
                              for r in self._q(
                    "SELECT l.*, a.version_index AS vi, sc.name AS coll, sp.entity, sp.name AS project "
                    "FROM artifact_links l JOIN artifacts a ON a.pk = l.artifact_pk "
                    "JOIN artifact_collections sc ON sc.pk = a.collection_pk JOIN projects sp ON sp.pk = sc.project_pk "
                    f"WHERE l.collection_pk = ?{self._live('l')} ORDER BY l.version_index", [c["pk"]])]
                reg.collections.append(coll)
            out.append(reg)
        return out

    def collection_home(self, collection_id: str) -> tuple[str, str, str] | None:
        """(entity, project, collection name) of a collection by its id (an automation's scope)."""
        rows = self._q("SELECT p.entity, p.name AS project, c.name FROM artifact_collections c JOIN projects p "
                       "ON p.pk = c.project_pk WHERE c.id = ?", [collection_id])
        return (rows[0]["entity"], rows[0]["project"], rows[0]["name"]) if rows else None

    def project_home(self, project_id: str) -> tuple[str, str] | None:
        rows = self._q("SELECT entity, name FROM projects WHERE id = ?", [project_id])
        return (rows[0]["entity"], rows[0]["name"]) if rows else None

    def integrations(self) -> dict[str, StoredIntegration]:
        return {r["id"]: StoredIntegration(r["id"], r["entity"], r["kind"], r["name"], r["url_endpoint"],
                                           r["team_name"], r["channel_name"])
                for r in self._q(f"SELECT * FROM integrations i WHERE 1=1{self._live('i')} ORDER BY entity, id")}

    def automations(self) -> list[StoredAutomation]:
        return [StoredAutomation(r["id"], r["entity"], r["name"], r["description"], bool(r["enabled"]),
                                 _obj(r["scope"]), _obj(r["event"]), _obj(r["action"]))
                for r in self._q(f"SELECT * FROM automations a WHERE 1=1{self._live('a')} ORDER BY entity, name")]

    def member_counts(self) -> dict[str, int]:
        """Live members per team."""
        return {r["team"]: r["n"] for r in self._q(
            "SELECT team, COUNT(*) AS n FROM team_members WHERE tombstoned_at IS NULL GROUP BY team ORDER BY team")}
