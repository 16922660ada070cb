"""One mirror pass: upstream -> verified objects -> catalog rows + change events.

Per project, in this order:
1. runs. Three listing modes (sync_state keys per project):
   - initial (no `created_watermark` yet): every run with the full fragment;
   - incremental: one Runs query with the full fragment whose filter is
       {"$or": [{"createdAt": {"$gte": watermark}}, {"state": {"$in": UNFINISHED}}, {"name": {"$in": [...]}}]}
     i.e. runs created since the watermark ($gte, because runs can share a timestamp; the catalog
     comparison drops the ones already mirrored), runs upstream reports unfinished, and runs the
     catalog holds as unfinished or that need a retry (so a run that finished between passes is seen);
   - reconcile (every `reconcile_interval`, or forced): every run with the light fragment plus the
     change markers (updatedAt, fileCount, heartbeatAt, state, historyLineCount, tags, notes...);
     runs whose markers differ from the catalog are fetched in full (one Run query each); runs the
     catalog has and upstream no longer lists become tombstone candidates.
   Each changed run is processed by a worker (thread pool bounded by `concurrency`): history from
   the last mirrored step (HistoryPage windows, unsampled, written in idempotent chunks), events,
   files (downloads verified while streaming, skipped when the object is already stored), its
   logged and used artifacts; then ONE catalog transaction records the run row with its new change
   markers, events, files, artifact links and the change events. A run half-processed when the
   process died is therefore redone by the next pass (its markers were not recorded).
2. artifacts: types and their collections (cheap); the versions of a collection are listed when it
   is new, its updatedAt moved, or on reconcile. A version is mirrored once: manifest fetched,
   its artifact digest recomputed and compared, every non-reference file verified against its
   manifest digest (md5, or XXH128 when extra.alg says so), then recorded in one transaction.
3. sweeps and reports: listed every pass (one request each), recorded when they differ.

An unchanged project costs a constant number of requests: Runs (1), ProjectArtifactTypes (1),
ArtifactTypeArtifactCollections (1 per artifact type), GetSweeps (1), ProjectViews (1).
Tombstones are applied at the end of a pass that had no errors, never otherwise; local data is
never deleted.

Failure handling (docs/reliability.md): a run whose upstream calls fail for good RUN_FAILURE_LIMIT
times is given up for the pass (reported, retried next pass) instead of spending the pass's retry
budget; a run listing that repeats runs across pages or holds fewer than runCount is not trusted
for deletions; a store that cannot be written (disk full, read-only, I/O error: `store_failure`)
stops the pass at once with StoreUnwritable; temp objects a killed writer left are removed at the
first pass of the process.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import xxhash

from .. import ids
from ..client import (
    ApiError,
    AuthError,
    Problem,
    RemoteArtifact,
    RemoteCollection,
    RetryBudgetExhausted,
    RetryPolicy,
    RunListing,
    RunsInfo,
    Transport,
    WandbClient,
    resolve_api_key,
)
from ..client.convert import md5_b64_to_hex, parse_history_row, unsafe_id_reason, unsafe_path_reason
from ..config import Config, ProjectOptions
from ..errors import IntegrityError, MirrorError, PassAborted, WorkFailed
from ..models import ArtifactEntry, Project, Run, RunFile, loads_lenient
from ..store import Store
from ..store.catalog import utcnow
from . import changes as ch
from .progress import NullProgress, Progress

log = logging.getLogger("wandb_mirror.sync")

TERMINAL_STATES = frozenset({"finished", "crashed", "failed", "killed"})
UNFINISHED_STATES = ["running", "pending", "preempting", "preempted"]
SWEEP_DONE_STATES = frozenset({"FINISHED", "CANCELED", "CRASHED", "FAILED"})
RUN_UPDATE_FIELDS = (  # catalog column -> name in run_updated payloads
    ("tags", "tags"), ("notes", "notes"), ("display_name", "display_name"), ("description", "description"),
    ("group_name", "group"), ("job_type", "job_type"), ("sweep_name", "sweep"), ("commit_hash", "commit"),
    ("system_metrics", "system_metrics"),
)
HISTORY_CHUNK_ROWS = 5000
# Upstream calls of one run that may fail for good (each after its own retries) before the run is
# given up for this pass: a run whose files keep failing is reported and retried next pass instead
# of spending the pass's shared retry budget (which would stop every run after it).
RUN_FAILURE_LIMIT = 3


class StoreUnwritable(PassAborted):
    """The store's disk is full, read-only or failing: every further write would fail the same way,
    so the pass stops at once (what was committed stays; nothing half-written is kept)."""


# errno values that mean "the store's filesystem cannot take writes", not "this item is bad"
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
_SQLITE_DISK = ("database or disk is full", "attempt to write a readonly database", "disk i/o error",
                "unable to open database file")


def store_failure(e: BaseException) -> str | None:
    """Why `e` means the store cannot be written (disk full, read-only, I/O error), else None."""
    if isinstance(e, StoreUnwritable):
        return str(e)
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        return e.strerror or os.strerror(e.errno)
    if isinstance(e, sqlite3.Error):
        text = str(e)
        if any(m in text.lower() for m in _SQLITE_DISK):
            return f"catalog: {text}"
    return None


@dataclass
class Tombstone:
    kind: str           # run | file | artifact | collection | sweep | report | project
    table: str
    pk: int
    key: str
    scope: ch.Scope
    run: str | None = None


@dataclass
class PassResult:
    pass_id: int
    status: str                 # ok | errors | failed
    started_at: str
    finished_at: str
    seconds: float
    requests: int
    stats: dict[str, Any]
    errors: list[str]
    first_change_seq: int | None = None
    last_change_seq: int | None = None

    def summary(self) -> str:
        s = self.stats
        mb = s.get("file_bytes", 0) + s.get("artifact_bytes", 0)
        parts = [
            f"pass {self.pass_id} {self.status} in {self.seconds:.1f}s:",
            f"{s.get('projects', 0)} projects,",
            f"{s.get('runs_seen', 0)} runs seen, {s.get('runs_new', 0)} new, {s.get('runs_updated', 0)} updated,",
            f"{s.get('history_rows', 0)} history rows,",
            f"{s.get('files', 0)} files",
            f"({mb / 1e6:.1f} MB),",
            f"{s.get('artifacts', 0)} artifact versions,",
            f"{s.get('tombstoned', 0)} tombstones,",
            f"{self.requests} requests ({s.get('requests_pass', {}).get('retries', 0)} retries)",
        ]
        text = " ".join(parts)
        if s.get("quarantined"):
            text += f", {s['quarantined']} quarantined"
        if self.errors:
            text += f"; {len(self.errors)} errors, first: {self.errors[0]}"
        return text


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n

    def get(self, key: str) -> int:
        with self.lock:
            return self.values.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


def _delta(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in now.items():
        if isinstance(v, dict):
            b = before.get(k) or {}
            out[k] = {op: n - b.get(op, 0) for op, n in v.items() if n - b.get(op, 0)}
        elif isinstance(v, (int, float)):
            out[k] = v - (before.get(k) or 0)
    return out


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def make_client(config: Config, api_key: str | None = None) -> WandbClient:
    """A client configured from `config` (key from WANDB_API_KEY or ~/.netrc unless given)."""
    s = config.sync
    key = resolve_api_key(config.source.base_url, api_key)
    retry = RetryPolicy(max_attempts=s.max_retries, max_call_seconds=s.max_call_time, wait_min=s.retry_wait_min,
                        wait_max=s.retry_wait_max, budget=s.retry_budget)
    t = Transport(config.source.base_url, key, concurrency=s.concurrency, rate_limit=s.rate_limit,
                  timeout=config.source.timeout, retry=retry, user_agent=config.source.user_agent,
                  max_response=s.max_response_mb << 20)
    return WandbClient(t, page_size=config.source.page_size)


PREFLIGHT_ATTEMPTS = 3


def preflight(config: Config, client: WandbClient) -> Any:
    """Ask the upstream who the key belongs to, before anything is written: a rejected key is a
    UsageError (exit 2), an unreachable or failing upstream a WorkFailed (exit 1), each one line.
    Retries are capped at PREFLIGHT_ATTEMPTS so a wrong host fails in seconds, not minutes."""
    from ..client import documents as D
    from ..client.convert import viewer_from_node

    url = config.source.base_url
    try:
        data = client.t.graphql(D.VIEWER.name, D.VIEWER.text, max_attempts=PREFLIGHT_ATTEMPTS)
    except AuthError:
        raise
    except ApiError as e:
        if e.status is None:
            raise WorkFailed(f"cannot reach {url}: {_without_operation(e)}") from None
        raise WorkFailed(f"{url} is not answering properly: {_without_operation(e)}") from None
    node = data.get("viewer")
    if not isinstance(node, dict):
        raise AuthError(f"API key rejected by {client.t.host} (the server does not know this key)")
    return viewer_from_node(node)


def _without_operation(e: ApiError) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if e.operation and text.startswith(f"{e.operation}: ") else text


# =============================================================================================
# the pass
# =============================================================================================
class Engine:
    """Runs passes of `config` into `store`. The caller holds the store lock (Store.lock())."""

    def __init__(self, config: Config, store: Store, client: WandbClient | None = None, *,
                 progress: Progress | None = None, force_reconcile: bool = False, api_key: str | None = None,
                 viewer: Any = None):
        self.config = config
        # the answer of a preflight check, reused by the first pass instead of asking again
        self._viewer = viewer
        self.store = store
        self.cat = store.catalog
        self.objects = store.objects
        self.client = client or make_client(config, api_key)
        self.progress = progress or NullProgress()
        if self.progress.requests is None:
            self.progress.requests = lambda: self.client.stats.total
        self.force_reconcile = force_reconcile
        # per pass
        self.pass_id: int | None = None
        self.stats = _Stats()
        self.errors: list[str] = []
        self.errors_lock = threading.Lock()
        self.tombstones: list[Tombstone] = []
        self.tomb_lock = threading.Lock()
        self._artifact_locks: dict[str, threading.Lock] = {}
        self._artifact_locks_guard = threading.Lock()
        self._project_pks: dict[tuple[str, str], int] = {}
        self._project_lock = threading.Lock()
        self.aborted: PassAborted | None = None  # set when the pass must stop: queued runs are skipped
        self._tmp_cleaned = False

    # -- bookkeeping ---------------------------------------------------------------------------
    def unwritable(self, e: BaseException) -> StoreUnwritable:
        """The StoreUnwritable to raise for a disk-level failure `e`; later workers skip their runs."""
        if isinstance(e, StoreUnwritable):
            return e
        err = StoreUnwritable(f"store {self.store.path} cannot be written: {store_failure(e)}; the pass stopped "
                              "(what was committed stays, nothing half-written was kept): free space or fix the "
                              "filesystem, then run again")
        self.aborted = err
        return err

    def error(self, where: str, message: str | BaseException) -> None:
        text = f"{where}: {message}"
        log.error("%s", text)
        with self.errors_lock:
            self.errors.append(text)

    def quarantine(self, kind: str, upstream_path: str, reason: str, detail: str | None = None) -> None:
        """Record an item that failed verification or was unsafe; it is reported and not stored."""
        now = utcnow()
        with self.cat.transaction() as conn:
            row = conn.execute("SELECT pk FROM quarantine WHERE kind = ? AND upstream_path = ? AND reason = ?",
                               [kind, upstream_path, reason]).fetchone()
            if row:
                conn.execute("UPDATE quarantine SET at = ?, pass_id = ?, detail = ? WHERE pk = ?",
                             [now, self.pass_id, detail, row[0]])
            else:
                conn.execute("INSERT INTO quarantine (at, pass_id, kind, upstream_path, reason, detail) "
                             "VALUES (?, ?, ?, ?, ?, ?)", [now, self.pass_id, kind, upstream_path, reason, detail])
        self.stats.add("quarantined")
        self.error(f"quarantined {kind} {upstream_path}", reason)

    def problems(self, items: list[Problem]) -> None:
        for p in items:
            self.quarantine(p.kind, p.upstream_path, p.reason, p.detail)

    def tombstone(self, t: Tombstone) -> None:
        with self.tomb_lock:
            self.tombstones.append(t)

    def state_get(self, project_pk: int, key: str) -> str | None:
        return self.cat.scalar("SELECT value FROM sync_state WHERE project_pk = ? AND key = ?", [project_pk, key])

    @staticmethod
    def state_set(conn: Any, project_pk: int, key: str, value: str | None) -> None:
        if value is None:
            conn.execute("DELETE FROM sync_state WHERE project_pk = ? AND key = ?", [project_pk, key])
        else:
            conn.execute("INSERT INTO sync_state (project_pk, key, value) VALUES (?, ?, ?) "
                         "ON CONFLICT (project_pk, key) DO UPDATE SET value = excluded.value", [project_pk, key, value])

    def artifact_lock(self, artifact_id: str) -> threading.Lock:
        with self._artifact_locks_guard:
            lk = self._artifact_locks.get(artifact_id)
            if lk is None:
                lk = self._artifact_locks[artifact_id] = threading.Lock()
            return lk

    def ensure_project(self, entity: str, name: str, *, id: str | None = None, internal_id: str | None = None) -> int:
        """The pk of a project row, creating a minimal one (for artifacts that live in other projects)."""
        with self._project_lock:
            pk = self._project_pks.get((entity, name))
            if pk is not None:
                return pk
            with self.cat.transaction() as conn:
                conn.execute("INSERT OR IGNORE INTO projects (entity, name, id, internal_id) VALUES (?, ?, ?, ?)",
                             [entity, name, id, internal_id])
                pk = conn.execute("SELECT pk FROM projects WHERE entity = ? AND name = ?", [entity, name]).fetchone()[0]
            self._project_pks[(entity, name)] = pk
            return pk

    # -- the pass ------------------------------------------------------------------------------
    def run_pass(self) -> PassResult:
        started = utcnow()
        t0 = time.monotonic()
        self.stats = _Stats()
        self.errors = []
        self.tombstones = []
        req_before = self.client.stats.snapshot()
        req0 = req_before["total"]
        # We hold the store lock, so at the first pass a temp object is what a killed writer left
        # (kill -9 mid-download): `sync` removes them like the daemon does at start.
        self.aborted = None
        try:
            if not self._tmp_cleaned:  # once per process: later temp files are our own pass's
                removed = self.objects.clean_tmp()
                self._tmp_cleaned = True
                if removed:
                    log.info("removed %d temp files left by an interrupted writer", removed)
            with self.cat.transaction() as conn:
                # We hold the store lock, so a pass still marked running was cut short (killed, power loss).
                conn.execute("UPDATE passes SET status = 'failed', finished_at = COALESCE(finished_at, ?), "
                             "errors = ? WHERE status = 'running'",
                             [started, json.dumps(["interrupted: the process ended during this pass"])])
                self.pass_id = int(conn.execute("INSERT INTO passes (started_at, status) VALUES (?, 'running')",
                                                [started]).lastrowid)
                first_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        except (OSError, sqlite3.Error) as e:
            if store_failure(e):
                raise self.unwritable(e) from None
            raise
        status = "ok"
        fatal: BaseException | None = None
        try:
            try:
                self._pass_body()
            except Exception as e:
                if store_failure(e) and not isinstance(e, PassAborted):
                    raise self.unwritable(e) from None
                raise
        except (AuthError, PassAborted, RetryBudgetExhausted) as e:
            fatal = e
            status = "failed"
            self.error("pass", e)
        except MirrorError as e:
            fatal = e
            status = "failed"
            self.error("pass", e)
        except Exception as e:  # a bug must not leave the pass row 'running'
            fatal = e
            status = "failed"
            self.error("pass", f"{type(e).__name__}: {e}")
            log.exception("pass failed")
        if status == "ok" and self.errors:
            status = "errors"
        if status == "ok":
            self._apply_tombstones()
        elif self.tombstones:
            log.info("pass had errors: %d tombstone candidates not applied", len(self.tombstones))
        self.progress.finish()
        finished = utcnow()
        req_stats = self.client.stats.snapshot()
        requests = req_stats["total"] - req0
        stats = dict(self.stats.snapshot())
        stats["requests"] = req_stats  # cumulative over the client's life (the daemon takes deltas)
        stats["requests_pass"] = _delta(req_stats, req_before)
        try:
            with self.cat.transaction() as conn:
                last_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
                conn.execute("UPDATE passes SET finished_at = ?, status = ?, requests = ?, stats = ?, errors = ? "
                             "WHERE id = ?",
                             [finished, status, requests, json.dumps(stats), json.dumps(self.errors[:1000]),
                              self.pass_id])
        except (OSError, sqlite3.Error) as e:
            # the pass cannot even be recorded (the next pass marks it interrupted): say why, in one line
            if store_failure(e):
                raise (fatal if isinstance(fatal, StoreUnwritable) else self.unwritable(e)) from None
            raise
        result = PassResult(pass_id=self.pass_id, status=status, started_at=started, finished_at=finished,
                            seconds=time.monotonic() - t0, requests=requests, stats=stats, errors=list(self.errors),
                            first_change_seq=first_seq + 1 if last_seq > first_seq else None,
                            last_change_seq=last_seq if last_seq > first_seq else None)
        if isinstance(fatal, AuthError):
            raise fatal
        return result

    def _pass_body(self) -> None:
        viewer, self._viewer = self._viewer or self.client.viewer(), None
        if viewer is None:
            raise AuthError(f"API key rejected by {self.client.t.host} (the server does not know this key)")
        with self.cat.transaction():
            self.cat.upsert_user(viewer.user)
            if viewer.entity:
                self.cat.conn.execute("INSERT OR IGNORE INTO entities (name) VALUES (?)", [viewer.entity])
                self.cat.set_meta("default_entity", viewer.entity)
            self.cat.set_meta("viewer", viewer.user.username)
            self.cat.set_meta("upstream", self.config.source.base_url)
            for team in viewer.teams:
                if not unsafe_id_reason(team):
                    self.cat.conn.execute("INSERT OR IGNORE INTO entities (name, is_team) VALUES (?, 1)", [team])

        entities = list(self.config.source.entities)
        if not entities:
            for g in self.config.source.projects:
                if "/" in g:
                    ent = g.split("/", 1)[0]
                    if not any(c in ent for c in "*?[") and ent not in entities:
                        entities.append(ent)
        if not entities:
            if not viewer.entity:
                raise MirrorError("the API key has no default entity; set [source] entities")
            entities = [viewer.entity]

        projects: list[Project] = []
        for entity in entities:
            reason = unsafe_id_reason(entity)
            if reason:
                self.error(f"entity {entity!r}", f"unsafe name: {reason}")
                continue
            listed: set[str] = set()
            try:
                for p in self.client.projects(entity):
                    reason = unsafe_id_reason(p.name)
                    if reason:
                        self.quarantine("project", f"{entity}/{p.name[:200]}", f"unsafe project name: {reason}")
                        continue
                    if p.entity != entity:
                        p.entity = entity
                    listed.add(p.name)
                    if self.config.selects(entity, p.name):
                        projects.append(p)
            except (AuthError, RetryBudgetExhausted):
                raise
            except ApiError as e:
                self.error(f"projects of {entity}", e)
                continue
            with self.cat.transaction() as conn:
                conn.execute("INSERT OR IGNORE INTO entities (name) VALUES (?)", [entity])
            # projects we mirrored before that the entity no longer has
            for row in self.cat.query("SELECT pk, name FROM projects WHERE entity = ? AND tombstoned_at IS NULL",
                                      [entity]):
                if row["name"] not in listed and self.config.selects(entity, row["name"]) and self._has_data(row["pk"]):
                    self.tombstone(Tombstone("project", "projects", row["pk"], f"{entity}/{row['name']}",
                                             ch.Scope(self.pass_id, entity, row["name"])))

        self.stats.add("projects", len(projects))
        for p in projects:
            opts = self.config.project_options(p.entity, p.name)
            try:
                ProjectSync(self, p, opts).run()
            except (AuthError, RetryBudgetExhausted, PassAborted):
                raise
            except (ApiError, IntegrityError) as e:
                self.error(f"{p.entity}/{p.name}", e)
            except Exception as e:
                if store_failure(e):
                    raise self.unwritable(e) from None
                log.exception("project %s/%s failed", p.entity, p.name)
                self.error(f"{p.entity}/{p.name}", f"{type(e).__name__}: {e}")

    def _has_data(self, project_pk: int) -> bool:
        return bool(self.cat.scalar("SELECT 1 FROM runs WHERE project_pk = ? LIMIT 1", [project_pk])
                    or self.cat.scalar("SELECT 1 FROM artifact_collections WHERE project_pk = ? LIMIT 1", [project_pk]))

    def _apply_tombstones(self) -> None:
        if not self.tombstones:
            return
        now = utcnow()
        with self.cat.transaction() as conn:
            for t in self.tombstones:
                cur = conn.execute(f"UPDATE {t.table} SET tombstoned_at = ? WHERE pk = ? AND tombstoned_at IS NULL",
                                   [now, t.pk])
                if cur.rowcount:
                    ch.tombstoned(conn, t.scope, t.kind, t.key, run=t.run)
                    self.stats.add("tombstoned")


# =============================================================================================
# one project
# =============================================================================================
class ProjectSync:
    def __init__(self, engine: Engine, project: Project, opts: ProjectOptions):
        self.e = engine
        self.client = engine.client
        self.cat = engine.cat
        self.objects = engine.objects
        self.project = project
        self.entity = project.entity
        self.name = project.name
        self.opts = opts
        self.where = f"{project.entity}/{project.name}"
        self.scope = ch.Scope(engine.pass_id, project.entity, project.name)
        self.ok = True  # no failure (an exception, not a quarantine): a reconcile may count as done
        self.lock = threading.Lock()
        self.failed_created: list[str] = []
        self.max_created: str | None = None
        self.runs_complete = False

    def fail(self, where: str, message: Any) -> None:
        with self.lock:
            self.ok = False
        self.e.error(where, message)

    # -- driver ----------------------------------------------------------------------------------
    def run(self) -> None:
        existing = self.cat.get_project(self.entity, self.name)
        proj = self.project
        if existing:
            proj.internal_id = proj.internal_id or existing.internal_id
            proj.description = proj.description or existing.description
        self.ppk = self.cat.upsert_project(proj)
        self.e._project_pks[(self.entity, self.name)] = self.ppk
        self.e.progress.set_project(self.where)

        watermark = self.e.state_get(self.ppk, "created_watermark")
        last_reconcile = _parse_time(self.e.state_get(self.ppk, "last_reconcile"))
        if watermark is None:
            mode = "initial"
        elif (self.e.force_reconcile or last_reconcile is None
              or time.time() - last_reconcile >= self.e.config.sync.reconcile_interval):
            mode = "reconcile"
        else:
            mode = "incremental"
        self.mode = mode
        log.debug("%s: %s pass", self.where, mode)

        self.sync_runs(mode, watermark)
        if self.opts.artifacts:
            self.guard("artifacts", self.sync_artifacts, mode != "incremental")
        if self.opts.sweeps:
            self.guard("sweeps", self.sync_sweeps)
        if self.opts.reports:
            self.guard("reports", self.sync_reports)

        # The created-at watermark moves only over runs that are recorded: after a complete listing
        # it becomes the newest createdAt seen, or the oldest createdAt of a run that failed.
        new_wm = watermark
        if self.runs_complete:
            if self.failed_created:
                new_wm = min(self.failed_created)
            elif self.max_created:
                new_wm = max(self.max_created, watermark or "")
        with self.cat.transaction() as conn:
            if new_wm is not None and new_wm != watermark:
                self.e.state_set(conn, self.ppk, "created_watermark", new_wm)
            if self.ok and mode in ("initial", "reconcile"):
                self.e.state_set(conn, self.ppk, "last_reconcile", _iso_now())

    def guard(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (AuthError, RetryBudgetExhausted, PassAborted):
            raise
        except (ApiError, IntegrityError) as e:
            self.fail(f"{self.where} {what}", e)
        except Exception as e:
            if store_failure(e):
                raise self.e.unwritable(e) from None
            log.exception("%s %s failed", self.where, what)
            self.fail(f"{self.where} {what}", f"{type(e).__name__}: {e}")

    # -- runs ------------------------------------------------------------------------------------
    def stored_runs(self) -> dict[str, dict[str, Any]]:
        rows = self.cat.query(
            "SELECT pk, name, state, heartbeat_at, updated_at, history_line_count, last_step, tags, notes, display_name, "
            "description, group_name, job_type, sweep_name, commit_hash, mirrored_at, tombstoned_at "
            "FROM runs WHERE project_pk = ?",
            [self.ppk])
        return {r["name"]: r for r in rows}

    def sync_runs(self, mode: str, watermark: str | None) -> None:
        stored = self.stored_runs()
        markers = {r["key"][6:]: r["value"] for r in self.cat.query(
            "SELECT key, value FROM sync_state WHERE project_pk = ? AND key LIKE 'files:%'", [self.ppk])}
        retry = {r["key"][6:] for r in self.cat.query(
            "SELECT key FROM sync_state WHERE project_pk = ? AND key LIKE 'retry:%'", [self.ppk])}
        sync = self.e.config.sync
        info = RunsInfo()
        listed: set[str] = set()
        futures: list[Future] = []
        complete = False
        with ThreadPoolExecutor(max_workers=sync.concurrency, thread_name_prefix="sync") as pool:
            try:
                if mode == "incremental":
                    names = sorted({n for n, r in stored.items()
                                    if r["tombstoned_at"] is None and r["state"] not in TERMINAL_STATES} | retry)
                    clauses: list[dict[str, Any]] = [{"createdAt": {"$gte": watermark}},
                                                     {"state": {"$in": UNFINISHED_STATES}}]
                    if names:
                        clauses.append({"name": {"$in": names}})
                    listing = self.client.runs(self.entity, self.name, filters={"$or": clauses}, full=True, info=info)
                else:
                    listing = self.client.runs(self.entity, self.name, full=(mode == "initial"), info=info,
                                               per_page=None if mode == "initial" else max(100, self.client.page_size))
                for lr in listing:
                    name = lr.run.name
                    reason = unsafe_id_reason(name)
                    if reason:
                        self.e.quarantine("run", f"{self.where}/{name!r}"[:500], f"unsafe run id: {reason}")
                        continue
                    listed.add(name)
                    self.e.stats.add("runs_seen")
                    if lr.run.created_at and (self.max_created is None or lr.run.created_at > self.max_created):
                        self.max_created = lr.run.created_at
                    old = stored.get(name)
                    if not self.needs_work(lr, old, markers.get(name), name in retry):
                        continue
                    self.e.progress.add_runs(1)
                    futures.append(pool.submit(self.run_worker, lr, old, markers.get(name), name in retry))
                complete = info.complete()
                if not info.found:
                    self.fail(f"{self.where} runs", "the project is gone upstream (Runs returned no project)")
                elif not complete:
                    # duplicates across pages or fewer runs than runCount: some runs may be missing from
                    # this listing, so absent runs are not tombstoned and the watermark does not move
                    log.warning("%s: the run listing looks incomplete (%d listed, %d repeated, runCount %s); "
                                "no run is treated as deleted this pass", self.where, info.listed, info.duplicates,
                                info.run_count)
                    self.e.stats.add("incomplete_listings")
            except (AuthError, RetryBudgetExhausted):
                raise
            except ApiError as e:
                self.fail(f"{self.where} runs", e)
            for f in futures:
                f.result()  # workers catch their own errors; this re-raises only fatal ones
        if info.internal_id:
            with self.cat.transaction() as conn:
                conn.execute("UPDATE projects SET internal_id = ? WHERE pk = ?", [info.internal_id, self.ppk])
        self.runs_complete = complete
        if complete and mode in ("initial", "reconcile"):
            for name, r in stored.items():
                if name not in listed and r["tombstoned_at"] is None:
                    self.e.tombstone(Tombstone("run", "runs", r["pk"], f"{self.where}/{name}", self.scope, run=name))

    def needs_work(self, lr: RunListing, old: dict[str, Any] | None, files_marker: str | None, retry: bool) -> bool:
        if old is None or retry or old["tombstoned_at"] is not None or old["mirrored_at"] is None:
            return True
        r = lr.run
        if (r.state, r.heartbeat_at, r.updated_at) != (old["state"], old["heartbeat_at"], old["updated_at"]):
            return True
        if r.history_line_count != old["history_line_count"]:
            return True
        if r.tags != old["tags"] or r.notes != old["notes"] or r.display_name != old["display_name"]:
            return True
        if (r.description, r.group_name, r.job_type, r.sweep_name) != (
                old["description"], old["group_name"], old["job_type"], old["sweep_name"]):
            return True
        if lr.file_count is not None and self.opts.files and str(lr.file_count) != (files_marker or ""):
            return True
        if lr.full:
            if self.opts.history and lr.last_step > (old["last_step"] if old["last_step"] is not None else -1):
                return True
            full = self.cat.query_one("SELECT config, summary, system_metrics FROM runs WHERE pk = ?", [old["pk"]])
            if full and (r.config, r.summary, r.system_metrics) != (full["config"], full["summary"], full["system_metrics"]):
                return True
        return False

    def run_worker(self, lr: RunListing, old: dict[str, Any] | None, files_marker: str | None, retry: bool) -> None:
        name = lr.run.name
        if self.e.aborted is not None:  # the pass is stopping (disk full...): queued runs wait for the next
            self.e.progress.run_done()
            self.note_failed(lr, old)
            return
        try:
            if not lr.full:
                full = self.client.run(self.entity, self.name, name)
                if full is None:
                    return  # deleted between the listing and now; the next reconcile tombstones it
                lr = full
            RunSync(self, lr, old, files_marker, retry).process()
        except (AuthError, RetryBudgetExhausted, PassAborted):
            raise
        except (ApiError, IntegrityError, MirrorError) as e:
            self.fail(f"{self.where}/{name}", e)
            self.note_failed(lr, old)
        except Exception as e:
            if store_failure(e):
                raise self.e.unwritable(e) from None
            log.exception("run %s/%s failed", self.where, name)
            self.fail(f"{self.where}/{name}", f"{type(e).__name__}: {e}")
            self.note_failed(lr, old)
        finally:
            self.e.progress.run_done()

    def note_failed(self, lr: RunListing, old: dict[str, Any] | None) -> None:
        """A run that was not recorded. A new one holds the created-at watermark back so the next
        incremental pass lists it again; a known one is found again by its unchanged markers."""
        if old is not None and old.get("mirrored_at"):
            return
        with self.lock:
            if lr.run.created_at:
                self.failed_created.append(lr.run.created_at)

    # -- artifacts -------------------------------------------------------------------------------
    def sync_artifacts(self, full: bool) -> None:
        types = list(self.client.artifact_types(self.entity, self.name))
        listed: set[str] = set()
        complete = True
        for t in types:
            if unsafe_id_reason(t.name):
                self.e.quarantine("artifact_type", f"{self.where}/{t.name[:200]}", "unsafe type name")
                continue
            self.cat.upsert_artifact_type(self.ppk, t.name, id=t.id, description=t.description, created_at=t.created_at)
            if not self.opts.want_artifact_type(t.name):
                continue
            for rc in self.client.collections(self.entity, self.name, t.name):
                c = rc.collection
                reason = unsafe_id_reason(c.name)
                if reason:
                    self.e.quarantine("collection", f"{self.where}/{c.name[:200]}", f"unsafe collection name: {reason}")
                    complete = False
                    continue
                listed.add(c.name)
                row = self.cat.query_one("SELECT pk, updated_at, tombstoned_at, description, tags FROM artifact_collections "
                                         "WHERE project_pk = ? AND name = ?", [self.ppk, c.name])
                changed = (row is None or row["tombstoned_at"] is not None or row["updated_at"] != c.updated_at
                           or row["description"] != c.description or row["tags"] != c.tags)
                if full or changed:
                    if self.sync_collection(rc):
                        self.cat.upsert_collection(self.ppk, c)
                    else:
                        complete = False
        if complete:
            for row in self.cat.query("SELECT pk, name, type_name FROM artifact_collections WHERE project_pk = ? "
                                      "AND tombstoned_at IS NULL", [self.ppk]):
                if row["name"] not in listed and self.opts.want_artifact_type(row["type_name"]):
                    self.e.tombstone(Tombstone("collection", "artifact_collections", row["pk"],
                                               f"{self.where}/{row['name']}", self.scope))

    def sync_collection(self, rc: RemoteCollection) -> bool:
        c = rc.collection
        seen: set[str] = set()
        ok = True
        try:
            for ra in self.client.collection_versions(self.entity, self.name, c.type_name, c.name):
                seen.add(ra.artifact.id)
                if mirror_artifact(self, ra) is None and ra.artifact.state == "COMMITTED":
                    ok = False
        except (AuthError, RetryBudgetExhausted):
            raise
        except ApiError as e:
            self.fail(f"{self.where}/{c.name}", e)
            return False
        if ok:
            for row in self.cat.query(
                    "SELECT a.pk, a.id, a.version_index FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
                    "WHERE c.project_pk = ? AND c.name = ? AND a.tombstoned_at IS NULL", [self.ppk, c.name]):
                if row["id"] not in seen:
                    self.e.tombstone(Tombstone("artifact", "artifacts", row["pk"],
                                               f"{self.where}/{c.name}:v{row['version_index']}", self.scope))
        return ok

    # -- sweeps, reports ---------------------------------------------------------------------------
    def sync_sweeps(self) -> None:
        problems: list[Problem] = []
        listed: set[str] = set()
        fields = ("display_name", "config", "method", "state", "description", "best_loss", "run_count",
                  "run_count_expected", "updated_at", "metric_name", "metric_goal")
        for s in self.client.sweeps(self.entity, self.name, problems):
            if unsafe_id_reason(s.name):
                self.e.quarantine("sweep", f"{self.where}/{s.name[:200]}", "unsafe sweep name")
                continue
            listed.add(s.name)
            old = self.cat.query_one("SELECT * FROM sweeps WHERE project_pk = ? AND name = ?", [self.ppk, s.name])
            if old is not None and old["tombstoned_at"] is None and all(old[f] == getattr(s, f) for f in fields) \
                    and old["id"] == s.id:
                continue
            diff = {f: {"before": old[f] if old else None, "after": getattr(s, f)} for f in fields
                    if old is None or old[f] != getattr(s, f)}
            with self.cat.transaction() as conn:
                self.cat.upsert_sweep(self.ppk, s)
                ch.sweep_updated(conn, self.scope, s.name, s.state, diff)
                was_done = old is not None and old["state"] in SWEEP_DONE_STATES and old["tombstoned_at"] is None
                if s.state in SWEEP_DONE_STATES and not was_done:
                    ch.sweep_finished(conn, self.scope, s.name, s.state, s.best_loss)
            self.e.stats.add("sweeps")
        self.tombstone_unlisted("sweep", "sweeps", "name", listed, problems)

    def sync_reports(self) -> None:
        problems: list[Problem] = []
        listed: set[str] = set()
        for r in self.client.reports(self.entity, self.name, problems):
            if not r.id:
                continue
            listed.add(r.id)
            old = self.cat.query_one("SELECT * FROM reports WHERE project_pk = ? AND id = ?", [self.ppk, r.id])
            if old is not None and old["tombstoned_at"] is None and all(
                    old[k] == v for k, v in r.to_row().items()):
                continue
            self.cat.upsert_report(self.ppk, r)
            self.e.stats.add("reports")
        self.tombstone_unlisted("report", "reports", "id", listed, problems)

    def tombstone_unlisted(self, kind: str, table: str, key: str, listed: set[str], problems: list[Problem]) -> None:
        """After a project-wide listing: report its refused entries, and tombstone the rows it no longer has."""
        self.e.problems(problems)
        if problems:
            return  # a listing with refused entries is not proof of deletions
        for row in self.cat.query(f"SELECT pk, {key} FROM {table} WHERE project_pk = ? AND tombstoned_at IS NULL",
                                  [self.ppk]):
            if row[key] not in listed:
                label = row[key] if kind != "report" else f"report {row[key]}"
                self.e.tombstone(Tombstone(kind, table, row["pk"], f"{self.where}/{label}", self.scope))


# =============================================================================================
# one run
# =============================================================================================
class RunSync:
    def __init__(self, ps: ProjectSync, lr: RunListing, old: dict[str, Any] | None, files_marker: str | None,
                 retry: bool):
        self.ps = ps
        self.e = ps.e
        self.client = ps.client
        self.cat = ps.cat
        self.lr = lr
        self.run = lr.run
        self.name = lr.run.name
        self.old = old
        self.files_marker = files_marker
        self.retry = retry
        self.where = f"{ps.where}/{self.name}"
        self.failed = False  # something of this run must be tried again next pass
        self.failures = 0    # calls of this run that failed for good in this pass

    def call_failed(self) -> bool:
        """Count a failed call; True once the run has failed often enough to be given up."""
        self.failed = True
        self.failures += 1
        if self.failures == RUN_FAILURE_LIMIT:
            self.e.error(self.where, f"giving up on this run for this pass after {self.failures} failed calls; "
                                     "it is tried again next pass")
        return self.failures >= RUN_FAILURE_LIMIT

    def process(self) -> None:
        ps, e = self.ps, self.e
        # a row without mirrored_at is a placeholder a crashed pass left (see fetch_history): new
        old_run = self.cat.get_run(ps.ppk, self.name) if self.old and self.old.get("mirrored_at") else None
        run = self.run
        new = old_run is None

        # fields the upstream sent malformed: keep what we had
        if self.lr.problems:
            bad = " ".join(p.reason for p in self.lr.problems)
            e.problems(self.lr.problems)
            self.failed = False  # recorded in quarantine; retrying would not fix the upstream
            for col, src in (("config", "config"), ("summary", "summaryMetrics"), ("system_metrics", "systemMetrics"),
                             ("history_keys", "historyKeys")):
                if src in bad:
                    setattr(run, col, getattr(old_run, col) if old_run else getattr(Run(name=""), col))

        # 1. history from the last mirrored step
        last_step = old_run.last_step if old_run and old_run.last_step is not None else -1
        appended = (None, None, 0)
        if ps.opts.history and self.lr.last_step > last_step:
            appended = self.fetch_history(last_step + 1, self.lr.last_step + 1)
            last_step = self.lr.last_step
        run.last_step = last_step if ps.opts.history else (old_run.last_step if old_run else -1)

        # 2. events (system metrics): only sampled access exists; refreshed when the run moved
        events: list[str] | None = None
        moved = new or self.retry or (old_run and (old_run.heartbeat_at, old_run.state, old_run.history_line_count)
                                      != (run.heartbeat_at, run.state, run.history_line_count))
        if ps.opts.events and moved:
            events = self.fetch_events()
        run.events_line_count = len(events) if events is not None else (old_run.events_line_count if old_run else 0)

        # 3. files
        files: list[tuple[RunFile, bool]] = []
        file_tombs: list[tuple[int, str]] = []
        files_listed = False
        if ps.opts.files and (new or self.retry or moved or self.lr.file_count is None
                              or str(self.lr.file_count) != (self.files_marker or "")
                              or (old_run and old_run.updated_at != run.updated_at)):
            files, file_tombs, files_listed = self.sync_files(run_pk=ps.cat.run_pk(ps.ppk, self.name))

        unfinished = run.state not in TERMINAL_STATES
        want_artifacts = ps.opts.artifacts and (new or self.retry or unfinished
                                                or (old_run is not None and old_run.state != run.state))

        # 4. one transaction: the run row with its new markers, and everything that hangs off it.
        # While its artifacts are still to be mirrored, a retry marker stays set: a crash before
        # they are done makes the next pass redo this run.
        with self.cat.transaction() as conn:
            run_pk = self.cat.upsert_run(ps.ppk, run, mirrored_at=utcnow())
            if new:
                ch.run_created(conn, ps.scope, self.name, state=run.state, display_name=run.display_name,
                               created_at=run.created_at)
            else:
                if old_run.state != run.state:
                    ch.run_state_changed(conn, ps.scope, self.name, old_run.state, run.state)
                diff = run_diff(old_run, run)
                if diff:
                    ch.run_updated(conn, ps.scope, self.name, diff)
            if appended[2]:
                ch.history_appended(conn, ps.scope, self.name, appended[0], appended[1], appended[2])
            if events is not None:
                cur = [r[0] for r in conn.execute("SELECT row FROM events WHERE run_pk = ? ORDER BY seq", [run_pk])]
                if cur != events:
                    self.cat.replace_events(run_pk, events)
                    e.stats.add("event_rows", len(events))
            for f, changed in files:
                self.cat.upsert_file(run_pk, f)
                ch.file_mirrored(conn, ps.scope, self.name, f.name, f.md5, f.size, changed)
            if files_listed and self.lr.file_count is not None:
                e.state_set(conn, ps.ppk, f"files:{self.name}", str(self.lr.file_count))
            e.state_set(conn, ps.ppk, f"retry:{self.name}", "1" if (self.failed or want_artifacts) else None)

        # 5. artifacts this run logged and used (each recorded and linked in its own transaction)
        if want_artifacts:
            try:
                self.sync_run_artifacts(run_pk)
            except (AuthError, RetryBudgetExhausted):
                raise
            except ApiError as err:
                e.error(f"{self.where} artifacts", err)
                self.failed = True
            if not self.failed:
                with self.cat.transaction() as conn:
                    e.state_set(conn, ps.ppk, f"retry:{self.name}", None)
        if files_listed:
            for fpk, fname in file_tombs:
                e.tombstone(Tombstone("file", "files", fpk, f"{self.where}/{fname}", ps.scope, run=self.name))
        e.stats.add("runs_new" if new else "runs_updated")

    # -- history -------------------------------------------------------------------------------
    def fetch_history(self, start: int, stop: int) -> tuple[int | None, int | None, int]:
        """Rows with start <= _step < stop, written in idempotent chunks (INSERT OR REPLACE).
        Returns (first step, last step, rows) actually stored."""
        ps = self.ps
        page = self.e.config.sync.history_page_size
        run_pk = self.cat.run_pk(ps.ppk, self.name)
        if run_pk is None:
            # history rows need the run's pk: create the row now without markers (a crash leaves a
            # row whose markers say "nothing mirrored yet", so the next pass redoes it)
            placeholder = Run(name=self.name, storage_id=self.run.storage_id, created_at=self.run.created_at,
                              state=None)
            run_pk = self.cat.upsert_run(ps.ppk, placeholder)
        first = last = None
        total = 0
        buf: list[tuple[int, str]] = []
        bad = 0
        for lo in range(start, stop, page):
            hi = min(lo + page, stop)
            for raw in self.client.history_page(ps.entity, ps.name, self.name, lo, hi):
                step, text, problem = parse_history_row(raw)
                if problem or step is None or not (lo <= step < hi):
                    bad += 1
                    if bad <= 5:
                        self.e.quarantine("history_row", f"{self.where}@{lo}-{hi}",
                                          problem or f"step {step} outside the requested window",
                                          str(raw)[:4096])
                    continue
                buf.append((step, text))
                first = step if first is None else min(first, step)
                last = step if last is None else max(last, step)
            if len(buf) >= HISTORY_CHUNK_ROWS:
                total += self._flush_history(run_pk, buf)
        total += self._flush_history(run_pk, buf)
        return first, last, total

    def _flush_history(self, run_pk: int, buf: list[tuple[int, str]]) -> int:
        if not buf:
            return 0
        n = len(buf)
        self.cat.append_history(run_pk, buf)
        self.e.stats.add("history_rows", n)
        self.e.progress.add(rows=n)
        buf.clear()
        return n

    # -- events --------------------------------------------------------------------------------
    def fetch_events(self) -> list[str]:
        ps = self.ps
        rows = self.client.events(ps.entity, ps.name, self.name, self.e.config.sync.events_samples)
        out: list[str] = []
        bad = 0
        for raw in rows:
            text = raw if isinstance(raw, str) else None
            ok = False
            if text is not None:
                try:
                    ok = isinstance(json.loads(text, strict=False), dict)
                except ValueError:
                    ok = False
            if not ok:
                bad += 1
                if bad <= 5:
                    self.e.quarantine("event_row", self.where, "malformed system-metrics row", str(raw)[:4096])
                continue
            out.append(text)
        return out

    # -- files ---------------------------------------------------------------------------------
    def sync_files(self, run_pk: int | None) -> tuple[list[tuple[RunFile, bool]], list[tuple[int, str]], bool]:
        ps, e = self.ps, self.e
        stored: dict[str, dict[str, Any]] = {}
        if run_pk is not None:
            stored = {r["name"]: r for r in self.cat.query(
                "SELECT pk, name, md5, tombstoned_at FROM files WHERE run_pk = ?", [run_pk])}
        problems: list[Problem] = []
        out: list[tuple[RunFile, bool]] = []
        listed: set[str] = set()
        for rf in self.client.run_files(ps.entity, ps.name, self.name, problems):
            f = rf.file
            listed.add(f.name)
            if not ps.opts.want_file(f.name):
                continue
            old = stored.get(f.name)
            if old and old["md5"] == f.md5 and old["tombstoned_at"] is None and self.e.objects.has(f.md5):
                continue
            if not f.md5:
                self.e.quarantine("file", f"{self.where}/{f.name}", "upstream gives no md5; cannot verify")
                continue
            url = rf.url if (rf.url and self.client.t.under_base(self.client.t.resolve(rf.url))) else (rf.direct_url or rf.url)
            if not url:
                self.e.quarantine("file", f"{self.where}/{f.name}", "upstream gives no download URL")
                continue
            try:
                had = self.e.objects.has(f.md5)
                info = self.client.fetch_to_store(url, self.e.objects, operation="GET file", expected_md5=f.md5,
                                                  expected_size=f.size)
            except IntegrityError as err:
                self.e.quarantine("file", f"{self.where}/{f.name}", f"download failed verification: {err}")
                if self.call_failed():
                    break
                continue
            except (AuthError, RetryBudgetExhausted):
                raise
            except ApiError as err:
                e.error(f"{self.where}/{f.name}", err)
                if self.call_failed():
                    break
                continue
            f.md5, f.size = info.md5, info.size
            out.append((f, old is not None))
            e.stats.add("files")
            if not had:
                e.stats.add("file_bytes", info.size)
                e.progress.add(files=1, bytes=info.size)
            else:
                e.progress.add(files=1)
        else:
            e.problems(problems)
            tombs = [(r["pk"], n) for n, r in stored.items() if n not in listed and r["tombstoned_at"] is None]
            return out, tombs, True
        # given up part-way: what was downloaded is recorded, the listing is incomplete (no tombstones,
        # no files marker) and the run's retry marker brings it back next pass
        e.problems(problems)
        return out, [], False

    # -- artifacts -----------------------------------------------------------------------------
    def sync_run_artifacts(self, run_pk: int) -> None:
        ps = self.ps
        for direction in ("output", "input"):
            for ra in self.client.run_artifacts(ps.entity, ps.name, self.name, direction):
                if not ps.opts.want_artifact_type(ra.artifact.type_name):
                    continue
                if ra.artifact.state != "COMMITTED":
                    continue
                if direction == "output":
                    pk = mirror_artifact(ps, ra, producer=(self.name, run_pk))
                else:
                    pk = mirror_artifact(ps, ra, consumer_pk=run_pk)
                if pk is None and self.call_failed():
                    return


def run_diff(old: Run, new: Run) -> dict[str, dict[str, Any]]:
    """The run_updated payload: what differs between the stored and the new run."""
    out: dict[str, dict[str, Any]] = {}
    d = ch.dict_diff(old.summary_values() if _loads_ok(old.summary) else {},
                     new.summary_values() if _loads_ok(new.summary) else {})
    if d:
        out["summary"] = d
    # config in W&B's wrapped form {"k": {"value": v, "desc": null}}, as stored (docs/plugins.md)
    d = ch.dict_diff(loads_lenient(old.config, {}) if _loads_ok(old.config) else {},
                     loads_lenient(new.config, {}) if _loads_ok(new.config) else {})
    if d:
        out["config"] = d
    for col, label in RUN_UPDATE_FIELDS:
        a, b = getattr(old, col), getattr(new, col)
        if a != b:
            if col in ("tags", "system_metrics"):
                a, b = loads_lenient(a, None), loads_lenient(b, None)
            out[label] = {"before": a, "after": b}
    return out


def _loads_ok(text: str | None) -> bool:
    try:
        return isinstance(loads_lenient(text, {}), dict)
    except ValueError:
        return False


# =============================================================================================
# one artifact version
# =============================================================================================
def mirror_artifact(ps: ProjectSync, ra: RemoteArtifact, *, producer: tuple[str, int] | None = None,
                    consumer_pk: int | None = None) -> int | None:
    """Mirror one committed artifact version (or refresh its aliases); returns its pk, None on failure.

    `producer` (run name, run pk) / `consumer_pk` link the version to the run that logged / used it,
    in the same transaction that records (or refreshes) the version."""
    e = ps.e
    a = ra.artifact
    where = f"{ra.entity}/{ra.project}/{a.collection_name}:v{a.version_index}"
    if ra.problems:
        e.problems(ra.problems)
        return None
    if a.state != "COMMITTED":
        return None
    with e.artifact_lock(a.id):
        row = e.cat.query_one("SELECT pk, aliases, tags, description, metadata, manifest_md5, tombstoned_at, collection_pk "
                              "FROM artifacts WHERE id = ?", [a.id])
        if row and row["manifest_md5"] and e.objects.has(row["manifest_md5"]):
            return _refresh_artifact(ps, ra, row, producer, consumer_pk)
        try:
            return _mirror_new_artifact(ps, ra, producer, consumer_pk, where)
        except IntegrityError as err:
            e.quarantine("artifact", where, str(err))
            return None
        except (AuthError, RetryBudgetExhausted):
            raise
        except ApiError as err:
            e.error(where, err)
            return None


def _scope_for(ps: ProjectSync, ra: RemoteArtifact) -> ch.Scope:
    return ch.Scope(ps.e.pass_id, ra.entity or ps.entity, ra.project or ps.name)


def _link(conn: Any, artifact_pk: int, producer: tuple[str, int] | None, consumer_pk: int | None) -> None:
    if producer is not None:
        conn.execute("UPDATE artifacts SET producer_run_pk = ? WHERE pk = ? AND producer_run_pk IS NOT ?",
                     [producer[1], artifact_pk, producer[1]])
    if consumer_pk is not None:
        conn.execute("INSERT OR IGNORE INTO artifact_usage (artifact_pk, run_pk) VALUES (?, ?)", [artifact_pk, consumer_pk])


def _refresh_artifact(ps: ProjectSync, ra: RemoteArtifact, row: dict[str, Any], producer: tuple[str, int] | None,
                      consumer_pk: int | None) -> int:
    a = ra.artifact
    old_aliases = json.loads(row["aliases"] or "[]")
    new_aliases = a.alias_list()
    if (old_aliases == new_aliases and row["tags"] == a.tags and row["description"] == a.description
            and row["metadata"] == a.metadata and row["tombstoned_at"] is None):
        if producer is not None or consumer_pk is not None:
            with ps.cat.transaction() as conn:
                _link(conn, row["pk"], producer, consumer_pk)
        return row["pk"]
    with ps.cat.transaction() as conn:
        _link(conn, row["pk"], producer, consumer_pk)
        conn.execute("UPDATE artifacts SET aliases = ?, tags = ?, description = ?, metadata = ?, updated_at = ?, "
                     "tombstoned_at = NULL WHERE pk = ?",
                     [a.aliases, a.tags, a.description, a.metadata, a.updated_at, row["pk"]])
        if old_aliases != new_aliases:
            added = [x for x in new_aliases if x not in old_aliases]
            removed = [x for x in old_aliases if x not in new_aliases]
            ch.artifact_aliases_changed(conn, _scope_for(ps, ra), artifact_id=a.id, collection=a.collection_name,
                                        version_index=a.version_index, added=added, removed=removed,
                                        aliases=new_aliases)
    return row["pk"]


def manifest_digest(contents: dict[str, str], algorithm: str) -> str:
    """The artifact digest of a manifest: MANIFEST_MD5 (ids.artifact_manifest_digest) or MANIFEST_XXH128."""
    if algorithm == "MANIFEST_XXH128":
        h = xxhash.xxh3_128(b"wandb-artifact-manifest-v1\n")
        for path in sorted(contents):
            h.update(f"{path}:{contents[path]}\n".encode())
        return h.hexdigest()
    return ids.artifact_manifest_digest(contents)


def _mirror_new_artifact(ps: ProjectSync, ra: RemoteArtifact, producer: tuple[str, int] | None,
                         consumer_pk: int | None, where: str) -> int | None:
    e, client = ps.e, ps.client
    a = ra.artifact
    # 1. the manifest: fetched, parsed, checked against the artifact digest before anything is kept.
    # Its bytes have no digest of their own, so a body garbled in transit shows up as unparsable or
    # as a digest mismatch: fetch it again (bounded, like file downloads), then quarantine.
    url = client.manifest_url(a.id)
    if not url:
        e.quarantine("artifact", where, "upstream has no manifest for this version")
        return None
    algorithm = a.digest_algorithm or "MANIFEST_MD5"
    if algorithm not in ("MANIFEST_MD5", "MANIFEST_XXH128"):
        e.quarantine("artifact", where, f"unknown digest algorithm {algorithm!r}")
        return None
    reason = detail = None
    entries: list[ArtifactEntry] = []
    raw = b""
    for _attempt in range(max(1, client.t.retry.integrity_attempts)):
        raw = client.fetch_bytes(url, operation="GET manifest")
        reason = detail = None
        try:
            manifest = json.loads(raw)
        except ValueError as err:
            reason, detail = f"manifest is not JSON: {err}", raw[:4096].decode(errors="replace")
            continue
        entries, problem = parse_manifest(manifest)
        if problem:
            reason, detail = f"manifest rejected: {problem}", raw[:4096].decode(errors="replace")
            continue
        computed = manifest_digest({x.path: x.digest for x in entries}, algorithm)
        if a.digest != computed:
            reason = f"artifact digest mismatch: server says {a.digest}, manifest gives {computed}"
            continue
        break
    if reason:
        e.quarantine("artifact", where, reason, detail)
        return None

    # 2. every non-reference file, verified against its manifest digest while it streams
    need: list[ArtifactEntry] = []
    for x in entries:
        if x.ref is not None:
            continue
        if x.md5 and e.objects.has(x.md5):
            continue
        if x.md5 is None:  # XXH128 entry: known from an earlier version?
            known = e.cat.scalar("SELECT md5 FROM artifact_files WHERE digest = ? AND size = ? AND md5 IS NOT NULL "
                                 "AND extra LIKE '%XXH128%' LIMIT 1", [x.digest, x.size])
            if known and e.objects.has(known):
                x.md5 = known
                continue
        need.append(x)
    if need:
        urls = client.artifact_file_urls(ra.entity, ra.project, a.collection_name, a.version_index)
        for x in need:
            url = urls.get(x.path)
            if not url:
                # the manifest and the upstream's file listing disagree: report the entry by its path
                e.quarantine("artifact_file", f"{where}/{x.path}",
                             "the manifest lists this file but upstream gives no download URL for it")
                return None
            xx = x.digest if "XXH128" in (x.extra or "") else None
            try:
                info = client.fetch_to_store(url, e.objects, operation="GET artifact file", expected_md5=x.md5,
                                             expected_size=x.size, xxh128_b64=xx)
            except IntegrityError as err:
                e.quarantine("artifact_file", f"{where}/{x.path}", f"download failed verification: {err}")
                return None
            x.md5 = info.md5
            e.stats.add("artifact_files")
            e.stats.add("artifact_bytes", info.size)
            e.progress.add(bytes=info.size)
    minfo = e.objects.put_bytes(raw)
    a.manifest_md5 = minfo.md5

    # 3. one transaction: collection, type, version, entries, change event
    ppk = e.ensure_project(ra.entity, ra.project, id=ra.project_id, internal_id=ra.project_internal_id)
    scope = _scope_for(ps, ra)
    with e.cat.transaction() as conn:
        conn.execute("INSERT OR IGNORE INTO artifact_collections (project_pk, name, type_name) VALUES (?, ?, ?)",
                     [ppk, a.collection_name, a.type_name])
        cpk = conn.execute("SELECT pk FROM artifact_collections WHERE project_pk = ? AND name = ?",
                           [ppk, a.collection_name]).fetchone()[0]
        conn.execute("INSERT OR IGNORE INTO artifact_types (project_pk, name) VALUES (?, ?)", [ppk, a.type_name])
        clash = conn.execute("SELECT pk, id FROM artifacts WHERE collection_pk = ? AND version_index = ? AND id != ?",
                             [cpk, a.version_index, a.id]).fetchone()
        if clash:
            # the upstream re-created this version number (deleted and re-logged): keep the old row,
            # tombstoned, under a negative index so both stay addressable.
            conn.execute("UPDATE artifacts SET version_index = -pk, tombstoned_at = COALESCE(tombstoned_at, ?) WHERE pk = ?",
                         [utcnow(), clash[0]])
        apk = e.cat.upsert_artifact(cpk, a, entries, producer_run_pk=producer[1] if producer else None)
        _link(conn, apk, None, consumer_pk)
        ch.artifact_version_mirrored(conn, scope, artifact_id=a.id, collection=a.collection_name, type_name=a.type_name,
                                     version_index=a.version_index, digest=a.digest, aliases=a.alias_list(),
                                     size=a.size, file_count=len(entries), run=producer[0] if producer else None)
    e.stats.add("artifacts")
    e.progress.add(artifacts=1)
    return apk


def parse_manifest(manifest: Any) -> tuple[list[ArtifactEntry], str | None]:
    """Manifest v1 -> entries (md5 hex filled for md5 entries). Rejects unsafe paths and bad fields."""
    if not isinstance(manifest, dict):
        return [], "not a JSON object"
    if manifest.get("version") != 1:
        return [], f"unsupported manifest version {manifest.get('version')!r}"
    contents = manifest.get("contents")
    if not isinstance(contents, dict):
        return [], "no contents"
    out: list[ArtifactEntry] = []
    for path, entry in contents.items():
        reason = unsafe_path_reason(path)
        if reason:
            return [], f"unsafe entry path {path[:200]!r}: {reason}"
        if not isinstance(entry, dict):
            return [], f"entry {path!r} is not an object"
        digest = entry.get("digest")
        size = entry.get("size", 0)
        if not isinstance(digest, str) or not digest:
            return [], f"entry {path!r} has no digest"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return [], f"entry {path!r} has an invalid size {size!r}"
        ref = entry.get("ref")
        if ref is not None and not isinstance(ref, str):
            return [], f"entry {path!r} has an invalid ref"
        extra = entry.get("extra") or {}
        if not isinstance(extra, dict):
            return [], f"entry {path!r} has an invalid extra"
        md5 = None
        if ref is None:
            if extra.get("alg") == "XXH128":
                try:
                    if len(base64.b64decode(digest, validate=True)) != 16:
                        raise ValueError
                except ValueError:
                    return [], f"entry {path!r} has an invalid XXH128 digest"
            else:
                md5 = md5_b64_to_hex(digest)
                if md5 is None:
                    return [], f"entry {path!r} has an invalid md5 digest {digest[:40]!r}"
        birth = entry.get("birthArtifactID")
        out.append(ArtifactEntry(path=path, digest=digest, size=size, md5=md5, ref=ref,
                                 birth_artifact_id=birth if isinstance(birth, str) else None,
                                 extra=json.dumps(extra)))
    return out, None


def run_pass(config: Config, store: Store | None = None, *, client: WandbClient | None = None,
             progress: Progress | None = None, force_reconcile: bool = False, lock: bool = True) -> PassResult:
    """One pass of `config`, taking the store lock unless `lock=False` (the caller holds it)."""
    own = store is None
    store = store or Store(config.store_path)
    try:
        if lock:
            with store.lock("sync"):
                return Engine(config, store, client, progress=progress, force_reconcile=force_reconcile).run_pass()
        return Engine(config, store, client, progress=progress, force_reconcile=force_reconcile).run_pass()
    finally:
        if own:
            store.close()


__all__ = ["Engine", "PassResult", "run_pass", "make_client", "preflight", "parse_manifest", "manifest_digest",
           "StoreUnwritable", "store_failure"]
