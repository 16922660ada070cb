"""The organization side of the W&B API as dataclasses: the organization of an entity, registries and
the links in their collections, runs' console lines, team members, integrations and automations.

Integrations and automations pass through `redact` before conversion: no secret a server might
return is kept. (Console lines and registry metadata are the user's data and are kept verbatim.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..models import ArtifactCollection, Project
from ..org_models import Automation, ConsoleLine, Integration, Link, Organization, Registry, TeamMember
from . import org_documents as D
from .api import WandbClient, _dig
from .redact import redact


@dataclass
class RemoteRegistry:
    project: Project
    registry: Registry


@dataclass
class RemoteLink:
    registry: str            # the registry project, wandb-registry-NAME
    collection: str
    artifact_id: str         # the linked (source) version
    link: Link


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class OrgReader:
    def __init__(self, client: WandbClient):
        self.c = client

    def _q(self, doc: D.Document, variables: dict[str, Any]) -> dict[str, Any]:
        return self.c.t.graphql(doc.name, doc.text, variables)

    def _edges(self, doc: D.Document, variables: dict[str, Any], path: tuple[str, ...],
               secrets: bool = False) -> list[dict[str, Any]]:
        nodes = [e.get("node") or {} for e in self.c.paginate(doc, variables, path, missing_ok=True)]
        return [redact(n) for n in nodes] if secrets else nodes

    # -- organization ---------------------------------------------------------------------------
    def organization_for(self, entity: str) -> Organization | None:
        data = self._q(D.ORG_INFO, {"entity": entity})
        org = _dig(data, "entity", "organization")
        if not isinstance(org, dict):
            orgs = _dig(data, "entity", "user", "organizations") or []
            org = orgs[0] if len(orgs) == 1 and isinstance(orgs[0], dict) else None
        if not org or not _s(org.get("name")):
            return None
        full = _dig(self._q(D.ORGANIZATION, {"org": org["name"]}), "organization") or {}
        ent = full.get("orgEntity") or org.get("orgEntity") or {}
        return Organization(name=org["name"], id=_s(full.get("id")) or "", org_entity=_s(ent.get("name")) or org["name"],
                            org_entity_id=_s(ent.get("id")) or "")

    def team_members(self, team: str) -> list[TeamMember]:
        members = _dig(self._q(D.TEAM_MEMBERS, {"name": team}), "entity", "members") or []
        return [TeamMember(team=team, username=m["username"], id=_s(m.get("id")) or "", name=_s(m.get("name")),
                           email=_s(m.get("email")), admin=int(bool(m.get("admin"))), pending=int(bool(m.get("pending"))),
                           account_type=_s(m.get("accountType")) or "USER",
                           role="admin" if m.get("admin") else "member")
                for m in members if isinstance(m, dict) and _s(m.get("username"))]

    # -- registries -------------------------------------------------------------------------------
    def registries(self, org: Organization) -> list[RemoteRegistry]:
        out = []
        for n in self._edges(D.REGISTRIES, {"organization": org.name}, ("organization", "orgEntity", "projects")):
            if not _s(n.get("name")):
                continue
            types = [e["node"]["name"] for e in _dig(n, "artifactTypes", "edges") or []
                     if isinstance(_dig(e, "node", "name"), str)]
            project = Project(entity=_dig(n, "entity", "name") or org.org_entity, name=n["name"], id=_s(n.get("id")),
                              internal_id=str(n.get("internalId")) if n.get("internalId") is not None else None,
                              description=_s(n.get("description")), created_at=_s(n.get("createdAt")),
                              updated_at=_s(n.get("updatedAt")))
            out.append(RemoteRegistry(project, Registry(access=_s(n.get("access")) or "PRIVATE",
                                                        allow_all_types=int(bool(n.get("allowAllArtifactTypes"))),
                                                        artifact_types=json.dumps(types))))
        return out

    def registry_collections(self, org: Organization) -> list[tuple[str, ArtifactCollection]]:
        out = []
        path = ("organization", "orgEntity", "artifactCollections")
        for n in self._edges(D.REGISTRY_COLLECTIONS, {"organization": org.name}, path):
            registry, name = _dig(n, "project", "name"), _s(n.get("name"))
            if not (isinstance(registry, str) and name):
                continue
            tags = [e["node"]["name"] for e in _dig(n, "tags", "edges") or [] if isinstance(_dig(e, "node", "name"), str)]
            out.append((registry, ArtifactCollection(
                name=name, type_name=_dig(n, "type", "name") or "", id=_s(n.get("id")), kind="PORTFOLIO",
                description=_s(n.get("description")), tags=json.dumps(tags), created_at=_s(n.get("createdAt")),
                updated_at=_s(n.get("updatedAt")))))
        return out

    def registry_links(self, org: Organization) -> list[RemoteLink]:
        out = []
        path = ("organization", "orgEntity", "artifactMemberships")
        for n in self._edges(D.REGISTRY_LINKS, {"organization": org.name}, path):
            registry, coll = _dig(n, "artifactCollection", "project", "name"), _dig(n, "artifactCollection", "name")
            art_id, index = _dig(n, "artifact", "id"), n.get("versionIndex")
            if not (isinstance(registry, str) and isinstance(coll, str) and isinstance(art_id, str)
                    and isinstance(index, int)):
                continue
            aliases = [a["alias"] for a in n.get("aliases") or [] if isinstance(a, dict) and _s(a.get("alias"))]
            out.append(RemoteLink(registry, coll, art_id, Link(membership_id=_s(n.get("id")) or "", version_index=index,
                                                                aliases=json.dumps(aliases),
                                                                created_at=_s(n.get("createdAt")))))
        return out

    # -- console output ---------------------------------------------------------------------------
    def console_count(self, entity: str, project: str, run: str) -> int:
        data = self._q(D.CONSOLE_COUNT, {"entity": entity, "project": project, "runName": run})
        n = _dig(data, "project", "run", "logLineCount")
        return n if isinstance(n, int) else 0

    def console_tail(self, entity: str, project: str, run: str, last: int) -> list[ConsoleLine]:
        data = self._q(D.CONSOLE_TAIL, {"entity": entity, "project": project, "runName": run, "last": last})
        return _lines(e.get("node") for e in _dig(data, "project", "run", "logLines", "edges") or [])

    def console_all(self, entity: str, project: str, run: str, per_page: int = 1000) -> list[ConsoleLine]:
        variables = {"entity": entity, "project": project, "runName": run}
        edges = self.c.paginate(D.CONSOLE_PAGE, variables, ("project", "run", "logLines"), cursor_var="after",
                                per_page_var="first", per_page=per_page, missing_ok=True)
        return _lines(e.get("node") for e in edges)

    # -- integrations, automations ----------------------------------------------------------------
    def integrations(self, entity: str) -> list[Integration]:
        out = []
        for n in self._edges(D.INTEGRATIONS, {"entity": entity}, ("entity", "integrations"), secrets=True):
            kind, iid = _s(n.get("__typename")), _s(n.get("id"))
            if kind in ("SlackIntegration", "GenericWebhookIntegration") and iid:
                out.append(Integration(id=iid, entity=entity, kind=kind, name=_s(n.get("name")),
                                       url_endpoint=_s(n.get("urlEndpoint")), team_name=_s(n.get("teamName")),
                                       channel_name=_s(n.get("channelName"))))
        return out

    def automations(self, entity: str) -> list[Automation]:
        out = []
        for n in self._edges(D.AUTOMATIONS, {"entity": entity}, ("scope", "triggers"), secrets=True):
            if not (_s(n.get("id")) and _s(n.get("name"))):
                continue
            scope = {"typename": _dig(n, "scope", "__typename"), "id": _dig(n, "scope", "id"),
                     "name": _dig(n, "scope", "name")}
            event = {"eventType": _dig(n, "event", "eventType"), "filter": _dig(n, "event", "filter")}
            action = {k: v for k, v in (n.get("action") or {}).items() if k != "__typename"}
            action = {"typename": _dig(n, "action", "__typename"), **action}
            if isinstance(action.get("integration"), dict):
                action["integration"] = action["integration"].get("id")
            if isinstance(action.get("requestPayload"), str):  # JSON text: redact inside it too
                try:
                    action["requestPayload"] = json.dumps(redact(json.loads(action["requestPayload"])))
                except ValueError:
                    pass
            out.append(Automation(id=n["id"], entity=entity, name=n["name"], scope=json.dumps(scope),
                                  event=json.dumps(event), action=json.dumps(action),
                                  description=_s(n.get("description")), enabled=int(bool(n.get("enabled"))),
                                  created_at=_s(n.get("createdAt")), updated_at=_s(n.get("updatedAt"))))
        return out


def _lines(nodes: Any) -> list[ConsoleLine]:
    return [ConsoleLine(number=n["number"], line=n.get("line") or "", timestamp=_s(n.get("timestamp")),
                        level=_s(n.get("level")) or "", label=_s(n.get("label")) or "")
            for n in nodes if isinstance(n, dict) and isinstance(n.get("number"), int)]
