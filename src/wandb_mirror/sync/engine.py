"""One mirror pass: upstream -> verified objects -> catalog rows + change events.

A pass asks who the key belongs to, decides which projects to mirror (the configured entities, or
the viewer's default one, filtered by the project globs), syncs each project (project.py: runs,
artifacts, sweeps, reports), applies the tombstones it proved, and records itself as a row of
`passes`. The suite:

    engine.py     the pass (this file): viewer, which projects, each project, tombstones, the pass row
    project.py    one project: listing mode and created-at watermark; runs, artifacts, sweeps, reports
    runs.py       one run -> one catalog transaction (history, events, files, then its artifacts)
    history.py    a run's history in windows that follow its rows; rewrites upstream detected
    artifacts.py  types and collections, a collection's versions, one verified version
    reconcile.py  listed vs stored -> new / changed / gone, and when a listing proves a deletion
    ledger.py     what a pass learns (stats, errors, quarantine, tombstone candidates, abort) and
                  `Ledger.unit(where)`, the one error policy
    context.py    what the engine hands down to every unit (client, catalog, objects, ledger...)
    changes.py    the change log's kinds and payloads
    progress.py   the progress line

Every catalog write is a named method of the catalog (store/sync_records.py); no SQL lives here.

An unchanged project costs its change-marker listing (one Runs page per 1,000 runs, up to
`marker_listing_max_runs`) plus a constant: ProjectArtifactTypes, one collection listing per
artifact type, GetSweeps, ProjectViews (docs/benchmarks.md). Tombstones are applied at the end of a pass that had no errors, never otherwise; local data is
never deleted.

Failure handling (docs/reliability.md): a run whose upstream calls fail for good RUN_FAILURE_LIMIT
times is given up for the pass (reported, retried next pass) instead of spending the pass's retry
budget; a run listing that repeats runs across pages or holds fewer than runCount is not trusted
for deletions; a store that cannot be written (disk full, read-only, I/O error: `store_failure`)
stops the pass at once with StoreUnwritable; temp objects a killed writer left are removed at the
first pass of the process.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..client import ApiError, AuthError, RetryPolicy, Transport, Viewer, WandbClient, resolve_api_key
from ..config import Config
from ..errors import MirrorError, PassAborted, WorkFailed
from ..models import Project
from ..name_rules import identifier_problem
from ..org_models import REGISTRY_PREFIX
from ..store import Store
from ..store.claims import Claims, project_key
from ..store.location import open_store
from ..store.sync_records import PassEnd
from ..times import utcnow
from . import changes as ch
from .artifacts import manifest_digest, parse_manifest
from .context import Context
from .ledger import Ledger, StoreUnwritable, store_failure
from .org_units import sync_org_pass
from .progress import NullProgress, Progress
from .project import sync_project
from .reconcile import tombstone
from .runs import run_diff

log = logging.getLogger("wandb_mirror.sync")


@dataclass
class PassResult:
    pass_id: int
    status: str                 # ok | errors | failed | stopped
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


def _delta(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in now.items():
        if isinstance(v, dict):
            b = before.get(k) or {}
            out[k] = {op: n - b.get(op, 0) for op, n in v.items() if n - b.get(op, 0)}
        elif isinstance(v, (int, float)):
            out[k] = v - (before.get(k) or 0)
    return out


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


def preflight(config: Config, client: WandbClient) -> Viewer:
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


class SyncEngine:
    """Runs passes of `config` into `store`. The caller holds the store lock (Store.lock())."""

    def __init__(self, config: Config, store: Store, client: WandbClient | None = None, *,
                 progress: Progress | None = None, force_reconcile: bool = False, api_key: str | None = None,
                 viewer: Viewer | None = None, claims: Claims | None = None) -> None:
        self.config = config
        # several workers on one store (store/claims.py): each project, the organization and the
        # history compaction are done by whichever worker holds their lease; None: this process
        # holds the store lock alone and does everything
        self.claims = claims
        self._fresh_since: str | None = None
        # the answer of a preflight check, reused by the first pass instead of asking again
        self._viewer = viewer
        self.store = store
        self.client = client or make_client(config, api_key)
        self.progress = progress or NullProgress()
        if self.progress.requests is None:
            self.progress.requests = lambda: self.client.stats.total
        self.force_reconcile = force_reconcile
        self._tmp_cleaned = False

    def run_pass(self, *, fresh_since: str | None = None) -> PassResult:
        """One pass. With claims, `fresh_since` (a utcnow() stamp) skips the units another worker
        finished since then (they are not due yet)."""
        cat = self.store.catalog
        self._fresh_since = fresh_since
        started = utcnow()
        t0 = time.monotonic()
        req_before = self.client.stats.snapshot()
        ledger = Ledger(cat, None, self.store.path)
        try:
            # We hold the store lock, so at the first pass a temp object is what a killed writer left
            # (kill -9 mid-download): `sync` removes them like the daemon does at start.
            if not self._tmp_cleaned and self.claims is None:  # once per process: later ones are our own
                removed = self.store.objects.clean_tmp()
                self._tmp_cleaned = True
                if removed:
                    log.info("removed %d temp files left by an interrupted writer", removed)
            if self.claims is None:
                ledger.pass_id, first_seq = cat.begin_pass(started)
            else:
                ledger.pass_id, first_seq = cat.begin_pass(started, worker=self.claims.worker,
                                                           stale_before=self.claims.stale_before())
        except (OSError, sqlite3.Error) as e:
            if store_failure(e):
                raise ledger.unwritable(e) from None
            raise
        cx = Context(self.config.sync, self.client, cat, self.store.objects, ledger, self.progress)
        fatal: BaseException | None = None
        try:  # units record their own errors; what gets here ends the pass (and must not leave it 'running')
            try:
                self._pass_body(cx)
                self._compact_history(cx)
            except Exception as e:
                if store_failure(e) and not isinstance(e, PassAborted):
                    raise ledger.unwritable(e) from None
                raise
        except MirrorError as e:
            fatal = e
            ledger.error("pass", e)
        except Exception as e:
            fatal = e
            ledger.error("pass", f"{type(e).__name__}: {e}")
            log.exception("pass failed")
        status = "failed" if fatal is not None else "errors" if ledger.errors else "ok"
        if isinstance(fatal, PassAborted) and not isinstance(fatal, StoreUnwritable) and self._stop_requested():
            status = "stopped"  # asked to stop (signal, daemon shutdown): the next pass resumes
        if status == "ok":
            ledger.stats.add("tombstoned", cat.apply_tombstones(ledger.tombstones))
        elif ledger.tombstones:
            log.info("pass had errors: %d tombstone candidates not applied", len(ledger.tombstones))
        self.progress.finish()
        return self._finish(cx, started, t0, req_before, status, fatal, first_seq)

    def _stop_requested(self) -> bool:
        stop = self.client.t.stop
        return stop is not None and stop.is_set()

    def _finish(self, cx: Context, started: str, t0: float, req_before: dict[str, Any], status: str,
                fatal: BaseException | None, first_seq: int) -> PassResult:
        ledger = cx.ledger
        finished = utcnow()
        req_stats = self.client.stats.snapshot()
        requests = req_stats["total"] - req_before["total"]
        stats: dict[str, Any] = dict(ledger.stats.snapshot())
        stats["requests"] = req_stats  # cumulative over the client's life (the daemon takes deltas)
        stats["requests_pass"] = _delta(req_stats, req_before)
        pass_id = ledger.pass_id or 0
        try:
            last_seq = cx.catalog.finish_pass(PassEnd(pass_id, finished, status, requests, stats, ledger.errors))
        except (OSError, sqlite3.Error) as e:
            # the pass cannot even be recorded (the next pass marks it interrupted): say why, in one line
            if store_failure(e):
                raise (fatal if isinstance(fatal, StoreUnwritable) else ledger.unwritable(e)) from None
            raise
        result = PassResult(pass_id=pass_id, status=status, started_at=started, finished_at=finished,
                            seconds=time.monotonic() - t0, requests=requests, stats=stats, errors=list(ledger.errors),
                            first_change_seq=first_seq + 1 if last_seq > first_seq else None,
                            last_change_seq=last_seq if last_seq > first_seq else None)
        if isinstance(fatal, AuthError):
            raise fatal
        return result

    def _pass_body(self, cx: Context) -> None:
        viewer, self._viewer = self._viewer or self.client.viewer(), None
        if viewer is None:
            raise AuthError(f"API key rejected by {self.client.t.host} (the server does not know this key)")
        cx.catalog.record_viewer(viewer.user, viewer.entity, [t for t in viewer.teams if not identifier_problem(t)],
                                 self.config.source.base_url)
        projects: list[Project] = []
        listed: list[tuple[str, str]] = []
        entities = self._entities(viewer)
        for entity in entities:
            projects += self._projects_of(cx, entity, listed)
        if not cx.ledger.errors:  # a failed listing is reported as such, not as a typo
            for what in self.config.unmatched(listed, entities):
                log.warning("%s; check the configuration", what)
        cx.ledger.stats.add("projects", len(projects))
        for p in projects:
            with self._claimed(cx, project_key(p.entity, p.name)) as mine:
                if mine:
                    with cx.ledger.unit(f"{p.entity}/{p.name}"):
                        sync_project(cx, p, self.config.project_options(p.entity, p.name),
                                     force_reconcile=self.force_reconcile)
        if self.config.sync.organization:
            with self._claimed(cx, "organization") as mine:
                if mine:
                    with cx.ledger.unit("organization"):
                        sync_org_pass(cx, entities)

    @contextmanager
    def _claimed(self, cx: Context, key: str) -> Iterator[bool]:
        """Whether this worker does the unit `key` now (it holds its lease for the block); the lease
        is given back at the end, as done unless the pass was cut short (then it stays due)."""
        if self.claims is None:
            yield True
            return
        if not self.claims.claim(key, fresh_since=self._fresh_since):
            cx.ledger.stats.add("units_left_to_other_workers")
            yield False
            return
        errors = len(cx.ledger.errors)
        if key.startswith("project:"):
            cx.ledger.stats.add("projects_synced")
        try:
            yield True
        except BaseException:
            self.claims.release(key)
            raise
        self.claims.release(key, status="errors" if len(cx.ledger.errors) > errors else "ok")

    def _entities(self, viewer: Viewer) -> list[str]:
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
        return entities

    def _projects_of(self, cx: Context, entity: str, listed_all: list[tuple[str, str]]) -> list[Project]:
        """The selected projects of `entity`; tombstone candidates for mirrored ones it no longer has."""
        ledger = cx.ledger
        reason = identifier_problem(entity)
        if reason:
            ledger.error(f"entity {entity!r}", f"unsafe name: {reason}")
            return []
        listed: set[str] = set()
        projects: list[Project] = []
        with ledger.unit(f"projects of {entity}") as unit:
            for p in self.client.projects(entity):
                reason = identifier_problem(p.name)
                if reason:
                    ledger.quarantine("project", f"{entity}/{p.name[:200]}", f"unsafe project name: {reason}")
                    continue
                if p.entity != entity:
                    p.entity = entity
                listed.add(p.name)
                listed_all.append((entity, p.name))
                if p.name.startswith(REGISTRY_PREFIX):
                    continue  # a registry: its links are mirrored by the organization unit
                if self.config.selects(entity, p.name):
                    projects.append(p)
        if unit.failed:
            return []
        cx.catalog.add_entity(entity)
        for pk, name in cx.catalog.live_projects(entity):
            if name not in listed and self.config.selects(entity, name) and not name.startswith(REGISTRY_PREFIX):
                ledger.tombstone(tombstone("projects", pk, ch.Scope(ledger.pass_id, entity, name), "project",
                                           f"{entity}/{name}"))
        return projects

    def _compact_history(self, cx: Context) -> None:
        """Finished runs' history (and long tails) into Parquet segments. A store made before
        segments existed is migrated here, run by run, by its first pass (each run is atomic, so an
        interrupted migration resumes at the next pass)."""
        with self._claimed(cx, "compaction") as mine:
            runs, rows = self.store.history.compact_due() if mine else (0, 0)
        if runs:
            cx.ledger.stats.add("history_segments_written", runs)
            cx.ledger.stats.add("history_rows_compacted", rows)




def run_pass(config: Config, store: Store | None = None, *, client: WandbClient | None = None,
             progress: Progress | None = None, force_reconcile: bool = False, lock: bool = True) -> PassResult:
    """One pass of `config`, taking the store lock unless `lock=False` (the caller holds it)."""
    own = store is None
    store = store or open_store(config)
    try:
        if lock:
            with store.lock("sync"):
                return SyncEngine(config, store, client, progress=progress, force_reconcile=force_reconcile).run_pass()
        return SyncEngine(config, store, client, progress=progress, force_reconcile=force_reconcile).run_pass()
    finally:
        if own:
            store.close()


__all__ = ["SyncEngine", "PassResult", "run_pass", "make_client", "preflight", "parse_manifest", "manifest_digest",
           "run_diff", "StoreUnwritable", "store_failure"]
