"""Logging an artifact, as `run.log_artifact()` (wandb-core) does it, against the catalog.

The client's sequence, and what each step does here:

1. `createArtifact`: a PENDING version in its collection (project, type and collection are created
   on first use). Its id is derived from the client's `clientID`, so a retried request finds the
   version it already created. With `enableDigestDeduplication`, a digest equal to the collection's
   latest committed version answers that version (W&B's deduplication): nothing new is stored.
2. `createArtifactFiles`: an upload URL per file, or none when the store already holds that md5
   (the client then skips the upload, as it does against W&B).
3. PUT of each file (server/uploads.py), verified against its md5 before it is published.
4. `createArtifactManifest` / `updateArtifactManifest`: an upload URL for the manifest; its PUT
   fills the version's entries, size, file count and digest.
5. `commitArtifact`: every stored entry must be present and the manifest must give the digest the
   client declared; then the version is COMMITTED and takes its aliases (and `latest`) away from
   the collection's other versions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids, times
from ..digests import manifest_digest
from . import nodes as N
from .roots import _ensure_project, _run_by_path, bumped, touch_run


def _alias_names(aliases: Any) -> list[str]:
    return [N._alias_name(a) for a in N.loads_or(aliases, []) or []]


def manifest_id(artifact_id: str) -> str:
    return ids.typed_id("ArtifactManifest", artifact_id)


def artifact_of_manifest_id(manifest: str) -> str | None:
    try:
        kind, _, rest = base64.b64decode(manifest.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return rest if kind == "ArtifactManifest" else None


def _collection(conn: sqlite3.Connection, project_pk: int, name: str, type_name: str) -> dict[str, Any]:
    t = times.wandb_time()
    conn.execute("INSERT OR IGNORE INTO artifact_types (project_pk, name, id, created_at) VALUES (?, ?, ?, ?)",
                 [project_pk, type_name, ids.b64id(f"ArtifactType:{project_pk}:{type_name}"), t])
    row = conn.execute("SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ?",
                       [project_pk, name]).fetchone()
    if row is None:
        conn.execute("INSERT INTO artifact_collections (project_pk, name, id, type_name, kind, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, 'SEQUENCE', ?, ?)",
                     [project_pk, name, ids.typed_id("ArtifactCollection", f"{project_pk}:{name}"), type_name, t, t])
        row = conn.execute("SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ?",
                           [project_pk, name]).fetchone()
    elif row["type_name"] != type_name:
        raise GraphQLError(f"artifact collection {name!r} holds type {row['type_name']!r}, not {type_name!r}")
    elif row["tombstoned_at"]:
        conn.execute("UPDATE artifact_collections SET tombstoned_at = NULL WHERE pk = ?", [row["pk"]])
    return dict(row)


def take_aliases(conn: sqlite3.Connection, art: dict[str, Any], names: list[str], when: str) -> None:
    """Give `names` to this version and take them from its collection's other versions (one holder each)."""
    for other in conn.execute("SELECT pk, aliases FROM artifacts WHERE collection_pk = ? AND pk != ?",
                              [art["collection_pk"], art["pk"]]).fetchall():
        theirs = _alias_names(other["aliases"])
        kept = [a for a in theirs if a not in names]
        if kept != theirs:
            conn.execute("UPDATE artifacts SET aliases = ?, updated_at = ? WHERE pk = ?",
                         [json.dumps(kept), when, other["pk"]])
    current = _alias_names(art["aliases"])
    conn.execute("UPDATE artifacts SET aliases = ?, updated_at = ? WHERE pk = ?",
                 [json.dumps(current + [a for a in names if a not in current]), when, art["pk"]])


