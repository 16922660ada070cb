"""Registries: projects named `wandb-registry-NAME` in an organization's entity, whose collections
(ArtifactPortfolio) hold links to artifact versions of ordinary projects.

Answers what the official client's `api.registries()`, `api.registry(name)`,
`.collections(filter=...)`, `.versions(filter=...)` and `api.artifact("wandb-registry-NAME/C:alias")`
send: `organization.orgEntity.projects/artifactCollections/artifactMemberships` with W&B's Mongo-like
filters (basic search: the server reports no advanced registry search), and
`project.artifactCollectionMembership(name)` on a registry project.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from graphql import GraphQLError

from .. import ids
from ..models import loads_lenient
from ..org_models import REGISTRY_PREFIX
from . import filters as F
from . import nodes as N
from .data import parse_filters

_LIVE_LINK = ("l.tombstoned_at IS NULL AND a.tombstoned_at IS NULL AND COALESCE(a.state, 'COMMITTED') = 'COMMITTED'")


def is_portfolio(coll: dict[str, Any]) -> bool:
    return (coll.get("kind") or "").upper() == "PORTFOLIO"


class LinkMembership:
    """An artifact version as a member of a registry collection: its own version index and aliases."""

    def __init__(self, ctx: N.Ctx, link: dict[str, Any], coll: dict[str, Any], project: dict[str, Any]):
        self._ctx = ctx
        self._link = link
        self._coll = coll
        self._project = project
        self.id = link["membership_id"] or ids.typed_id("ArtifactCollectionMembership", f"link:{link['pk']}")
        self.versionIndex = link["version_index"]
        self.createdAt = link["created_at"] or N.EPOCH
        self._art: N.ArtifactNode | None = None

    def alias_names(self) -> list[str]:
        return [N._alias_name(a) for a in loads_lenient(self._link["aliases"], []) or []]

    def aliases(self, info: Any) -> list[N.AliasNode]:
        return [N.AliasNode(self._ctx, a, self.id, self._coll, self._project) for a in self.alias_names()]

    def artifactCollection(self, info: Any) -> N.CollectionNode:
        return N.CollectionNode(self._ctx, self._coll, self._project)

    def artifact(self, info: Any = None) -> N.ArtifactNode | None:
        if self._art is None:
            r = self._ctx.conn.execute("SELECT * FROM artifacts WHERE pk = ?", [self._link["artifact_pk"]]).fetchone()
            self._art = N.artifact_node_from_row(self._ctx, dict(r)) if r else None
        return self._art

    def files(self, info: Any, **kw: Any) -> dict[str, Any]:
        art = self.artifact()
        return art.files(info, **kw) if art else N.empty_connection()


def links(ctx: N.Ctx, collection_pks: list[int]) -> list[dict[str, Any]]:
    """Live links of these collections, newest version first."""
    if not collection_pks:
        return []
    marks = ",".join("?" * len(collection_pks))
    return [dict(r) for r in ctx.conn.execute(
        f"SELECT l.* FROM artifact_links l JOIN artifacts a ON a.pk = l.artifact_pk "
        f"WHERE l.collection_pk IN ({marks}) AND {_LIVE_LINK} ORDER BY l.collection_pk, l.version_index DESC",
        collection_pks)]


def membership(ctx: N.Ctx, coll: dict[str, Any], project: dict[str, Any], alias: str) -> LinkMembership | None:
    """A registry collection's member by `vN`, alias or `latest`."""
    rows = links(ctx, [coll["pk"]])
    for r in rows:
        m = LinkMembership(ctx, r, coll, project)
        if (alias[:1] == "v" and alias[1:].isdigit() and r["version_index"] == int(alias[1:])) or alias in m.alias_names():
            return m
    if alias == "latest" and rows:
        return LinkMembership(ctx, rows[0], coll, project)
    return None


def membership_by_name(ctx: N.Ctx, project: dict[str, Any], name: str) -> LinkMembership | None:
    coll_name, _, alias = name.rpartition(":")
    if not coll_name:
        coll_name, alias = name, "latest"
    c = ctx.conn.execute("SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ? AND tombstoned_at IS NULL",
                         [project["pk"], coll_name]).fetchone()
    return membership(ctx, dict(c), project, alias) if c and is_portfolio(dict(c)) else None


def collection_members(ctx: N.Ctx, coll: dict[str, Any], project: dict[str, Any]) -> list[LinkMembership]:
    return [LinkMembership(ctx, r, coll, project) for r in links(ctx, [coll["pk"]])]


