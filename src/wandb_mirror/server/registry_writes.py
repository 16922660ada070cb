"""Writable serve: registries and links, as the official client writes them.

- `api.create_registry()` and `Registry.save()` send `upsertModel` with the registry's fields
  (access, allowAllArtifactTypesInRegistry, artifactTypes) for a project named `wandb-registry-NAME`
  in an organization's entity; `upsertModel` (roots) creates the project, `apply_registry` its settings.
- `Artifact.link()` sends `linkArtifact`: the version joins a registry (or any portfolio) collection
  as that collection's next version, the collection created on the first link as W&B does; linking
  a version the collection already holds answers the link it has and adds the aliases. An alias
  names one member per collection, and `latest` follows the newest member.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids, times
from ..models import loads_lenient
from ..org_models import REGISTRY_PREFIX
from . import nodes as N
from .registries import LinkMembership, registry_settings

_FIELDS = ("access", "allowAllArtifactTypesInRegistry", "artifactTypes")


def apply_registry(conn: sqlite3.Connection, project: dict[str, Any], input: dict[str, Any]) -> None:
    """The registry settings `upsertModel` carries, for a registry project. Allowed types are only
    ever added (W&B: "allowed types added to the registry cannot be removed later")."""
    if not project["name"].startswith(REGISTRY_PREFIX) or not any(k in input for k in _FIELDS):
        return
    if conn.execute("SELECT 1 FROM organizations WHERE org_entity = ?", [project["entity"]]).fetchone() is None:
        raise GraphQLError(f"registries live in an organization's entity; {project['entity']!r} is not one")
    old = conn.execute("SELECT * FROM registries WHERE project_pk = ?", [project["pk"]]).fetchone()
    access = input.get("access") or (old["access"] if old else "PRIVATE")
    if access not in ("PRIVATE", "RESTRICTED"):
        raise GraphQLError(f"a registry's access is PRIVATE (organization) or RESTRICTED, not {access!r}")
    allow_all = input.get("allowAllArtifactTypesInRegistry")
    if allow_all is None:
        allow_all = bool(old["allow_all_types"]) if old else True
    types = [t for t in loads_lenient(old["artifact_types"], []) or []] if old else []
    types += [t["name"] for t in input.get("artifactTypes") or [] if t["name"] not in types]
    conn.execute("INSERT INTO registries (project_pk, access, allow_all_types, artifact_types) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (project_pk) DO UPDATE SET access = excluded.access, "
                 "allow_all_types = excluded.allow_all_types, artifact_types = excluded.artifact_types",
                 [project["pk"], access, int(bool(allow_all)), json.dumps(types)])


def _portfolio(conn: sqlite3.Connection, project: dict[str, Any], input: dict[str, Any],
               type_name: str) -> dict[str, Any]:
    if input.get("artifactPortfolioID"):
        row = conn.execute("SELECT * FROM artifact_collections WHERE id = ? AND project_pk = ? AND "
                           "tombstoned_at IS NULL", [input["artifactPortfolioID"], project["pk"]]).fetchone()
        if row is None:
            raise GraphQLError(f"artifact portfolio {input['artifactPortfolioID']} not found")
    else:
        name = input.get("artifactPortfolioName")
        if not name:
            raise GraphQLError("linkArtifact needs artifactPortfolioID or artifactPortfolioName")
        row = conn.execute("SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ?",
                           [project["pk"], name]).fetchone()
        if row is None:
            t = times.wandb_time()
            conn.execute("INSERT INTO artifact_collections (project_pk, name, id, type_name, kind, tags, created_at, "
                         "updated_at) VALUES (?, ?, ?, ?, 'PORTFOLIO', '[]', ?, ?)",
                         [project["pk"], name, ids.typed_id("ArtifactPortfolio", f"{project['pk']}:{name}"), type_name,
                          t, t])
            conn.execute("INSERT OR IGNORE INTO artifact_types (project_pk, name, id, created_at) VALUES (?, ?, ?, ?)",
                         [project["pk"], type_name, ids.b64id(f"ArtifactType:{project['pk']}:{type_name}"), t])
            row = conn.execute("SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ?",
                               [project["pk"], name]).fetchone()
        elif row["tombstoned_at"]:
            conn.execute("UPDATE artifact_collections SET tombstoned_at = NULL WHERE pk = ?", [row["pk"]])
    if (row["kind"] or "SEQUENCE").upper() != "PORTFOLIO":
        raise GraphQLError(f"{row['name']!r} is a collection of logged versions, not one to link into")
    if row["type_name"] != type_name:
        raise GraphQLError(f"collection {row['name']!r} holds type {row['type_name']!r}, not {type_name!r}")
    return dict(row)


def _place_aliases(conn: sqlite3.Connection, collection_pk: int, link_pk: int, names: list[str]) -> None:
    """`names` on this link, taken from the collection's other links; `latest` on the newest link."""
    rows = conn.execute("SELECT pk, version_index, aliases FROM artifact_links WHERE collection_pk = ? AND "
                        "tombstoned_at IS NULL ORDER BY version_index DESC", [collection_pk]).fetchall()
    newest = rows[0]["pk"] if rows else link_pk
    for r in rows:
        have = [N._alias_name(a) for a in loads_lenient(r["aliases"], []) or []]
        want = [a for a in have if a not in names and a != "latest"]
        if r["pk"] == link_pk:
            want += [a for a in names if a not in want and a != "latest"]
        if r["pk"] == newest:
            want = ["latest", *want]
        if want != have:
            conn.execute("UPDATE artifact_links SET aliases = ? WHERE pk = ?", [json.dumps(want), r["pk"]])


