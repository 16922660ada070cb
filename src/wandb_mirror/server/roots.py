"""The Query and Mutation roots.

Mutations write the catalog the way a W&B server would change its own state, and they bump the
run's `updated_at`/`heartbeat_at` (strictly increasing), so a client mirroring this server sees a
changed run on its next pass. Deletions are tombstones (`tombstoned_at`), which every read hides.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids, jsontext, times
from ..name_rules import file_path_problem
from . import nodes as N
from . import org
from .automation_writes import AutomationMutations
from .collection_writes import CollectionMutations
from .registry_writes import RegistryMutations, apply_registry

FEATURES = [
    "TOTAL_COUNT_IN_FILE_CONNECTION",
    "ARTIFACT_COLLECTIONS_FILTERING_SORTING",
    "SWEEPS_QUERY_FILTERING",
    "MARK_RUN_FILES_UPLOADED",
    "ARTIFACT_DIGEST_ALGORITHM",
    "ARTIFACT_REGISTRY_SEARCH",
    "QUERY_AUTOMATIONS_ON_ENTITY",
    "INCLUDE_ARTIFACT_TYPES_IN_REGISTRY_CREATION",
    "ARTIFACT_MEMBERSHIP_IN_LINK_ARTIFACT_RESPONSE",
]


def bumped(previous: str | None) -> str:
    """Now, or one second after `previous` if that is not earlier: a change must be visible as newer."""
    now = times.now().replace(microsecond=0)
    prev = times.parse_time(previous)
    if prev is not None and prev >= now:
        now = prev.replace(microsecond=0) + timedelta(seconds=1)
    return times.wandb_time(now)


def touch_run(conn: sqlite3.Connection, run_pk: int) -> None:
    r = conn.execute("SELECT updated_at, heartbeat_at FROM runs WHERE pk = ?", [run_pk]).fetchone()
    if r is None:
        return
    latest = max([x for x in (r["updated_at"], r["heartbeat_at"]) if x], default=None, key=lambda s: times.parse_time(s) or
                 datetime.min.replace(tzinfo=timezone.utc))
    t = bumped(latest)
    conn.execute("UPDATE runs SET updated_at = ?, heartbeat_at = ? WHERE pk = ?", [t, t, run_pk])


class Query:
    def viewer(self, info: GraphQLResolveInfo) -> N.UserNode:
        return N.viewer_node(N.ctx_of(info))

    def serverInfo(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        return {
            "features": [{"name": f, "isEnabled": True} for f in ctx.features],
            "cliVersionInfo": {},
            "latestLocalVersionInfo": None,
        }

    def project(self, info: GraphQLResolveInfo, name: str | None = None, entityName: str | None = None):
        ctx = N.ctx_of(info)
        row = N.get_project(ctx, entityName, name)
        return N.ProjectNode(ctx, row) if row else None

    model = project

    def models(self, info: GraphQLResolveInfo, entityName: str | None = None, after: str | None = None,
               first: int | None = None) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        ent = entityName or N.default_entity(ctx)
        rows = [p for (e, _), p in ctx.data.projects(ctx.conn).items() if e == ent]
        page, has_next = N.page_list(rows, after, first, "projects", key=lambda r: r["pk"])
        return N.connection([(N.ProjectNode(ctx, r), c) for r, c in page], has_next)

    def entity(self, info: GraphQLResolveInfo, name: str) -> N.EntityNode | None:
        ctx = N.ctx_of(info)
        known = ctx.conn.execute("SELECT 1 FROM entities WHERE name = ? UNION SELECT 1 FROM projects WHERE entity = ?",
                                 [name, name]).fetchone()
        return N.entity_node(ctx, name) if known else None

    def artifact(self, info: GraphQLResolveInfo, id: str) -> N.ArtifactNode | None:
        return N.artifact_by_id(N.ctx_of(info), id)

    def organization(self, info: GraphQLResolveInfo, name: str | None = None) -> Any:
        return org.organization(N.ctx_of(info), name)

    def users(self, info: GraphQLResolveInfo, query: str | None = None, usernames: list[str] | None = None,
              first: int | None = None, after: str | None = None) -> dict[str, Any]:
        found = [u for u in org.users(N.ctx_of(info), query) if not usernames or u.username in usernames]
        page, has_next = N.page_list(found, after, first, "users", key=lambda u: u.username)
        return N.connection(page, has_next)

    def artifactCollection(self, info: GraphQLResolveInfo, id: str) -> N.CollectionNode | None:
        ctx = N.ctx_of(info)
        r = ctx.conn.execute("SELECT * FROM artifact_collections WHERE id = ? AND tombstoned_at IS NULL", [id]).fetchone()
        if r is None:
            return None
        project = ctx.data.project_by_pk(ctx.conn, r["project_pk"])
        return N.CollectionNode(ctx, dict(r), project) if project else None


# ------------------------------------------------------------------------------------------ mutations
def _run_by_storage_id(ctx: N.Ctx, storage_id: str) -> dict[str, Any] | None:
    r = ctx.conn.execute("SELECT * FROM runs WHERE storage_id = ? AND tombstoned_at IS NULL", [storage_id]).fetchone()
    if r is not None:
        return dict(r)
    # a run seeded without a storage id is served with a minted one: find it by decoding that
    try:
        text = base64.b64decode(storage_id.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = text.split(":")
    if len(parts) == 5 and parts[0] == "Run" and parts[1] == "v1":
        _, _, name, project, entity = parts
        r = ctx.conn.execute(
            "SELECT r.* FROM runs r JOIN projects p ON p.pk = r.project_pk WHERE p.entity = ? AND p.name = ? "
            "AND r.run_id = ? AND r.storage_id IS NULL AND r.tombstoned_at IS NULL", [entity, project, name]).fetchone()
        return dict(r) if r else None
    return None


def _run_by_path(ctx: N.Ctx, entity: str | None, project: str | None, name: str) -> dict[str, Any] | None:
    p = N.get_project(ctx, entity, project)
    if p is None:
        return None
    r = ctx.conn.execute("SELECT * FROM runs WHERE project_pk = ? AND run_id = ? AND tombstoned_at IS NULL",
                         [p["pk"], name]).fetchone()
    return dict(r) if r else None


def _ensure_project(ctx: N.Ctx, entity: str, name: str) -> dict[str, Any]:
    p = ctx.conn.execute("SELECT * FROM projects WHERE entity = ? AND name = ?", [entity, name]).fetchone()
    if p is not None:
        if p["tombstoned_at"]:
            ctx.conn.execute("UPDATE projects SET tombstoned_at = NULL WHERE pk = ?", [p["pk"]])
        return dict(p)
    ctx.conn.execute("INSERT OR IGNORE INTO entities (name, id, created_at) VALUES (?, ?, ?)",
                     [entity, ids.typed_id("Entity", entity), times.wandb_time()])
    nums = [int(r[0]) for r in ctx.conn.execute("SELECT internal_id FROM projects") if r[0] and str(r[0]).isdigit()]
    internal = str(max(nums, default=0) + 1)
    t = times.wandb_time()
    ctx.conn.execute(
        "INSERT INTO projects (entity, name, id, internal_id, created_at, updated_at, username) VALUES (?,?,?,?,?,?,?)",
        [entity, name, ids.project_id(internal), internal, t, t, N.default_entity(ctx)])
    return dict(ctx.conn.execute("SELECT * FROM projects WHERE entity = ? AND name = ?", [entity, name]).fetchone())


def _json_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            raise GraphQLError(f"{what} is not valid JSON") from None
        return value
    return json.dumps(value)


UPSERT_COLUMNS = {
    "description": "description",
    "displayName": "display_name",
    "notes": "notes",
    "groupName": "group_name",
    "jobType": "job_type",
    "state": "state",
    "host": "host",
    "commit": "commit_hash",
    "sweep": "sweep_name",
}


class Mutation(CollectionMutations, RegistryMutations, AutomationMutations):
    def upsertBucket(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        inserted = False
        with ctx.data.write(ctx.conn) as conn:
            if input.get("id"):
                run = _run_by_storage_id(ctx, input["id"])
                if run is None:
                    raise GraphQLError(f"run {input['id']} not found")
            elif input.get("name"):
                entity = input.get("entityName") or N.default_entity(ctx)
                project_name = input.get("modelName")
                if not project_name:
                    raise GraphQLError("upsertBucket needs modelName (the project) to find or create a run by name")
                run = _run_by_path(ctx, entity, project_name, input["name"])
                if run is None:
                    project = _ensure_project(ctx, entity, project_name)
                    old = conn.execute("SELECT pk FROM runs WHERE project_pk = ? AND run_id = ?",
                                       [project["pk"], input["name"]]).fetchone()
                    t = times.wandb_time()
                    viewer = N.default_entity(ctx)
                    if old is not None:  # a deleted run of that name comes back to life
                        conn.execute("UPDATE runs SET tombstoned_at = NULL, state = ?, created_at = ? WHERE pk = ?",
                                     [input.get("state") or "running", t, old["pk"]])
                    else:
                        conn.execute(
                            "INSERT INTO runs (project_pk, run_id, storage_id, display_name, state, created_at, "
                            "heartbeat_at, updated_at, username, user_display_name) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            [project["pk"], input["name"],
                             ids.run_storage_id(project["entity"], project["name"], input["name"]),
                             input.get("displayName") or input["name"], input.get("state") or "running", t, t, t,
                             viewer, viewer])
                    run = dict(conn.execute("SELECT * FROM runs WHERE project_pk = ? AND run_id = ?",
                                            [project["pk"], input["name"]]).fetchone())
                    inserted = True
            else:
                raise GraphQLError("upsertBucket needs an id or a name")
            sets: dict[str, Any] = {}
            # wandb-core sends every variable, null for what it does not mean to change
            for field, col in UPSERT_COLUMNS.items():
                if input.get(field) is not None:
                    sets[col] = input[field]
            if input.get("tags") is not None:
                sets["tags"] = json.dumps(list(input["tags"] or []))
            if "config" in input and input["config"] is not None:
                sets["config"] = _json_text(input["config"], "config")
            if "summaryMetrics" in input and input["summaryMetrics"] is not None:
                sets["summary"] = _json_text(input["summaryMetrics"], "summaryMetrics")
            if sets:
                sets = jsontext.encode_row("runs", sets)
                conn.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in sets)} WHERE pk = ?",
                             [*sets.values(), run["pk"]])
            touch_run(conn, run["pk"])
        return {"bucket": N.run_node_by_pk(ctx, run["pk"]), "inserted": inserted}

    def deleteRun(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        with ctx.data.write(ctx.conn) as conn:
            run = _run_by_storage_id(ctx, input["id"])
            if run is None:
                raise GraphQLError(f"run {input['id']} not found")
            t = bumped(run["updated_at"])
            conn.execute("UPDATE runs SET tombstoned_at = ?, updated_at = ? WHERE pk = ?", [t, t, run["pk"]])
            if input.get("deleteArtifacts"):
                conn.execute("UPDATE artifacts SET tombstoned_at = ? WHERE producer_run_pk = ? AND tombstoned_at IS NULL",
                             [t, run["pk"]])
        return {"clientMutationId": input.get("clientMutationId")}

    def updateRunState(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        with ctx.data.write(ctx.conn) as conn:
            run = _run_by_storage_id(ctx, input["id"])
            if run is None:
                raise GraphQLError(f"run {input['id']} not found")
            conn.execute("UPDATE runs SET state = ? WHERE pk = ?", [input["state"], run["pk"]])
            touch_run(conn, run["pk"])
        return {"success": True}

    def stopRun(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        if _run_by_storage_id(ctx, input["id"]) is None:
            raise GraphQLError(f"run {input['id']} not found")
        return {"success": True}  # nothing runs here; there is no agent to tell

    def createRunFiles(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        run = _run_by_path(ctx, input["entityName"], input["projectName"], input["runName"])
        if run is None:
            raise GraphQLError(f"run {input['entityName']}/{input['projectName']}/{input['runName']} not found")
        files = []
        for name in input["files"]:
            if file_path_problem(name):
                raise GraphQLError(f"invalid file name {name!r}")
            files.append({
                "id": ids.typed_id("File", f"{run['storage_id']}:{name}"),
                "name": name,
                "displayName": name,
                "uploadUrl": ctx.urls.upload(input["entityName"], input["projectName"], input["runName"], name),
                "directUrl": "",
                "sizeBytes": 0,
            })
        return {"runID": run["storage_id"] or ids.run_storage_id(input["entityName"], input["projectName"],
                                                                   input["runName"]),
                "uploadHeaders": [], "files": files}

    def markRunFilesUploaded(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        run = _run_by_path(ctx, input["entityName"], input["projectName"], input["runName"])
        if run is None:
            raise GraphQLError(f"run {input['entityName']}/{input['projectName']}/{input['runName']} not found")
        # the bytes were recorded when the PUT arrived; nothing is pending here
        return {"success": True}

    def deleteFiles(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        with ctx.data.write(ctx.conn) as conn:
            run_pks = set()
            for fid in input["files"]:
                r = conn.execute("SELECT pk, run_pk FROM files WHERE id = ? AND tombstoned_at IS NULL", [fid]).fetchone()
                if r is None:
                    try:  # a file seeded without an id is served as typed_id("File", pk)
                        kind, _, num = base64.b64decode(fid.encode()).decode().partition(":")
                        if kind == "File" and num.isdigit():
                            r = conn.execute("SELECT pk, run_pk FROM files WHERE pk = ? AND tombstoned_at IS NULL",
                                             [int(num)]).fetchone()
                    except (ValueError, UnicodeDecodeError):
                        r = None
                if r is None:
                    raise GraphQLError(f"file {fid} not found")
                conn.execute("UPDATE files SET tombstoned_at = ? WHERE pk = ?", [times.wandb_time(), r["pk"]])
                run_pks.add(r["run_pk"])
            for pk in run_pks:
                touch_run(conn, pk)
        return {"success": True}

    def upsertModel(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        name = input.get("name")
        if not name:
            raise GraphQLError("upsertModel needs a name")
        entity = input.get("entityName") or N.default_entity(ctx)
        with ctx.data.write(ctx.conn) as conn:
            existed = conn.execute("SELECT 1 FROM projects WHERE entity = ? AND name = ? AND tombstoned_at IS NULL",
                                   [entity, name]).fetchone()
            p = _ensure_project(ctx, entity, name)
            if "description" in input:
                conn.execute("UPDATE projects SET description = ?, updated_at = ? WHERE pk = ?",
                             [input["description"], times.wandb_time(), p["pk"]])
            apply_registry(conn, p, input)
        row = ctx.conn.execute("SELECT * FROM projects WHERE pk = ?", [p["pk"]]).fetchone()
        node = N.ProjectNode(ctx, dict(row))
        return {"project": node, "model": node, "inserted": existed is None}

    def useArtifact(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        run = _run_by_path(ctx, input["entityName"], input["projectName"], input["runName"])
        art = ctx.conn.execute("SELECT pk FROM artifacts WHERE id = ? AND tombstoned_at IS NULL",
                               [input["artifactID"]]).fetchone()
        if run is None or art is None:
            raise GraphQLError("run or artifact not found")
        with ctx.data.write(ctx.conn) as conn:
            conn.execute("INSERT OR IGNORE INTO artifact_usage (artifact_pk, run_pk) VALUES (?, ?)", [art["pk"], run["pk"]])
            touch_run(conn, run["pk"])
        return {"artifact": N.artifact_by_id(ctx, input["artifactID"])}

    # artifact aliases and edits ------------------------------------------------------------------
    def _artifact_row(self, ctx: N.Ctx, artifact_id: str) -> dict[str, Any]:
        r = ctx.conn.execute("SELECT * FROM artifacts WHERE id = ? AND tombstoned_at IS NULL", [artifact_id]).fetchone()
        if r is None:
            raise GraphQLError(f"artifact {artifact_id} not found")
        return dict(r)

    def _set_aliases(self, ctx: N.Ctx, input: dict[str, Any], add: bool) -> dict[str, Any]:
        with ctx.data.write(ctx.conn) as conn:
            art = self._artifact_row(ctx, input["artifactID"])
            names = [a["alias"] for a in input["aliases"]]
            t = bumped(art["updated_at"])
            current = [N._alias_name(a) for a in N.loads_or(art["aliases"], []) or []]
            if add:
                # an alias names one version per collection: take it away from the others
                for other in conn.execute(
                        "SELECT pk, aliases FROM artifacts WHERE collection_pk = ? AND pk != ?",
                        [art["collection_pk"], art["pk"]]).fetchall():
                    theirs = [N._alias_name(a) for a in N.loads_or(other["aliases"], []) or []]
                    kept = [a for a in theirs if a not in names]
                    if kept != theirs:
                        conn.execute("UPDATE artifacts SET aliases = ?, updated_at = ? WHERE pk = ?",
                                     [json.dumps(kept), t, other["pk"]])
                new = current + [a for a in names if a not in current]
            else:
                new = [a for a in current if a not in names]
            conn.execute("UPDATE artifacts SET aliases = ?, updated_at = ? WHERE pk = ?",
                         [json.dumps(new), t, art["pk"]])
            conn.execute("UPDATE artifact_collections SET updated_at = ? WHERE pk = ?", [t, art["collection_pk"]])
            if art["producer_run_pk"] is not None:
                touch_run(conn, art["producer_run_pk"])
        return {"success": True, "clientMutationId": input.get("clientMutationId")}

    def addAliases(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        return self._set_aliases(N.ctx_of(info), input, add=True)

    def deleteAliases(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        return self._set_aliases(N.ctx_of(info), input, add=False)

    def updateArtifact(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        with ctx.data.write(ctx.conn) as conn:
            art = self._artifact_row(ctx, input["artifactID"])
            sets: dict[str, Any] = {}
            if "description" in input:
                sets["description"] = input["description"]
            if input.get("metadata") is not None:
                sets["metadata"] = _json_text(input["metadata"], "metadata")
            if input.get("ttlDurationSeconds") is not None:
                sets["ttl_duration_seconds"] = int(input["ttlDurationSeconds"])
            tags = [t for t in N.loads_or(art["tags"], []) or []]
            for t in input.get("tagsToAdd") or []:
                if t["tagName"] not in tags:
                    tags.append(t["tagName"])
            drop = {t["tagName"] for t in input.get("tagsToDelete") or []}
            tags = [t for t in tags if t not in drop]
            sets["tags"] = json.dumps(tags)
            if input.get("aliases") is not None:
                sets["aliases"] = json.dumps([a["alias"] for a in input["aliases"]])
            sets["updated_at"] = bumped(art["updated_at"])
            sets = jsontext.encode_row("artifacts", sets)
            conn.execute(f"UPDATE artifacts SET {', '.join(f'{c} = ?' for c in sets)} WHERE pk = ?",
                         [*sets.values(), art["pk"]])
        return {"artifact": N.artifact_by_id(ctx, input["artifactID"]), "clientMutationId": input.get("clientMutationId")}

    def deleteArtifact(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        node = N.artifact_by_id(ctx, input["artifactID"])
        if node is None:
            raise GraphQLError(f"artifact {input['artifactID']} not found")
        with ctx.data.write(ctx.conn) as conn:
            conn.execute("UPDATE artifacts SET tombstoned_at = ? WHERE pk = ?", [times.wandb_time(), node.pk])
        return {"artifact": node, "clientMutationId": input.get("clientMutationId")}