class ArtifactMutations:
    """Mixed into the Mutation root (server/roots.py)."""

    def createArtifact(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        aliases = [a["alias"] for a in input.get("aliases") or [] if a.get("alias")]
        artifact_id = ids.typed_id("Artifact", input.get("clientID") or secrets.token_hex(16))
        with ctx.data.write(ctx.conn) as conn:
            existing = conn.execute("SELECT * FROM artifacts WHERE id = ?", [artifact_id]).fetchone()
            if existing is not None:  # a retried request
                return {"artifact": N.artifact_by_id(ctx, artifact_id)}
            project = _ensure_project(ctx, input["entityName"], input["projectName"])
            coll = _collection(conn, project["pk"], input["artifactCollectionName"], input["artifactTypeName"])
            run = _run_by_path(ctx, project["entity"], project["name"], input["runName"]) if input.get("runName") else None
            if input.get("enableDigestDeduplication"):
                latest = conn.execute(
                    "SELECT * FROM artifacts WHERE collection_pk = ? AND state = 'COMMITTED' AND tombstoned_at IS NULL "
                    "ORDER BY version_index DESC LIMIT 1", [coll["pk"]]).fetchone()
                if latest is not None and latest["digest"] == input["digest"]:
                    if aliases:
                        take_aliases(conn, dict(latest), aliases, bumped(latest["updated_at"]))
                    return {"artifact": N.artifact_by_id(ctx, latest["id"])}
            index = conn.execute("SELECT COALESCE(MAX(version_index), -1) + 1 FROM artifacts WHERE collection_pk = ?",
                                 [coll["pk"]]).fetchone()[0]
            t = times.wandb_time()
            tags = [x["tagName"] for x in input.get("tags") or []]
            conn.execute(
                "INSERT INTO artifacts (collection_pk, id, membership_id, version_index, type_name, aliases, tags, "
                "state, digest, digest_algorithm, description, metadata, commit_hash, history_step, "
                "ttl_duration_seconds, created_at, updated_at, producer_run_pk, mirrored_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [coll["pk"], artifact_id, ids.typed_id("ArtifactCollectionMembership", artifact_id), index,
                 input["artifactTypeName"], json.dumps(aliases), json.dumps(tags), input["digest"],
                 input.get("digestAlgorithm") or "MANIFEST_MD5", input.get("description"),
                 input.get("metadata") or "{}", hashlib.md5(artifact_id.encode()).hexdigest()[:12],
                 input.get("historyStep"), input.get("ttlDurationSeconds") if input.get("ttlDurationSeconds") is not None
                 else -1, t, t, run["pk"] if run else None, t])
            conn.execute("UPDATE artifact_collections SET updated_at = ? WHERE pk = ?", [t, coll["pk"]])
        return {"artifact": N.artifact_by_id(ctx, artifact_id)}

    def createArtifactFiles(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        edges = []
        for spec in input["artifactFiles"]:
            art = N.artifact_by_id(ctx, spec["artifactID"])
            if art is None:
                raise GraphQLError(f"artifact {spec['artifactID']} not found")
            try:
                md5 = ids.content_md5_hex(spec["md5"])
            except ValueError:
                raise GraphQLError(f"md5 of {spec['name']!r} is not a base64 md5") from None
            if art.state != "COMMITTED":
                # remembered until the manifest arrives: an entry digested with XXH128 names no md5 itself
                with ctx.data.write(ctx.conn) as conn:
                    conn.execute("INSERT OR REPLACE INTO artifact_files (artifact_pk, path, digest, size, md5) "
                                 "VALUES (?, ?, ?, 0, ?)", [art.pk, spec["name"], spec.get("digest") or spec["md5"], md5])
            node = {
                "id": ids.typed_id("File", f"{art.id}:{spec['name']}"),
                "name": spec["name"],
                "displayName": spec["name"].rsplit("/", 1)[-1],
                "storagePath": f"wandb_artifacts/{md5}",
                "uploadUrl": None if ctx.objects.has(md5) else ctx.urls.upload_object(md5),
                "uploadHeaders": [],
                "uploadMultipartUrls": None,
                "artifact": art,
            }
            edges.append({"node": node, "cursor": None})
        return {"files": {"edges": edges, "pageInfo": {"hasNextPage": False, "endCursor": None}}}

    def _manifest_payload(self, ctx: N.Ctx, artifact_id: str, include_upload: bool = True) -> dict[str, Any]:
        mid = manifest_id(artifact_id)
        return {"artifactManifest": {"id": mid, "file": {
            "id": ids.typed_id("File", mid), "name": "wandb_manifest.json", "displayName": "wandb_manifest.json",
            "uploadUrl": ctx.urls.upload_manifest(artifact_id), "uploadHeaders": [], "directUrl": "", "sizeBytes": 0,
        }}}

    def createArtifactManifest(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        if N.artifact_by_id(ctx, input["artifactID"]) is None:
            raise GraphQLError(f"artifact {input['artifactID']} not found")
        if (input.get("type") or "FULL") != "FULL":
            raise GraphQLError("only FULL artifact manifests are supported by wandb-mirror")
        return self._manifest_payload(ctx, input["artifactID"])

    def updateArtifactManifest(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        artifact_id = artifact_of_manifest_id(input["artifactManifestID"])
        if artifact_id is None or N.artifact_by_id(ctx, artifact_id) is None:
            raise GraphQLError(f"artifact manifest {input['artifactManifestID']} not found")
        return self._manifest_payload(ctx, artifact_id)

    def commitArtifact(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        with ctx.data.write(ctx.conn) as conn:
            row = conn.execute("SELECT * FROM artifacts WHERE id = ? AND tombstoned_at IS NULL",
                               [input["artifactID"]]).fetchone()
            if row is None:
                raise GraphQLError(f"artifact {input['artifactID']} not found")
            art = dict(row)
            if art["state"] != "COMMITTED":
                if not art["manifest_md5"]:
                    raise GraphQLError(f"artifact {art['id']}: its manifest was not uploaded")
                missing = [r["path"] for r in conn.execute(
                    "SELECT path, md5 FROM artifact_files WHERE artifact_pk = ? AND md5 IS NOT NULL", [art["pk"]])
                    if not ctx.objects.has(r["md5"])]
                if missing:
                    raise GraphQLError(f"artifact {art['id']}: {len(missing)} file(s) not uploaded, e.g. {missing[0]!r}")
                t = bumped(art["updated_at"])
                conn.execute("UPDATE artifacts SET state = 'COMMITTED', updated_at = ? WHERE pk = ?", [t, art["pk"]])
                newest = conn.execute(
                    "SELECT MAX(version_index) FROM artifacts WHERE collection_pk = ? AND state = 'COMMITTED' "
                    "AND tombstoned_at IS NULL", [art["collection_pk"]]).fetchone()[0]
                names = _alias_names(art["aliases"])
                if newest == art["version_index"]:
                    names = ["latest", *[a for a in names if a != "latest"]]
                art["aliases"] = "[]"
                take_aliases(conn, art, names, t)
                if art["producer_run_pk"] is not None:
                    touch_run(conn, art["producer_run_pk"])
        return {"artifact": N.artifact_by_id(ctx, input["artifactID"])}


def store_manifest(conn: sqlite3.Connection, objects: Any, artifact_id: str, body: bytes) -> str | None:
    """The PUT of a manifest: entries, size, count and digest of a PENDING version. An error text, or None."""
    row = conn.execute("SELECT pk, state, digest_algorithm FROM artifacts WHERE id = ? AND tombstoned_at IS NULL",
                       [artifact_id]).fetchone()
    if row is None:
        return f"artifact {artifact_id} not found"
    try:
        manifest = json.loads(body)
        contents = manifest["contents"]
        if manifest.get("version") != 1 or not isinstance(contents, dict):
            raise ValueError("not a v1 manifest")
        entries = []
        for path, e in contents.items():
            digest, size = str(e["digest"]), int(e.get("size") or 0)
            extra = e.get("extra") or {}
            md5 = None
            if not e.get("ref") and str(extra.get("alg", "")).upper() != "XXH128":
                md5 = ids.content_md5_hex(digest)
            entries.append((row["pk"], path, digest, size, md5, e.get("ref"),
                            e.get("birthArtifactID") or (None if e.get("ref") else artifact_id), json.dumps(extra)))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"manifest of artifact {artifact_id} is not a valid v1 manifest: {e}"
    if row["state"] == "COMMITTED":
        return None  # a committed version is immutable; a replayed PUT changes nothing
    announced = {r["path"]: r["md5"] for r in conn.execute("SELECT path, md5 FROM artifact_files WHERE artifact_pk = ?",
                                                            [row["pk"]])}
    entries = [(*e[:4], e[4] or (None if e[5] else announced.get(e[1])), *e[5:]) for e in entries]
    try:
        digest = manifest_digest({p: contents[p]["digest"] for p in contents}, row["digest_algorithm"] or "MANIFEST_MD5")
    except ValueError as e:
        return str(e)
    info = objects.put_bytes(body)
    conn.execute("DELETE FROM artifact_files WHERE artifact_pk = ?", [row["pk"]])
    conn.executemany("INSERT INTO artifact_files (artifact_pk, path, digest, size, md5, ref, birth_artifact_id, extra) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", entries)
    conn.execute("UPDATE artifacts SET manifest_md5 = ?, digest = ?, size = ?, file_count = ? WHERE pk = ?",
                 [info.md5, digest, sum(e[3] for e in entries), len(entries), row["pk"]])
    return None