class RegistryMutations:
    """Mixed into the Mutation root."""

    def linkArtifact(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        with ctx.data.write(ctx.conn) as conn:
            art = conn.execute("SELECT * FROM artifacts WHERE id = ? AND tombstoned_at IS NULL AND "
                               "COALESCE(state, 'COMMITTED') = 'COMMITTED'", [input.get("artifactID")]).fetchone()
            if art is None:
                raise GraphQLError(f"artifact {input.get('artifactID')} not found (or not committed)")
            type_name = conn.execute("SELECT type_name FROM artifact_collections WHERE pk = ?",
                                     [art["collection_pk"]]).fetchone()[0]
            entity, name = input.get("entityName") or N.default_entity(ctx), input.get("projectName")
            project = conn.execute("SELECT * FROM projects WHERE entity = ? AND name = ? AND tombstoned_at IS NULL",
                                   [entity, name]).fetchone()
            if project is None:
                raise GraphQLError(f"project {entity}/{name} not found")
            project = dict(project)
            if name and name.startswith(REGISTRY_PREFIX):
                settings = registry_settings(conn, project["pk"])
                allowed = loads_lenient(settings["artifact_types"], []) or []
                if not settings["allow_all_types"] and type_name not in allowed:
                    raise GraphQLError(f"type {type_name!r} is not allowed in registry {name!r} ({', '.join(allowed)})")
            coll = _portfolio(conn, project, input, type_name)
            link = conn.execute("SELECT * FROM artifact_links WHERE collection_pk = ? AND artifact_pk = ? AND "
                                "tombstoned_at IS NULL", [coll["pk"], art["pk"]]).fetchone()
            if link is None:
                top = conn.execute("SELECT MAX(version_index) FROM artifact_links WHERE collection_pk = ?",
                                   [coll["pk"]]).fetchone()[0]
                index = 0 if top is None else top + 1
                conn.execute("INSERT INTO artifact_links (collection_pk, artifact_pk, membership_id, version_index, "
                             "aliases, created_at) VALUES (?, ?, ?, ?, '[]', ?)",
                             [coll["pk"], art["pk"], ids.typed_id("ArtifactCollectionMembership",
                                                                  f"{coll['pk']}:{index}"), index, times.wandb_time()])
                link = conn.execute("SELECT * FROM artifact_links WHERE collection_pk = ? AND version_index = ?",
                                    [coll["pk"], index]).fetchone()
            names = [a["alias"] for a in input.get("aliases") or []
                     if a.get("artifactCollectionName") in (None, coll["name"])]
            _place_aliases(conn, coll["pk"], link["pk"], names)
            conn.execute("UPDATE artifact_collections SET updated_at = ? WHERE pk = ?",
                         [times.wandb_time(), coll["pk"]])
            row = dict(conn.execute("SELECT * FROM artifact_links WHERE pk = ?", [link["pk"]]).fetchone())
            coll = dict(conn.execute("SELECT * FROM artifact_collections WHERE pk = ?", [coll["pk"]]).fetchone())
        return {"versionIndex": row["version_index"], "artifactMembership": LinkMembership(ctx, row, coll, project),
                "clientMutationId": input.get("clientMutationId")}
