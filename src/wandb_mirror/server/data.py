"""Catalog access for the server: a pool of SQLite connections and generation-keyed caches.

Why a pool instead of `Catalog`'s thread-local connections: the HTTP server runs one thread per
client connection, and threads come and go; a thread-local connection per thread would pile up.
A small pool lends a connection to each request instead.

Why generations: the client re-asks the same questions constantly (every `Runs` page repeats
`runCount(filters)`), and a 2,000-run project must not be re-read and re-decoded per request.
Everything derived from the catalog is cached under a global generation number that moves on when
the catalog changes: our own writes bump it, and SQLite's `PRAGMA data_version` (which changes on
a connection when *another* connection commits, e.g. a daemon writing the same store) is checked
each time a connection is lent out.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..models import loads_lenient
from ..store.connections import connect, is_postgres
from . import filters as F

RUN_LIGHT_COLUMNS = (
    "pk, project_pk, run_id, storage_id, display_name, state, tags, notes, description, group_name, job_type, "
    "host, commit_hash, username, user_display_name, sweep_name, read_only, created_at, heartbeat_at, updated_at, "
    "last_step, history_line_count, events_line_count"
)


class GenCache:
    """A small LRU whose entries are valid only for the generation they were computed in."""

    def __init__(self, maxsize: int = 128):
        self.maxsize = maxsize
        self._d: OrderedDict[Any, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, gen: int) -> Any:
        with self._lock:
            hit = self._d.get(key)
            if hit is None or hit[0] != gen:
                return None
            self._d.move_to_end(key)
            return hit[1]

    def put(self, key: Any, gen: int, value: Any) -> Any:
        with self._lock:
            self._d[key] = (gen, value)
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


class ProjectRuns:
    """The live (not tombstoned) runs of one project as filterable documents.

    Light columns are loaded up front; `config` and `summary_metrics` are decoded on first need
    (a filter or order that refers to them), once per generation.
    """

    def __init__(self, project: dict[str, Any], rows: list[dict[str, Any]]):
        self.project = project
        self.rows = rows
        self.by_pk = {r["pk"]: r for r in rows}
        self.docs: list[dict[str, Any]] = []
        for r in rows:
            self.docs.append(
                {
                    "_row": r,
                    "name": r["run_id"],
                    "displayName": r["display_name"],
                    "state": r["state"],
                    "tags": loads_lenient(r["tags"], []) or [],
                    "group": r["group_name"],
                    "jobType": r["job_type"],
                    "host": r["host"],
                    "username": r["username"],
                    "createdAt": r["created_at"],
                    "heartbeatAt": r["heartbeat_at"],
                    "updatedAt": r["updated_at"],
                    "sweep": r["sweep_name"],
                    "entity": project["entity"],
                    "notes": r["notes"],
                    "description": r["description"],
                    "commit": r["commit_hash"],
                    "readOnly": bool(r["read_only"]),
                }
            )
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, conn: sqlite3.Connection, what: str) -> None:
        """Decode `config` or `summary_metrics` into every document (once)."""
        if what in self._loaded:
            return
        with self._lock:
            if what in self._loaded:
                return
            col = {"config": "config", "summary_metrics": "summary"}[what]
            values = {
                pk: text
                for pk, text in conn.execute(
                    f"SELECT pk, {col} FROM runs WHERE project_pk = ? AND tombstoned_at IS NULL",
                    [self.project["pk"]],
                )
            }
            for d in self.docs:
                try:
                    d[what] = loads_lenient(values.get(d["_row"]["pk"]), {}) or {}
                except ValueError:
                    d[what] = {}
                if what == "summary_metrics":
                    s = d[what]
                    rt = s.get("_runtime") if isinstance(s, dict) else None
                    if rt is None and isinstance(s, dict) and isinstance(s.get("_wandb"), dict):
                        rt = s["_wandb"].get("runtime")
                    d["duration"] = rt
            self._loaded.add(what)

    def needs(self, keys: set[str]) -> set[str]:
        out = set()
        for k in keys:
            head = k.split(".", 1)[0]
            if head == "config" and "." in k:
                out.add("config")
            elif head == "summary_metrics" and "." in k:
                out.add("summary_metrics")
            elif k == "duration":
                out.add("summary_metrics")
        return out


class Data:
    """Connections and caches over one store's catalog."""

    def __init__(self, catalog_path: Path | str, *, readonly: bool, include_deleted: bool = False):
        self.path = catalog_path if is_postgres(catalog_path) else Path(catalog_path)
        self.readonly = readonly
        self.include_deleted = include_deleted
        self._pool: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._seen: dict[int, int] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.projects_cache = GenCache(4)
        self.runs_cache = GenCache(64)
        self.query_cache = GenCache(256)
        self.misc_cache = GenCache(256)
        self.closed = False

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # SQLite, or PostgreSQL through the same interface (store/pg.py); no implicit transactions
        conn = connect(self.path, readonly=self.readonly, implicit=False)
        conn.row_factory = sqlite3.Row
        if self.include_deleted:
            from .deleted import show_deleted

            show_deleted(conn)
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._pool.pop() if self._pool else None
        new = conn is None
        if conn is None:
            conn = self._connect()
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            with self._lock:
                if new or self._seen.get(id(conn)) != version:
                    # another connection committed since this one last looked (or we cannot know)
                    self.generation += 1
                self._seen[id(conn)] = version
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            with self._lock:
                if self.closed:
                    conn.close()
                else:
                    self._pool.append(conn)

    def bump(self) -> None:
        """Our own write committed: everything cached is stale."""
        with self._lock:
            self.generation += 1

    @contextmanager
    def write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One atomic write (BEGIN IMMEDIATE ... COMMIT) that invalidates the caches."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        self.bump()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            self._pool.clear()

    # -- cached reads ------------------------------------------------------------------------
    def cached(self, cache: GenCache, key: Any, compute: Callable[[], Any]) -> Any:
        gen = self.generation
        hit = cache.get(key, gen)
        if hit is not None:
            return hit
        return cache.put(key, gen, compute())

    def projects(self, conn: sqlite3.Connection) -> dict[tuple[str, str], dict[str, Any]]:
        def load() -> dict[tuple[str, str], dict[str, Any]]:
            rows = [dict(r) for r in conn.execute("SELECT * FROM projects WHERE tombstoned_at IS NULL")]
            return {(r["entity"], r["name"]): r for r in F.upstream_order(rows)}

        return self.cached(self.projects_cache, "all", load)

    def project_by_pk(self, conn: sqlite3.Connection, pk: int) -> dict[str, Any] | None:
        for p in self.projects(conn).values():
            if p["pk"] == pk:
                return p
        row = conn.execute("SELECT * FROM projects WHERE pk = ?", [pk]).fetchone()
        return dict(row) if row else None

    def project_runs(self, conn: sqlite3.Connection, project: dict[str, Any]) -> ProjectRuns:
        def load() -> ProjectRuns:
            rows = conn.execute(
                f"SELECT {RUN_LIGHT_COLUMNS} FROM runs WHERE project_pk = ? AND tombstoned_at IS NULL",
                [project["pk"]],
            ).fetchall()
            return ProjectRuns(project, F.upstream_order([dict(r) for r in rows], name="run_id"))

        return self.cached(self.runs_cache, project["pk"], load)

    def query_runs(
        self, conn: sqlite3.Connection, project: dict[str, Any], filters: Any, order: str | None
    ) -> list[dict[str, Any]]:
        """Light run rows of a project matching `filters` (JSON text or dict), in `order`."""
        ftext = filters if isinstance(filters, str) or filters is None else json.dumps(filters, sort_keys=True)
        key = (project["pk"], ftext or "", order or "")

        def compute() -> list[dict[str, Any]]:
            pr = self.project_runs(conn, project)
            flt = parse_filters(ftext)
            okey, desc = F.parse_order(order)
            for what in pr.needs(F.filter_keys(flt) | {okey}):
                pr.ensure(conn, what)
            docs = [d for d in pr.docs if F.matches(d, flt)] if flt else list(pr.docs)
            # ties keep the documents' upstream order (creation time, then run id)
            docs = F.sort_docs(docs, lambda d: F.lookup(d, okey), desc)
            return [d["_row"] for d in docs]

        return self.cached(self.query_cache, key, compute)


def parse_filters(text: Any) -> Any:
    """`filters` arrives as JSONString text ("{}" when none); a dict is accepted too."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise F.FilterError(f"filters is not valid JSON: {e}") from None
    else:
        value = text
    if value in ({}, None):
        return None
    if not isinstance(value, dict):
        raise F.FilterError("filters must be a JSON object")
    return value