def registry_settings(conn: sqlite3.Connection, project_pk: int) -> dict[str, Any]:
    r = conn.execute("SELECT * FROM registries WHERE project_pk = ?", [project_pk]).fetchone()
    return dict(r) if r else {"access": None, "allow_all_types": 1, "artifact_types": "[]"}


# ------------------------------------------------------------------------------------------ search
def _filters(text: Any) -> Any:
    try:
        return parse_filters(text)
    except F.FilterError as e:
        raise GraphQLError(str(e)) from None


def _select(items: list[Any], doc_of: Any, flt: Any, order: str | None) -> list[Any]:
    try:
        docs = [(doc_of(it), it) for it in items]
        if flt:
            docs = [d for d in docs if F.matches(d[0], flt)]
        if order:
            key, desc = F.parse_order(order)
            docs = F.sort_docs(docs, lambda d: F.lookup(d[0], key), desc)
    except F.FilterError as e:
        raise GraphQLError(str(e)) from None
    return [it for _, it in docs]


def _registry_doc(p: dict[str, Any]) -> dict[str, Any]:
    internal = p["internal_id"] if p["internal_id"] is not None else p["pk"]
    return {"name": p["name"], "id": int(internal) if str(internal).isdigit() else internal,
            "project_id": int(internal) if str(internal).isdigit() else internal, "description": p["description"],
            "createdAt": p["created_at"], "created_at": p["created_at"], "updatedAt": p["updated_at"],
            "updated_at": p["updated_at"], "entity_id": p["entity"]}


def registries(ctx: N.Ctx, org_entity: str, filters: Any = None, order: str | None = None) -> list[dict[str, Any]]:
    rows = [p for (e, name), p in ctx.data.projects(ctx.conn).items()
            if e == org_entity and name.startswith(REGISTRY_PREFIX)]
    return _select(rows, _registry_doc, _filters(filters), order)


def _collection_doc(c: dict[str, Any]) -> dict[str, Any]:
    tags = [t for t in loads_lenient(c["tags"], []) or [] if isinstance(t, str)]
    return {"name": c["name"], "id": c["id"], "artifact_collection_id": c["id"], "collection_id": c["id"],
            "description": c["description"], "tag": tags, "tags": tags, "createdAt": c["created_at"],
            "created_at": c["created_at"], "updatedAt": c["updated_at"], "updated_at": c["updated_at"]}


def collections(ctx: N.Ctx, org_entity: str, project_filters: Any, filters: Any, types: list[str] | None,
                order: str | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(collection row, registry project row) of every matching collection of the matching registries."""
    regs = {p["pk"]: p for p in registries(ctx, org_entity, project_filters)}
    if not regs:
        return []
    kinds = {k.upper() for k in (types or ["PORTFOLIO"])}
    rows = [dict(r) for r in ctx.conn.execute(
        f"SELECT * FROM artifact_collections WHERE project_pk IN ({','.join('?' * len(regs))}) "
        "AND tombstoned_at IS NULL", list(regs))]
    rows = [r for r in F.upstream_order(rows, newest_first=True) if (r["kind"] or "SEQUENCE").upper() in kinds]
    return [(c, regs[c["project_pk"]]) for c in _select(rows, _collection_doc, _filters(filters), order)]


def _version_doc(m: LinkMembership) -> dict[str, Any]:
    art = m.artifact()
    row = art._row if art else {}
    tags = [t for t in loads_lenient(row.get("tags"), []) or [] if isinstance(t, str)]
    return {"id": row.get("id"), "artifact_id": row.get("id"), "version": f"v{m.versionIndex}",
            "version_index": m.versionIndex, "tag": tags, "tags": tags, "alias": m.alias_names(),
            "aliases": m.alias_names(), "metadata": loads_lenient(row.get("metadata"), {}) or {},
            "createdAt": row.get("created_at"), "created_at": row.get("created_at"),
            "updatedAt": row.get("updated_at"), "updated_at": row.get("updated_at"),
            "artifact_size": row.get("size"), "acm_created_at": m.createdAt, "linked_at": m.createdAt}


def versions(ctx: N.Ctx, org_entity: str, project_filters: Any, collection_filters: Any, filters: Any,
             order: str | None) -> list[LinkMembership]:
    out: list[LinkMembership] = []
    for coll, project in collections(ctx, org_entity, project_filters, collection_filters, None, None):
        out.extend(collection_members(ctx, coll, project))
    return _select(out, _version_doc, _filters(filters), order)
