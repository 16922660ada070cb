"""The organization side served read-only: organizations, the fields `Entity` carries for teams and
organizations (members, registries search, integrations, automations), users search.

Secrets never leave: a member's `apiKey` and a user's `apiKeys` are always empty, and integrations
hold no secret to serve.
"""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLResolveInfo

from .. import ids
from ..models import loads_lenient
from . import filters as F
from . import nodes as N
from . import registries as R


class OrganizationNode:
    typename = "Organization"

    def __init__(self, ctx: N.Ctx, row: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self.id = row["id"] or ids.typed_id("Organization", row["name"])
        self.name = row["name"]

    def orgEntity(self, info: GraphQLResolveInfo) -> N.EntityNode:
        return N.entity_node(self._ctx, self._row["org_entity"])

    def advancedRegistryFeatures(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return {"advancedSearch": False}  # basic registry search: filters as documented for it

    def triggers(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
                 order: str | None = None, filters: Any = None) -> dict[str, Any]:
        entities = [r[0] for r in self._ctx.conn.execute("SELECT name FROM entities WHERE organization = ?",
                                                         [self.name])]
        return triggers_connection(self._ctx, entities, after, first, order, filters)


def organization(ctx: N.Ctx, name: str | None) -> OrganizationNode | None:
    if name:
        r = ctx.conn.execute("SELECT * FROM organizations WHERE name = ? OR org_entity = ?", [name, name]).fetchone()
    else:
        r = ctx.conn.execute(
            "SELECT o.* FROM organizations o JOIN entities e ON e.organization = o.name WHERE e.name = ? "
            "UNION ALL SELECT * FROM organizations", [N.default_entity(ctx)]).fetchone()
    return OrganizationNode(ctx, dict(r)) if r else None


def _org_of_entity(ctx: N.Ctx, entity: str) -> dict[str, Any] | None:
    r = ctx.conn.execute("SELECT o.* FROM organizations o JOIN entities e ON e.organization = o.name "
                         "WHERE e.name = ?", [entity]).fetchone()
    return dict(r) if r else None


def _member(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "admin": bool(row["admin"]), "pending": bool(row["pending"]), "email": row["email"],
            "username": row["username"], "name": row["name"] or row["username"], "photoUrl": None,
            "accountType": row["account_type"], "apiKey": None, "role": row["role"]}


class EntityOrgFields:
    """Mixed into `EntityNode` (which has `name` and `isTeam`)."""

    name: str
    isTeam: bool
    available = True
    readOnly = False
    readOnlyAdmin = False
    privateOnly = False
    storageBytes = 0
    codeSavingEnabled = False
    defaultAccess = "PRIVATE"
    isPaid = True

    def entityType(self, info: GraphQLResolveInfo) -> str:
        ctx = N.ctx_of(info)
        if ctx.conn.execute("SELECT 1 FROM organizations WHERE org_entity = ?", [self.name]).fetchone():
            return "organization"
        return "team" if self.isTeam else "user"

    def organization(self, info: GraphQLResolveInfo) -> OrganizationNode | None:
        ctx = N.ctx_of(info)
        row = _org_of_entity(ctx, self.name)
        return OrganizationNode(ctx, row) if row else None

    def user(self, info: GraphQLResolveInfo) -> N.UserNode | None:
        ctx = N.ctx_of(info)
        r = ctx.conn.execute("SELECT * FROM users WHERE entity = ? OR username = ? LIMIT 1", [self.name, self.name]).fetchone()
        return N.UserNode(ctx, dict(r)) if r else None

    def members(self, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
        rows = N.ctx_of(info).conn.execute(
            "SELECT * FROM team_members WHERE team = ? AND tombstoned_at IS NULL ORDER BY username", [self.name])
        return [_member(dict(r)) for r in rows]

    def project(self, info: GraphQLResolveInfo, name: str | None = None) -> N.ProjectNode | None:
        ctx = N.ctx_of(info)
        row = N.get_project(ctx, self.name, name)
        return N.ProjectNode(ctx, row) if row else None

    def projects(self, info: GraphQLResolveInfo, filters: Any = None, after: str | None = None,
                 first: int | None = None, order: str | None = None) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        rows = R.registries(ctx, self.name, filters, order)
        page, has_next = N.page_list(rows, after, first, "registries", key=lambda r: r["pk"])
        return N.connection([(N.ProjectNode(ctx, r), c) for r, c in page], has_next)

    def artifactCollections(self, info: GraphQLResolveInfo, projectFilters: Any = None, filters: Any = None,
                            collectionTypes: list[str] | None = None, after: str | None = None,
                            first: int | None = None, order: str | None = None) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        rows = R.collections(ctx, self.name, projectFilters, filters, collectionTypes, order)
        page, has_next = N.page_list(rows, after, first, "orgcollections", key=lambda cp: cp[0]["pk"])
        return N.connection([(N.CollectionNode(ctx, c, p), cur) for (c, p), cur in page], has_next, len(rows))

    def artifactMemberships(self, info: GraphQLResolveInfo, projectFilters: Any = None, collectionFilters: Any = None,
                            filters: Any = None, after: str | None = None, first: int | None = None,
                            order: str | None = None) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        members = R.versions(ctx, self.name, projectFilters, collectionFilters, filters, order)
        page, has_next = N.page_list(members, after, first, "orgmemberships", key=lambda m: m.id)
        return N.connection(page, has_next)

    def integrations(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict:
        ctx = N.ctx_of(info)
        rows = [integration_node(dict(r)) for r in ctx.conn.execute(
            "SELECT * FROM integrations WHERE entity = ? AND tombstoned_at IS NULL ORDER BY created_at, id", [self.name])]
        page, has_next = N.page_list(rows, after, first, "integrations", key=lambda n: n["id"])
        return N.connection(page, has_next)

    def triggers(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
                 order: str | None = None, filters: Any = None) -> dict[str, Any]:
        return triggers_connection(N.ctx_of(info), [self.name], after, first, order, filters)


# ------------------------------------------------------------------------------------------ automations
def integration_node(row: dict[str, Any]) -> dict[str, Any]:
    if row["kind"] == "SlackIntegration":
        return {"typename": "SlackIntegration", "id": row["id"], "teamName": row["team_name"],
                "channelName": row["channel_name"]}
    return {"typename": "GenericWebhookIntegration", "id": row["id"], "name": row["name"],
            "urlEndpoint": row["url_endpoint"]}


def _integration(ctx: N.Ctx, integration_id: Any) -> dict[str, Any] | None:
    r = ctx.conn.execute("SELECT * FROM integrations WHERE id = ?", [integration_id]).fetchone()
    return integration_node(dict(r)) if r else None


def _trigger(ctx: N.Ctx, row: dict[str, Any]) -> dict[str, Any]:
    scope = loads_lenient(row["scope"], {}) or {}
    if scope.get("typename") == "Entity":
        scope.setdefault("entityType", "team")
    action = dict(loads_lenient(row["action"], {}) or {})
    if "integration" in action:
        action["integration"] = _integration(ctx, action["integration"])
    return {"id": row["id"], "createdAt": row["created_at"] or N.EPOCH, "updatedAt": row["updated_at"],
            "name": row["name"], "description": row["description"], "enabled": bool(row["enabled"]),
            "scope": scope, "triggeringCondition": loads_lenient(row["event"], {}) or {}, "triggeredAction": action}


def triggers_connection(ctx: N.Ctx, entities: list[str], after: str | None, first: int | None, order: str | None,
                        filters: Any) -> dict[str, Any]:
    if not entities:
        return N.empty_connection(None)
    rows = [dict(r) for r in ctx.conn.execute(
        f"SELECT * FROM automations WHERE entity IN ({','.join('?' * len(entities))}) AND tombstoned_at IS NULL",
        entities)]
    rows = R._select(F.upstream_order(rows), lambda r: {"name": r["name"], "id": r["id"], "createdAt": r["created_at"],
                                                        "updatedAt": r["updated_at"], "enabled": bool(r["enabled"])},
                     R._filters(filters), order)
    page, has_next = N.page_list(rows, after, first, "triggers", key=lambda r: r["id"])
    return N.connection([(_trigger(ctx, r), c) for r, c in page], has_next)


# ------------------------------------------------------------------------------------------ users
def users(ctx: N.Ctx, query: str | None) -> list[N.UserNode]:
    """Users the key may see: the store's users and the members of its teams, matched on username,
    email or name (W&B searches those)."""
    people: dict[str, dict[str, Any]] = {}
    for r in ctx.conn.execute("SELECT * FROM users ORDER BY username"):
        people[r["username"]] = dict(r)
    for r in ctx.conn.execute("SELECT * FROM team_members WHERE tombstoned_at IS NULL ORDER BY team, username"):
        row = people.setdefault(r["username"], {"username": r["username"], "id": r["id"], "name": r["name"],
                                                "email": r["email"], "entity": r["username"], "teams": "[]"})
        teams = loads_lenient(row.get("teams"), []) or []
        if r["team"] not in teams:
            row["teams"] = json.dumps([*teams, r["team"]])
    q = (query or "").lower()
    return [N.UserNode(ctx, row) for name, row in sorted(people.items())
            if not q or any(q in (row.get(k) or "").lower() for k in ("username", "email", "name"))]


def user_organizations(ctx: N.Ctx, username: str) -> list[OrganizationNode]:
    rows = ctx.conn.execute(
        "SELECT DISTINCT o.* FROM organizations o JOIN entities e ON e.organization = o.name "
        "LEFT JOIN team_members m ON m.team = e.name WHERE m.username = ? OR e.name IN "
        "(SELECT entity FROM users WHERE username = ?) ORDER BY o.name", [username, username])
    return [OrganizationNode(ctx, dict(r)) for r in rows]
