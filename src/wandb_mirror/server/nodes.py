"""GraphQL object values: small classes whose attributes/methods are named like the SDL fields.

graphql-core's default field resolver reads `getattr(node, fieldName)` and calls it with
`(info, **args)` when it is a method, so each class below *is* the resolver set of one SDL type;
nothing is computed unless the query selects it (W&B's client reacts to extra fields, and the
benchmark rewards laziness). Served ids are the stored upstream ids; synthetic ids are minted with
`ids.py` only when a seeded row has none.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids
from ..jsontext import from_catalog
from ..models import loads_lenient
from ..store.history import History
from . import filters as F
from . import parquet as PQ
from .data import Data, parse_filters
from .guard import MAX_ANSWER_ROWS
from .org import EntityOrgFields
from .urls import Urls

EPOCH = "1970-01-01T00:00:00"


@dataclass
class Ctx:
    """Per-request context (`info.context`)."""

    data: Data
    conn: sqlite3.Connection
    objects: Any  # store.Objects
    urls: Urls
    read_only: bool
    features: list[str]
    memo: dict[Any, Any] = field(default_factory=dict)
    export_delay: float = 0.0  # `serve --parquet-export-delay`


def ctx_of(info: GraphQLResolveInfo) -> Ctx:
    return info.context


# ------------------------------------------------------------------------------------------ helpers
def encode_cursor(kind: str, value: Any) -> str:
    return base64.b64encode(json.dumps([kind, value], separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None, kind: str) -> Any:
    if not cursor:
        return None
    try:
        k, v = json.loads(base64.b64decode(cursor.encode()).decode())
    except (ValueError, TypeError):
        raise GraphQLError(f"invalid cursor {cursor!r}") from None
    if k != kind:
        raise GraphQLError(f"cursor {cursor!r} does not belong to this connection")
    return v


def page_list(items: list[Any], after: str | None, first: int | None, kind: str,
              key=lambda it: None) -> tuple[list[tuple[Any, str]], bool]:
    """Relay paging over an in-memory list. The cursor holds the item's key and position, so a page
    boundary survives inserts/deletes before it (the key is found again) and falls back to the
    position when the item itself went away."""
    start = 0
    cur = decode_cursor(after, kind)
    if cur is not None:
        ckey, cpos = cur
        start = int(cpos) + 1
        if ckey is not None:
            for i, it in enumerate(items):
                if key(it) == ckey:
                    start = i + 1
                    break
    end = len(items) if first is None else start + max(0, int(first))
    page = [(it, encode_cursor(kind, [key(it), start + i])) for i, it in enumerate(items[start:end])]
    return page, end < len(items)


def connection(page: list[tuple[Any, str]], has_next: bool, total: int | None = None,
               edge_extra=None) -> dict[str, Any]:
    edges = []
    for node, cursor in page:
        e = {"node": node, "cursor": cursor}
        if edge_extra:
            e.update(edge_extra(node))
        edges.append(e)
    conn: dict[str, Any] = {
        "edges": edges,
        "pageInfo": {
            "endCursor": page[-1][1] if page else None,
            "hasNextPage": has_next,
            "startCursor": page[0][1] if page else None,
            "hasPreviousPage": False,
        },
    }
    if total is not None:
        conn["totalCount"] = total
    return conn


def empty_connection(total: int | None = 0) -> dict[str, Any]:
    return connection([], False, total)


def finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def guess_mimetype(name: str) -> str:
    mt, _ = mimetypes.guess_type(name)
    return mt or "application/octet-stream"


def loads_or(text: Any, default: Any) -> Any:
    try:
        return loads_lenient(text, default)
    except ValueError:
        return default


def sample_indices(n: int, samples: int | None) -> range | list[int]:
    """Deterministic downsampling: evenly spaced indices, always keeping the first and last row.
    An answer of more than MAX_ANSWER_ROWS rows is refused (the guard let its `samples` through)."""
    if min(n, n if samples is None or samples < 0 else samples) > MAX_ANSWER_ROWS:
        raise GraphQLError(f"the answer would hold {n} rows, over {MAX_ANSWER_ROWS}: ask a narrower step range "
                           "or fewer samples")
    if samples is None or samples < 0 or n <= samples:
        return range(n)
    if samples == 0:
        return []
    if samples == 1:
        return [n - 1]
    return [round(i * (n - 1) / (samples - 1)) for i in range(samples)]


def default_entity(ctx: Ctx) -> str:
    def load() -> str:
        c = ctx.conn
        for sql in (
            "SELECT value FROM meta WHERE key = 'default_entity'",
            "SELECT name FROM entities ORDER BY rowid LIMIT 1",
            "SELECT entity FROM projects ORDER BY pk LIMIT 1",
            "SELECT username FROM users ORDER BY rowid LIMIT 1",
        ):
            row = c.execute(sql).fetchone()
            if row and row[0]:
                return row[0]
        return "mirror"

    return ctx.data.cached(ctx.data.misc_cache, "default_entity", load)


def get_project(ctx: Ctx, entity: str | None, name: str | None) -> dict[str, Any] | None:
    if not name:
        return None
    return ctx.data.projects(ctx.conn).get((entity or default_entity(ctx), name))


# ------------------------------------------------------------------------------------------ users
class EntityNode(EntityOrgFields):
    def __init__(self, name: str, row: dict[str, Any] | None = None):
        self.name = name
        row = row or {}
        self.id = row.get("id") or ids.typed_id("Entity", name)
        self.isTeam = bool(row.get("is_team"))
        self.photoUrl = None


def entity_node(ctx: Ctx, name: str) -> EntityNode:
    row = ctx.memo.get(("entity", name))
    if row is None:
        r = ctx.conn.execute("SELECT * FROM entities WHERE name = ?", [name]).fetchone()
        row = ctx.memo[("entity", name)] = dict(r) if r else {}
    return EntityNode(name, row)


class UserNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self.id = row.get("id") or ids.typed_id("User", row["username"])
        self.username = row["username"]
        self.name = row.get("name") or row["username"]
        self.email = row.get("email")
        self.admin = bool(row.get("admin"))
        self.flags = "{}"
        self.entity = row.get("entity") or row["username"]
        self.deletedAt = None
        self.photoUrl = None
        self.apiKeys: dict[str, list[Any]] = {"edges": []}

    def teams(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        names = loads_or(self._row.get("teams"), []) or []
        if not names:
            names = [r[0] for r in self._ctx.conn.execute("SELECT name FROM entities WHERE is_team = 1 ORDER BY name")]
        nodes = [entity_node(self._ctx, n if isinstance(n, str) else n.get("name", "")) for n in names]
        return {"edges": [{"node": n, "cursor": None} for n in nodes], "pageInfo": None}

    def organizations(self, info: GraphQLResolveInfo) -> list[Any]:
        from .org import user_organizations

        return user_organizations(self._ctx, self.username)


def user_node(ctx: Ctx, username: str | None) -> UserNode | None:
    if not username:
        return None
    r = ctx.conn.execute("SELECT * FROM users WHERE username = ?", [username]).fetchone()
    return UserNode(ctx, dict(r) if r else {"username": username})


def viewer_node(ctx: Ctx) -> UserNode:
    ent = default_entity(ctx)
    who = ctx.conn.execute("SELECT value FROM meta WHERE key = 'viewer'").fetchone()
    r = ctx.conn.execute("SELECT * FROM users WHERE username = ?", [who[0]]).fetchone() if who else None
    if r is None:
        r = ctx.conn.execute(
            "SELECT * FROM users WHERE entity = ? OR username = ? ORDER BY (username = ?) DESC, rowid LIMIT 1",
            [ent, ent, ent]
        ).fetchone()
    if r is None:
        r = ctx.conn.execute("SELECT * FROM users ORDER BY rowid LIMIT 1").fetchone()
    row = dict(r) if r else {"username": ent, "id": ids.typed_id("User", 1)}
    row["entity"] = ent  # the viewer's default entity is the store's
    return UserNode(ctx, row)


# ------------------------------------------------------------------------------------------ projects
class ProjectNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self.pk = row["pk"]
        self.name = row["name"]
        self.entityName = row["entity"]
        self.internalId = str(row["internal_id"] if row["internal_id"] is not None else row["pk"])
        self.id = row["id"] or ids.project_id(self.internalId)
        self.description = row["description"]
        self.views = None
        self.createdAt = row["created_at"] or EPOCH
        self.updatedAt = row["updated_at"]
        self.isBenchmark = False
        self.readOnly = False

    def entity(self, info: GraphQLResolveInfo) -> EntityNode:
        return entity_node(self._ctx, self.entityName)

    def user(self, info: GraphQLResolveInfo) -> UserNode | None:
        return user_node(self._ctx, self._row.get("username") or self.entityName)

    # runs
    def _query(self, filters: Any, order: str | None) -> list[dict[str, Any]]:
        try:
            return self._ctx.data.query_runs(self._ctx.conn, self._row, filters, order)
        except F.FilterError as e:
            raise GraphQLError(str(e)) from None

    def runCount(self, info: GraphQLResolveInfo, filters: Any = None) -> int:
        return len(self._query(filters, None))

    def runs(self, info: GraphQLResolveInfo, filters: Any = None, after: str | None = None, before: str | None = None,
             first: int | None = None, last: int | None = None, order: str | None = None) -> dict[str, Any]:
        rows = self._query(filters, order)
        page, has_next = page_list(rows, after, first, "runs", key=lambda r: r["pk"])
        return connection([(RunNode(self._ctx, r, self._row), c) for r, c in page], has_next, len(rows))

    def run(self, info: GraphQLResolveInfo, name: str) -> RunNode | None:
        r = self._ctx.conn.execute(
            "SELECT * FROM runs WHERE project_pk = ? AND run_id = ? AND tombstoned_at IS NULL", [self.pk, name]
        ).fetchone()
        return RunNode(self._ctx, dict(r), self._row) if r else None

    def bucket(self, info: GraphQLResolveInfo, name: str, missingOk: bool | None = None) -> RunNode | None:
        return self.run(info, name)

    # sweeps
    def _sweeps(self) -> list[dict[str, Any]]:
        return F.upstream_order([dict(r) for r in self._ctx.conn.execute(
            "SELECT * FROM sweeps WHERE project_pk = ? AND tombstoned_at IS NULL", [self.pk])], newest_first=True)

    def totalSweeps(self, info: GraphQLResolveInfo) -> int:
        return self._ctx.conn.execute(
            "SELECT count(*) FROM sweeps WHERE project_pk = ? AND tombstoned_at IS NULL", [self.pk]).fetchone()[0]

    def sweep(self, info: GraphQLResolveInfo, sweepName: str) -> SweepNode | None:
        r = self._ctx.conn.execute(
            "SELECT * FROM sweeps WHERE project_pk = ? AND name = ? AND tombstoned_at IS NULL", [self.pk, sweepName]
        ).fetchone()
        return SweepNode(self._ctx, dict(r), self._row) if r else None

    def sweeps(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
               filters: Any = None) -> dict[str, Any]:
        rows = select_rows(self._sweeps(), filters, None, _sweep_doc)
        page, has_next = page_list(rows, after, first, "sweeps", key=lambda r: r["pk"])
        return connection([(SweepNode(self._ctx, r, self._row), c) for r, c in page], has_next)

    # reports
    def allViews(self, info: GraphQLResolveInfo, viewType: str | None = None, viewName: str | None = None,
                 first: int | None = None, after: str | None = None) -> dict[str, Any]:
        sql = "SELECT * FROM reports WHERE project_pk = ? AND tombstoned_at IS NULL"
        args: list[Any] = [self.pk]
        if viewName:
            sql += " AND (name = ? OR display_name = ?)"
            args += [viewName, viewName]
        rows = F.upstream_order([dict(r) for r in self._ctx.conn.execute(sql, args)], newest_first=True)
        page, has_next = page_list(rows, after, first, "views", key=lambda r: r["pk"])
        return connection([(ViewNode(self._ctx, r), c) for r, c in page], has_next)

    # artifacts
    def artifactType(self, info: GraphQLResolveInfo, name: str) -> ArtifactTypeNode | None:
        types = artifact_types(self._ctx, self._row)
        row = next((t for t in types if t["name"] == name), None)
        return ArtifactTypeNode(self._ctx, self._row, row) if row else None

    def access(self, info: GraphQLResolveInfo) -> str:
        from .registries import registry_settings

        return registry_settings(self._ctx.conn, self.pk)["access"] or "PRIVATE"

    def allowAllArtifactTypesInRegistry(self, info: GraphQLResolveInfo) -> bool:
        from .registries import registry_settings

        return bool(registry_settings(self._ctx.conn, self.pk)["allow_all_types"])

    def artifactTypes(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
                      includeAll: bool | None = None) -> dict:
        types = artifact_types(self._ctx, self._row)
        if includeAll:  # a registry's allowed types, used or not
            from .registries import registry_settings

            allowed = loads_or(registry_settings(self._ctx.conn, self.pk)["artifact_types"], []) or []
            types = types + [{"name": t} for t in allowed if t not in {x["name"] for x in types}]
        page, has_next = page_list(types, after, first, "types", key=lambda t: t["name"])
        return connection([(ArtifactTypeNode(self._ctx, self._row, t), c) for t, c in page], has_next)

    def artifactCollection(self, info: GraphQLResolveInfo, name: str) -> CollectionNode | None:
        r = self._ctx.conn.execute(
            "SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ? AND tombstoned_at IS NULL",
            [self.pk, name]).fetchone()
        return CollectionNode(self._ctx, dict(r), self._row) if r else None

    def artifactCollections(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
                            filters: Any = None, order: str | None = None) -> dict[str, Any]:
        return collections_connection(self._ctx, self._row, None, after, first, filters, order)

    def artifactCollectionMembership(self, info: GraphQLResolveInfo, name: str) -> Any:
        from .registries import membership_by_name

        link = membership_by_name(self._ctx, self._row, name)
        if link is not None:
            return link
        art = artifact_by_name(self._ctx, self._row, name)
        return MembershipNode(art) if art else None

    def artifact(self, info: GraphQLResolveInfo, name: str) -> ArtifactNode | None:
        return artifact_by_name(self._ctx, self._row, name)


def _sweep_doc(r: dict[str, Any]) -> dict[str, Any]:
    return {"name": r["name"], "displayName": r["display_name"], "state": r["state"], "method": r["method"],
            "createdAt": r["created_at"], "updatedAt": r["updated_at"], "description": r["description"]}


# ------------------------------------------------------------------------------------------ runs
class RunNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any], project: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self._project = project
        self._heavy_row: dict[str, Any] | None = None
        self.pk = row["pk"]
        self.name = row["run_id"]
        self.id = row["storage_id"] or ids.run_storage_id(project["entity"], project["name"], row["run_id"])
        self.projectId = str(project["internal_id"] if project["internal_id"] is not None else project["pk"])
        self.displayName = row["display_name"]
        self.description = row["description"]
        self.notes = row["notes"]
        self.state = row["state"]
        self.group = row["group_name"]
        self.jobType = row["job_type"]
        self.commit = row["commit_hash"]
        self.host = row["host"]
        self.sweepName = row["sweep_name"]
        self.readOnly = bool(row["read_only"])
        self.stopped = False
        self.shouldStop = False
        self.createdAt = row["created_at"] or EPOCH
        self.updatedAt = row["updated_at"]
        self.heartbeatAt = row["heartbeat_at"]
        self.historyLineCount = row["history_line_count"]
        self.eventsLineCount = row["events_line_count"]

    def _heavy(self) -> dict[str, Any]:
        if self._heavy_row is None:
            r = self._ctx.conn.execute(
                "SELECT config, summary, system_metrics, history_keys FROM runs WHERE pk = ?", [self.pk]).fetchone()
            # the text upstream sent (NaN/Infinity tokens back from the catalog's strict JSON)
            self._heavy_row = {k: from_catalog(v) for k, v in dict(r).items()} if r else {"config": "{}", "summary": "{}", "system_metrics": "{}",
                                                 "history_keys": "{}"}
        return self._heavy_row

    def tags(self, info: GraphQLResolveInfo) -> list[str]:
        return list(loads_or(self._row["tags"], []) or [])

    def config(self, info: GraphQLResolveInfo) -> str:
        return self._heavy()["config"] or "{}"

    def summaryMetrics(self, info: GraphQLResolveInfo) -> str:
        return self._heavy()["summary"] or "{}"

    def systemMetrics(self, info: GraphQLResolveInfo) -> str:
        return self._heavy()["system_metrics"] or "{}"

    def historyKeys(self, info: GraphQLResolveInfo) -> Any:
        hk = loads_or(self._heavy()["history_keys"], {}) or {}
        if not isinstance(hk, dict):
            hk = {}
        if "lastStep" not in hk:
            last = self._row.get("last_step")
            if not isinstance(last, int) or last < 0:
                last = self._history().last_step(self.pk)
            hk = {"lastStep": last if last is not None else -1, **hk}
        hk.setdefault("keys", {})
        return hk

    def user(self, info: GraphQLResolveInfo) -> dict[str, Any] | None:
        if not self._row["username"] and not self._row["user_display_name"]:
            return None
        return {"name": self._row["user_display_name"] or self._row["username"], "username": self._row["username"],
                "id": ids.typed_id("User", self._row["username"] or ""), "entity": self._row["username"],
                "email": None, "admin": False, "flags": "{}", "deletedAt": None, "photoUrl": None,
                "apiKeys": {"edges": []}, "teams": {"edges": []}}

    def project(self, info: GraphQLResolveInfo) -> ProjectNode:
        return ProjectNode(self._ctx, self._project)

    def sweep(self, info: GraphQLResolveInfo) -> SweepNode | None:
        if not self.sweepName:
            return None
        return ProjectNode(self._ctx, self._project).sweep(info, self.sweepName)

    def fileCount(self, info: GraphQLResolveInfo) -> int:
        return self._ctx.conn.execute(
            "SELECT count(*) FROM files WHERE run_pk = ? AND tombstoned_at IS NULL", [self.pk]).fetchone()[0]

    # history -----------------------------------------------------------------------------------
    def _history(self) -> History:
        return History(None, self._ctx.objects, lambda: self._ctx.conn)

    def history(self, info: GraphQLResolveInfo, samples: int | None = None, minStep: int | None = None,
                maxStep: int | None = None) -> list[str]:
        # maxStep is exclusive, as W&B's HistoryPage; the reader stops at the run's lastStep
        rows = [t for _, t in self._history().texts(
            self.pk, min_step=None if minStep is None else int(minStep),
            max_step=None if maxStep is None else int(maxStep))]
        return [rows[i] for i in sample_indices(len(rows), samples)]

    def events(self, info: GraphQLResolveInfo, samples: int | None = None) -> list[str]:
        rows = [r[0] for r in self._ctx.conn.execute("SELECT row FROM events WHERE run_pk = ? ORDER BY seq", [self.pk])]
        return [from_catalog(rows[i]) for i in sample_indices(len(rows), samples)]

    def sampledHistory(self, info: GraphQLResolveInfo, specs: list[Any]) -> list[list[dict[str, Any]]]:
        out = []
        for spec in specs:
            if isinstance(spec, str):
                try:
                    spec = json.loads(spec)
                except ValueError:
                    raise GraphQLError(f"sampledHistory spec is not JSON: {spec!r}") from None
            if not isinstance(spec, dict):
                raise GraphQLError("sampledHistory spec must be a JSON object")
            keys = [k for k in spec.get("keys") or [] if isinstance(k, str)]
            lo, hi = spec.get("minStep"), spec.get("maxStep")  # maxStep is inclusive for sampledHistory
            rows = []
            for _, row in self._history().rows(self.pk, min_step=None if lo is None else int(lo),
                                                max_step=None if hi is None else int(hi) + 1,
                                                keys=keys or None):
                picked = {}
                for k in keys:
                    v = row[k] if k in row else F._walk(row, k.split("."))
                    if v is F.MISSING or v is None:  # W&B keeps only rows holding every key
                        break
                    picked[k] = v
                else:
                    rows.append(picked if keys else row)
            samples = spec.get("samples")
            out.append([rows[i] for i in sample_indices(len(rows), int(samples) if samples is not None else None)])
        return out

    def parquetHistory(self, info: GraphQLResolveInfo, liveKeys: list[str]) -> dict[str, Any]:
        p = self._project
        prefix = f"{p['entity']}_{p['name']}_{self.name}"
        return PQ.parquet_history(self._ctx.conn, self._history(), self.pk, prefix, liveKeys,
                                  self._ctx.export_delay, self._ctx.urls.signed)

    def logLineCount(self, info: GraphQLResolveInfo) -> int:
        from .console import line_count

        return line_count(self._ctx.conn, self.pk)

    def logLines(self, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None,
                 last: int | None = None, **kw: Any) -> dict[str, Any]:
        from .console import log_lines

        return log_lines(self._ctx.conn, self.pk, first=first, after=after, last=last)

    # files -------------------------------------------------------------------------------------
    def files(self, info: GraphQLResolveInfo, names: list[str] | None = None, after: str | None = None,
              first: int | None = None, pattern: str | None = None) -> dict[str, Any]:
        where, args = "run_pk = ? AND tombstoned_at IS NULL", [self.pk]
        names = [n for n in (names or []) if n is not None]
        if names:
            where += f" AND name IN ({','.join('?' * len(names))})"
            args += names
        if pattern:
            # W&B documents MySQL LIKE (% and _, backslash escapes); SQLite LIKE + ESCAPE is the same
            where += " AND name LIKE ? ESCAPE '\\'"
            args.append(pattern)
        total = self._ctx.conn.execute(f"SELECT count(*) FROM files WHERE {where}", args).fetchone()[0]
        after_name = decode_cursor(after, "files")
        page_where, page_args = where, list(args)
        if after_name is not None:
            page_where += " AND name > ?"
            page_args.append(after_name)
        sql = f"SELECT * FROM files WHERE {page_where} ORDER BY name"
        if first is not None:
            sql += f" LIMIT {int(first) + 1}"
        rows = [dict(r) for r in self._ctx.conn.execute(sql, page_args)]
        has_next = first is not None and len(rows) > int(first)
        rows = rows[: int(first)] if first is not None else rows
        return connection([(RunFileNode(self._ctx, r, self._project, self.name), encode_cursor("files", r["name"]))
                           for r in rows], has_next, total)

    # artifacts ---------------------------------------------------------------------------------
    def outputArtifacts(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict:
        rows = self._ctx.conn.execute(
            "SELECT a.* FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
            f"WHERE a.producer_run_pk = ? AND a.tombstoned_at IS NULL AND c.tombstoned_at IS NULL AND {LIVE_A} "
            "ORDER BY a.created_at, c.name, a.version_index", [self.pk]).fetchall()
        return artifact_connection(self._ctx, [dict(r) for r in rows], after, first, "out")

    def inputArtifacts(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict:
        rows = self._ctx.conn.execute(
            "SELECT a.* FROM artifact_usage u JOIN artifacts a ON a.pk = u.artifact_pk "
            "JOIN artifact_collections c ON c.pk = a.collection_pk "
            f"WHERE u.run_pk = ? AND a.tombstoned_at IS NULL AND c.tombstoned_at IS NULL AND {LIVE_A} "
            "ORDER BY a.created_at, c.name, a.version_index",
            [self.pk]).fetchall()
        return artifact_connection(self._ctx, [dict(r) for r in rows], after, first, "in")


def run_node_by_pk(ctx: Ctx, run_pk: int | None) -> RunNode | None:
    if run_pk is None:
        return None
    r = ctx.conn.execute("SELECT * FROM runs WHERE pk = ? AND tombstoned_at IS NULL", [run_pk]).fetchone()
    if not r:
        return None
    project = ctx.data.project_by_pk(ctx.conn, r["project_pk"])
    return RunNode(ctx, dict(r), project) if project else None


class RunFileNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any], project: dict[str, Any], run_name: str):
        self._ctx = ctx
        self._row = row
        self._project = project
        self._run = run_name
        self.id = row["id"] or ids.typed_id("File", row["pk"])
        self.name = row["name"]
        self.displayName = row["name"]
        self.sizeBytes = row["size"]
        self.md5 = ids.md5_hex_to_b64(row["md5"])
        self.digest = self.md5
        self.mimetype = row["mimetype"] or guess_mimetype(row["name"])
        self.updatedAt = row["updated_at"]
        self.storagePath = None
        self.uploadUrl = None

    def url(self, info: GraphQLResolveInfo, upload: bool | None = None) -> str:
        return self._ctx.urls.run_file(self._project["entity"], self._project["name"], self._run, self.name)

    def directUrl(self, info: GraphQLResolveInfo) -> str:
        return self._ctx.urls.object(self._row["md5"], self.name)


# ------------------------------------------------------------------------------------------ sweeps, reports
class SweepNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any], project: dict[str, Any]):
        self._ctx = ctx
        self.id = row["id"] or ids.typed_id("Sweep", row["pk"])
        self.name = row["name"]
        self.displayName = row["display_name"]
        self.method = row["method"] or _method_from_yaml(row["config"]) or "grid"
        self.state = row["state"] or "FINISHED"
        self.description = row["description"]
        self.bestLoss = finite_or_none(row["best_loss"])
        self.config = row["config"] or ""
        self.createdAt = row["created_at"] or EPOCH
        self.updatedAt = row["updated_at"]
        self.runCount = row["run_count"] or 0
        self.runCountExpected = row["run_count_expected"]
        self.agents: dict[str, list[Any]] = {"edges": []}

    def agent(self, info: GraphQLResolveInfo, agentName: str) -> None:
        return None


def _method_from_yaml(text: str | None) -> str | None:
    for line in (text or "").splitlines():
        if line.startswith("method:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


class ViewNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self.id = row["id"]
        self.name = row["name"]
        self.displayName = row["display_name"]
        self.description = row["description"]
        self.spec = from_catalog(row["spec"]) or "{}"
        self.createdAt = row["created_at"]
        self.updatedAt = row["updated_at"]

    def user(self, info: GraphQLResolveInfo) -> UserNode | None:
        return user_node(self._ctx, self._row["username"])


# ------------------------------------------------------------------------------------------ artifacts
# A version is listed, and found by name or alias, only once committed: W&B hides drafts (PENDING,
# which the official client cannot even build: `assert artifact.id is not None`) and DELETED versions
# from every listing and `name:vN` lookup. `artifact(id:)` still answers with the stored state.
LIVE = "COALESCE(state, 'COMMITTED') = 'COMMITTED'"
LIVE_A = "COALESCE(a.state, 'COMMITTED') = 'COMMITTED'"


def artifact_types(ctx: Ctx, project: dict[str, Any]) -> list[dict[str, Any]]:
    """Declared artifact types plus any type a collection uses without a row of its own."""
    rows = {r["name"]: dict(r) for r in ctx.conn.execute(
        "SELECT * FROM artifact_types WHERE project_pk = ?", [project["pk"]])}
    for (name, created) in ctx.conn.execute(
            "SELECT type_name, MIN(created_at) FROM artifact_collections WHERE project_pk = ? AND tombstoned_at IS NULL "
            "GROUP BY type_name", [project["pk"]]):
        rows.setdefault(name, {"pk": None, "name": name, "id": None, "description": None, "created_at": created})
    return F.upstream_order(list(rows.values()))


class TagNode:
    def __init__(self, name: str, owner: str):
        self.name = name
        self.id = ids.typed_id("Tag", f"{owner}:{name}")


class ArtifactTypeNode:
    def __init__(self, ctx: Ctx, project: dict[str, Any], row: dict[str, Any]):
        self._ctx = ctx
        self._project = project
        self.name = row["name"]
        self.id = row.get("id") or ids.typed_id("ArtifactType", f"{project['pk']}:{row['name']}")
        self.description = row.get("description")
        self.createdAt = row.get("created_at") or EPOCH

    def artifactCollection(self, info: GraphQLResolveInfo, name: str) -> CollectionNode | None:
        r = self._ctx.conn.execute(
            "SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ? AND type_name = ? "
            "AND tombstoned_at IS NULL", [self._project["pk"], name, self.name]).fetchone()
        return CollectionNode(self._ctx, dict(r), self._project) if r else None

    def artifactCollections(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
                            filters: Any = None, order: str | None = None) -> dict[str, Any]:
        return collections_connection(self._ctx, self._project, self.name, after, first, filters, order)


def _collection_doc(r: dict[str, Any]) -> dict[str, Any]:
    return {"name": r["name"], "description": r["description"], "createdAt": r["created_at"],
            "updatedAt": r["updated_at"], "tags": loads_or(r["tags"], []) or [], "type": r["type_name"],
            "id": r["id"], "state": "READY"}


def select_rows(rows: list[dict[str, Any]], filters: Any, order: str | None,
                doc_of: Any) -> list[dict[str, Any]]:
    """The rows matching a `filters` argument, in `order`; a bad filter is a GraphQL error."""
    try:
        flt = parse_filters(filters)
        key, desc = F.parse_order(order) if order else (None, False)
        if not flt and key is None:
            return rows
        docs = [(doc_of(r), r) for r in rows]  # each row's filter document, built once
        if flt:
            docs = [d for d in docs if F.matches(d[0], flt)]
        if key is not None:
            docs = F.sort_docs(docs, lambda d: F.lookup(d[0], key), desc)
    except F.FilterError as e:
        raise GraphQLError(str(e)) from None
    return [r for _, r in docs]


def collections_connection(ctx: Ctx, project: dict[str, Any], type_name: str | None, after: str | None,
                           first: int | None, filters: Any, order: str | None) -> dict[str, Any]:
    sql, args = "SELECT * FROM artifact_collections WHERE project_pk = ? AND tombstoned_at IS NULL", [project["pk"]]
    if type_name is not None:
        sql += " AND type_name = ?"
        args.append(type_name)
    rows = F.upstream_order([dict(r) for r in ctx.conn.execute(sql, args)], newest_first=True)
    rows = select_rows(rows, filters, order, _collection_doc)
    page, has_next = page_list(rows, after, first, "collections", key=lambda r: r["pk"])
    return connection([(CollectionNode(ctx, r, project), c) for r, c in page], has_next, len(rows))


class AliasNode:
    def __init__(self, ctx: Ctx, alias: str, artifact_id: str, collection: dict[str, Any], project: dict[str, Any]):
        self._ctx = ctx
        self._collection = collection
        self._project = project
        self.alias = alias
        self.id = ids.typed_id("ArtifactAlias", f"{artifact_id}:{alias}")

    def artifactCollection(self, info: GraphQLResolveInfo) -> CollectionNode:
        return CollectionNode(self._ctx, self._collection, self._project)


class CollectionNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any], project: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self._project = project
        self.typename = "ArtifactPortfolio" if (row.get("kind") or "").upper() == "PORTFOLIO" else "ArtifactSequence"
        self.pk = row["pk"]
        self.id = row["id"] or ids.typed_id(self.typename, row["pk"])
        self.name = row["name"]
        self.description = row["description"]
        self.createdAt = row["created_at"] or EPOCH
        self.updatedAt = row["updated_at"]

    def project(self, info: GraphQLResolveInfo) -> ProjectNode:
        return ProjectNode(self._ctx, self._project)

    def defaultArtifactType(self, info: GraphQLResolveInfo) -> ArtifactTypeNode:
        types = artifact_types(self._ctx, self._project)
        row = next((t for t in types if t["name"] == self._row["type_name"]), {"name": self._row["type_name"]})
        return ArtifactTypeNode(self._ctx, self._project, row)

    def tags(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        names = loads_or(self._row["tags"], []) or []
        return {"edges": [{"node": TagNode(n, self.id)} for n in names if isinstance(n, str)]}

    def _versions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._ctx.conn.execute(
            f"SELECT * FROM artifacts WHERE collection_pk = ? AND tombstoned_at IS NULL AND {LIVE} "
            "ORDER BY version_index DESC", [self.pk])]

    def aliases(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None) -> dict:
        items = []
        if self.typename == "ArtifactPortfolio":
            from .registries import collection_members

            items = [al for m in collection_members(self._ctx, self._row, self._project) for al in m.aliases(info)]
        for a in self._versions():
            for al in loads_or(a["aliases"], []) or []:
                items.append(AliasNode(self._ctx, _alias_name(al), a["id"], self._row, self._project))
        page, has_next = page_list(items, after, first, "aliases", key=lambda n: n.id)
        return connection(page, has_next)

    def artifactMembership(self, info: GraphQLResolveInfo, aliasName: str) -> Any:
        if self.typename == "ArtifactPortfolio":
            from .registries import membership

            return membership(self._ctx, self._row, self._project, aliasName)
        row = _version_row(self._ctx, self.pk, aliasName)
        return MembershipNode(ArtifactNode(self._ctx, row, self._row, self._project)) if row else None

    def artifacts(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None,
                  order: str | None = None, filters: Any = None) -> dict[str, Any]:
        if self.typename == "ArtifactPortfolio":
            from .registries import collection_members

            members = [m for m in collection_members(self._ctx, self._row, self._project) if m.artifact()]
            page, has_next = page_list(members, after, first, "versions", key=lambda m: m.id)
            index = {id(m.artifact()): m.versionIndex for m, _ in page}  # the link's version, not the source's
            return connection([(m.artifact(), c) for m, c in page], has_next, len(members),
                              edge_extra=lambda n: {"version": f"v{index[id(n)]}"})
        rows = select_rows(self._versions(), filters, order, _artifact_doc)
        page, has_next = page_list(rows, after, first, "versions", key=lambda r: r["pk"])
        nodes = [(ArtifactNode(self._ctx, r, self._row, self._project), c) for r, c in page]
        return connection(nodes, has_next, len(rows), edge_extra=lambda n: {"version": f"v{n.versionIndex}"})

    def latestArtifact(self, info: GraphQLResolveInfo) -> ArtifactNode | None:
        rows = self._versions()
        return ArtifactNode(self._ctx, rows[0], self._row, self._project) if rows else None


def _alias_name(al: Any) -> str:
    return al if isinstance(al, str) else str(al.get("alias", ""))


def _artifact_doc(r: dict[str, Any]) -> dict[str, Any]:
    return {"state": r["state"], "versionIndex": r["version_index"], "createdAt": r["created_at"],
            "updatedAt": r["updated_at"], "digest": r["digest"], "id": r["id"], "size": r["size"],
            "aliases": [_alias_name(a) for a in loads_or(r["aliases"], []) or []],
            "alias": [_alias_name(a) for a in loads_or(r["aliases"], []) or []],
            "tags": loads_or(r["tags"], []) or [], "description": r["description"],
            "metadata": loads_or(r["metadata"], {}) or {}}


def _version_row(ctx: Ctx, collection_pk: int, alias: str) -> dict[str, Any] | None:
    """A version by `vN` or by alias (`latest` included)."""
    if len(alias) > 1 and alias[0] == "v" and alias[1:].isdigit():
        r = ctx.conn.execute(
            f"SELECT * FROM artifacts WHERE collection_pk = ? AND version_index = ? AND tombstoned_at IS NULL AND {LIVE}",
            [collection_pk, int(alias[1:])]).fetchone()
        return dict(r) if r else None
    rows = ctx.conn.execute(
        f"SELECT * FROM artifacts WHERE collection_pk = ? AND tombstoned_at IS NULL AND {LIVE} "
        "ORDER BY version_index DESC", [collection_pk]).fetchall()
    for r in rows:
        if alias in [_alias_name(a) for a in loads_or(r["aliases"], []) or []]:
            return dict(r)
    if alias == "latest" and rows:  # W&B keeps `latest` on the newest version even when not stored
        return dict(rows[0])
    return None


def artifact_by_name(ctx: Ctx, project: dict[str, Any], name: str) -> ArtifactNode | None:
    coll_name, _, alias = name.rpartition(":")
    if not coll_name:
        coll_name, alias = name, "latest"
    c = ctx.conn.execute(
        "SELECT * FROM artifact_collections WHERE project_pk = ? AND name = ? AND tombstoned_at IS NULL",
        [project["pk"], coll_name]).fetchone()
    if not c:
        return None
    row = _version_row(ctx, c["pk"], alias)
    return ArtifactNode(ctx, row, dict(c), project) if row else None


def artifact_node_from_row(ctx: Ctx, row: dict[str, Any]) -> ArtifactNode | None:
    key = ("collection", row["collection_pk"])
    coll = ctx.memo.get(key)
    if coll is None:
        c = ctx.conn.execute("SELECT * FROM artifact_collections WHERE pk = ?", [row["collection_pk"]]).fetchone()
        if not c:
            return None
        coll = ctx.memo[key] = dict(c)
    project = ctx.data.project_by_pk(ctx.conn, coll["project_pk"])
    return ArtifactNode(ctx, row, coll, project) if project else None


def artifact_by_id(ctx: Ctx, artifact_id: str) -> ArtifactNode | None:
    r = ctx.conn.execute("SELECT * FROM artifacts WHERE id = ? AND tombstoned_at IS NULL", [artifact_id]).fetchone()
    return artifact_node_from_row(ctx, dict(r)) if r else None


def artifact_connection(ctx: Ctx, rows: list[dict[str, Any]], after: str | None, first: int | None,
                        kind: str) -> dict[str, Any]:
    page, has_next = page_list(rows, after, first, f"artifacts-{kind}", key=lambda r: r["pk"])
    nodes = [(artifact_node_from_row(ctx, r), c) for r, c in page]
    return connection([(n, c) for n, c in nodes if n is not None], has_next, len(rows))


class ArtifactFileNode:
    """A manifest entry served as a File."""

    def __init__(self, ctx: Ctx, art: ArtifactNode, row: dict[str, Any]):
        self._ctx = ctx
        self._art = art
        self._row = row
        self.id = ids.typed_id("File", f"{art.id}:{row['path']}")
        self.name = row["path"]
        self.displayName = row["path"]
        self.sizeBytes = row["size"]
        self.digest = row["digest"]
        self.md5 = ids.md5_hex_to_b64(row["md5"]) if row["md5"] else row["digest"]
        self.mimetype = guess_mimetype(row["path"])
        self.updatedAt = art.updatedAt or art.createdAt
        self.uploadUrl = None

    @property
    def storagePath(self) -> str | None:
        md5 = self._row["md5"]
        return f"wandb_artifacts/{md5}" if md5 else self._row["ref"]

    def url(self, info: GraphQLResolveInfo, upload: bool | None = None) -> str | None:
        md5 = self._row["md5"]
        if not md5:
            return self._row["ref"]
        a = self._art
        return self._ctx.urls.artifact_fallback(a._project["entity"], a._project["name"], a._coll["name"], a.id,
                                                self._row["birth_artifact_id"] or a.id, md5, self.name)

    def directUrl(self, info: GraphQLResolveInfo) -> str:
        md5 = self._row["md5"]
        if not md5:
            return self._row["ref"] or ""
        return self._ctx.urls.object(md5, self.name)


class ManifestFileNode:
    def __init__(self, ctx: Ctx, art: ArtifactNode):
        self._ctx = ctx
        self._art = art
        self.id = ids.typed_id("File", f"{art.id}:wandb_manifest.json")
        self.name = "wandb_manifest.json"
        self.displayName = self.name
        self.mimetype = "application/json"
        md5 = art._row["manifest_md5"]
        self.md5 = ids.md5_hex_to_b64(md5) if md5 else None
        self.digest = self.md5
        self.sizeBytes = ctx.objects.size(md5) if md5 and ctx.objects.has(md5) else 0
        self.updatedAt = art.createdAt
        self.storagePath = None
        self.uploadUrl = None

    def url(self, info: GraphQLResolveInfo, upload: bool | None = None) -> str:
        return self.directUrl(info)

    def directUrl(self, info: GraphQLResolveInfo) -> str:
        md5 = self._art._row["manifest_md5"]
        if md5 and self._ctx.objects.has(md5):
            return self._ctx.urls.object(md5, "wandb_manifest.json")
        return self._ctx.urls.manifest(self._art.id)


class ArtifactNode:
    def __init__(self, ctx: Ctx, row: dict[str, Any], coll: dict[str, Any], project: dict[str, Any]):
        self._ctx = ctx
        self._row = row
        self._coll = coll
        self._project = project
        self.pk = row["pk"]
        self.id = row["id"]
        self.versionIndex = row["version_index"]
        self.description = row["description"]
        self.metadata = from_catalog(row["metadata"]) or "{}"
        self.ttlDurationSeconds = row["ttl_duration_seconds"] if row["ttl_duration_seconds"] is not None else -1
        self.ttlIsInherited = True
        self.historyStep = row["history_step"]
        self.state = row["state"] or "COMMITTED"
        self.size = row["size"] or 0
        self.digest = row["digest"] or ""
        self.digestAlgorithm = row["digest_algorithm"] or "MANIFEST_MD5"
        self.commitHash = row["commit_hash"]
        self.fileCount = row["file_count"] or 0
        self.createdAt = row["created_at"] or EPOCH
        self.updatedAt = row["updated_at"]

    def alias_names(self) -> list[str]:
        return [_alias_name(a) for a in loads_or(self._row["aliases"], []) or []]

    def artifactSequence(self, info: GraphQLResolveInfo) -> CollectionNode:
        node = CollectionNode(self._ctx, self._coll, self._project)
        node.typename = "ArtifactSequence"
        return node

    def artifactType(self, info: GraphQLResolveInfo) -> ArtifactTypeNode:
        types = artifact_types(self._ctx, self._project)
        name = self._row["type_name"]
        return ArtifactTypeNode(self._ctx, self._project, next((t for t in types if t["name"] == name), {"name": name}))

    def tags(self, info: GraphQLResolveInfo) -> list[TagNode]:
        return [TagNode(t, self.id) for t in loads_or(self._row["tags"], []) or [] if isinstance(t, str)]

    def aliases(self, info: GraphQLResolveInfo) -> list[AliasNode]:
        return [AliasNode(self._ctx, a, self.id, self._coll, self._project) for a in self.alias_names()]

    def currentManifest(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return {"id": ids.typed_id("ArtifactManifest", self.id), "file": ManifestFileNode(self._ctx, self)}

    def createdBy(self, info: GraphQLResolveInfo) -> RunNode | None:
        return run_node_by_pk(self._ctx, self._row["producer_run_pk"])

    def usedBy(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        nodes = []
        for (run_pk,) in self._ctx.conn.execute(
                "SELECT u.run_pk FROM artifact_usage u JOIN runs r ON r.pk = u.run_pk WHERE u.artifact_pk = ? "
                "ORDER BY r.created_at, r.run_id", [self.pk]):
            n = run_node_by_pk(self._ctx, run_pk)
            if n:
                nodes.append(n)
        page, has_next = page_list(nodes, None, None, "usedby", key=lambda n: n.pk)
        return connection(page, has_next, len(nodes))

    def files(self, info: GraphQLResolveInfo, names: list[str] | None = None, after: str | None = None,
              first: int | None = None) -> dict[str, Any]:
        where, args = "artifact_pk = ?", [self.pk]
        names = [n for n in (names or []) if n is not None]
        if names:
            where += f" AND path IN ({','.join('?' * len(names))})"
            args += names
        total = self._ctx.conn.execute(f"SELECT count(*) FROM artifact_files WHERE {where}", args).fetchone()[0]
        after_path = decode_cursor(after, "afiles")
        if after_path is not None:
            where += " AND path > ?"
            args.append(after_path)
        sql = f"SELECT * FROM artifact_files WHERE {where} ORDER BY path"
        if first is not None:
            sql += f" LIMIT {int(first) + 1}"
        rows = [dict(r) for r in self._ctx.conn.execute(sql, args)]
        has_next = first is not None and len(rows) > int(first)
        rows = rows[: int(first)] if first is not None else rows
        return connection([(ArtifactFileNode(self._ctx, self, r), encode_cursor("afiles", r["path"])) for r in rows],
                          has_next, total)

    def artifactMemberships(self, info: GraphQLResolveInfo, after: str | None = None, first: int | None = None):
        return connection([(MembershipNode(self), encode_cursor("memberships", [self.id, 0]))], False)


class MembershipNode:
    def __init__(self, art: ArtifactNode):
        self._art = art
        self.id = art._row["membership_id"] or ids.typed_id("ArtifactCollectionMembership", art.id)
        self.versionIndex = art.versionIndex
        self.createdAt = art.createdAt

    def aliases(self, info: GraphQLResolveInfo) -> list[AliasNode]:
        return self._art.aliases(info)

    def artifactCollection(self, info: GraphQLResolveInfo) -> CollectionNode:
        return CollectionNode(self._art._ctx, self._art._coll, self._art._project)

    def artifact(self, info: GraphQLResolveInfo) -> ArtifactNode:
        return self._art

    def files(self, info: GraphQLResolveInfo, names: list[str] | None = None, after: str | None = None,
              first: int | None = None) -> dict[str, Any]:
        return self._art.files(info, names=names, after=after, first=first)


def manifest_json(ctx: Ctx, artifact_pk: int) -> bytes:
    """A manifest v1 rendered from the catalog's entries (for artifacts whose manifest object is absent)."""
    contents: dict[str, Any] = {}
    for r in ctx.conn.execute("SELECT * FROM artifact_files WHERE artifact_pk = ? ORDER BY path", [artifact_pk]):
        entry: dict[str, Any] = {"digest": r["digest"], "size": r["size"]}
        if r["birth_artifact_id"]:
            entry["birthArtifactID"] = r["birth_artifact_id"]
        if r["ref"]:
            entry["ref"] = r["ref"]
        extra = loads_or(r["extra"], {}) or {}
        if extra:
            entry["extra"] = extra
        contents[r["path"]] = entry
    doc = {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
           "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents}
    return json.dumps(doc).encode()
