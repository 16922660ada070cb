"""Mutations on artifact collections: what `ArtifactCollection.save()` sends.

`save()` always sends `updateArtifactSequence` (or `updateArtifactPortfolio`) with the collection's
name and description, then tag assignments for the tags that changed. Each changes only what it
names and moves the collection's `updatedAt`, so a client mirroring this server sees the edit.
"""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids
from . import nodes as N


def _collection(ctx: N.Ctx, *, collection_id: str | None = None, entity: str | None = None,
                project: str | None = None, name: str | None = None) -> dict[str, Any]:
    if collection_id is not None:
        r = ctx.conn.execute("SELECT * FROM artifact_collections WHERE id = ? AND tombstoned_at IS NULL",
                             [collection_id]).fetchone()
        where = collection_id
    else:
        p = N.get_project(ctx, entity, project)
        r = ctx.conn.execute("SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ? "
                             "AND tombstoned_at IS NULL", [p["pk"], name]).fetchone() if p else None
        where = f"{entity}/{project}/{name}"
    if r is None:
        raise GraphQLError(f"artifact collection {where} not found")
    return dict(r)


def _payload(ctx: N.Ctx, collection_pk: int, client_mutation_id: Any) -> dict[str, Any]:
    row = dict(ctx.conn.execute("SELECT * FROM artifact_collections WHERE pk = ?", [collection_pk]).fetchone())
    project = ctx.data.project_by_pk(ctx.conn, row["project_pk"])
    if project is None:
        raise GraphQLError(f"the project of artifact collection {row['name']!r} is gone")
    return {"artifactCollection": N.CollectionNode(ctx, row, project), "clientMutationId": client_mutation_id}


def _bumped(previous: str | None) -> str:
    from .roots import bumped  # roots mixes this module in: import at call time

    return bumped(previous)


def _update(info: GraphQLResolveInfo, collection_id: str, input: dict[str, Any]) -> dict[str, Any]:
    ctx = N.ctx_of(info)
    with ctx.data.write(ctx.conn) as conn:
        c = _collection(ctx, collection_id=collection_id)
        sets: dict[str, Any] = {}
        if "description" in input:
            sets["description"] = input["description"]
        new_name = input.get("name")
        if new_name and new_name != c["name"]:
            clash = conn.execute("SELECT 1 FROM artifact_collections WHERE project_pk = ? AND name = ? "
                                 "AND tombstoned_at IS NULL", [c["project_pk"], new_name]).fetchone()
            if clash:
                raise GraphQLError(f"an artifact collection named {new_name!r} already exists in this project")
            sets["name"] = new_name
        if sets:
            sets["updated_at"] = _bumped(c["updated_at"])
            conn.execute(f"UPDATE artifact_collections SET {', '.join(f'{k} = ?' for k in sets)} WHERE pk = ?",
                         [*sets.values(), c["pk"]])
    return _payload(ctx, c["pk"], input.get("clientMutationId"))


def _retag(info: GraphQLResolveInfo, input: dict[str, Any], add: bool) -> list[str]:
    ctx = N.ctx_of(info)
    names = [t["tagName"] for t in input.get("tags") or []]
    with ctx.data.write(ctx.conn) as conn:
        c = _collection(ctx, entity=input.get("entityName"), project=input.get("projectName"),
                        name=input.get("artifactCollectionName"))
        tags = [t for t in N.loads_or(c["tags"], []) or [] if isinstance(t, str)]
        new = tags + [t for t in dict.fromkeys(names) if t not in tags] if add else [t for t in tags if t not in names]
        if new != tags:
            conn.execute("UPDATE artifact_collections SET tags = ?, updated_at = ? WHERE pk = ?",
                         [json.dumps(new), _bumped(c["updated_at"]), c["pk"]])
        return [c["id"] or ids.typed_id("ArtifactSequence", c["pk"]), *names]


class CollectionMutations:
    """Mixed into the Mutation root."""

    def updateArtifactSequence(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        return _update(info, input["artifactSequenceID"], input)

    def updateArtifactPortfolio(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        return _update(info, input["artifactPortfolioID"], input)

    def createArtifactCollectionTagAssignments(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict:
        owner, *names = _retag(info, input, add=True)
        return {"tags": [N.TagNode(n, owner) for n in names], "clientMutationId": input.get("clientMutationId")}

    def deleteArtifactCollectionTagAssignments(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict:
        _retag(info, input, add=False)
        return {"success": True, "clientMutationId": input.get("clientMutationId")}
