"""One project of a pass: its mode and watermark; then runs, artifacts, sweeps and reports.

Four listing modes (sync_state keys per project):
- initial (no `created_watermark` yet): every run with the full fragment;
- incremental: one Runs query with the full fragment whose filter is
    {"$or": [{"createdAt": {"$gte": watermark}}, {"state": {"$in": UNFINISHED}}, {"name": {"$in": [...]}}]}
  i.e. runs created since the watermark ($gte, because runs can share a timestamp; the catalog
  comparison drops the ones already mirrored), runs upstream reports unfinished, and runs the
  catalog holds as unfinished or that need a retry (so a run that finished between passes is seen);
- markers (every other pass of a project with at most `marker_listing_max_runs` runs): every run's
  change markers with the light fragment, 1,000 runs a page, exactly as a reconcile lists them, so
  an edit of a finished run, a file uploaded or deleted, or a deleted run arrives at the next pass
  for ceil(runs / 1000) requests (docs/benchmarks.md); larger projects use `incremental` between
  reconciles;
- reconcile (every `reconcile_interval`, or forced): every run with the light fragment plus the
  change markers (updatedAt, fileCount, heartbeatAt, state, historyLineCount, tags, notes...);
  runs whose markers differ from the catalog are fetched in full (one Run query each); runs the
  catalog has and upstream no longer lists become tombstone candidates.
Each changed run is handed to a worker (thread pool bounded by `concurrency`) running runs.sync_run.
Artifacts (artifacts.py), sweeps and reports follow, each a unit of its own.

A new project-level unit (registries, say) is one more `with ledger.unit(...)` step of `sync`,
gated by its ProjectOptions flag, taking (cx, proj) like the others.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .. import events as ev
from .. import times
from ..client import Problem, RunListing, RunsInfo
from ..config import ProjectOptions
from ..models import Project
from ..name_rules import identifier_problem, run_id_problem
from . import changes as ch
from .artifacts import sync_artifacts
from .context import Context, ProjectRef
from .reconcile import Listing, Verdict, judge, proves_deletions, tombstone
from .runs import TERMINAL_STATES, sync_run

OLD_FILE_REFUSAL = "unsafe file name: "  # how quarantine rows read before name_rules
OLD_RUN_REFUSAL = "unsafe run id: "
OLD_ENTRY_REFUSAL = "unsafe entry path "

log = logging.getLogger("wandb_mirror.sync")

UNFINISHED_STATES = ["running", "pending", "preempting", "preempted"]
MARKER_PAGE = 1000  # runs per page of a change-marker listing (the light fragment)
QUEUED_RUNS_PER_THREAD = 4  # runs listed ahead of the workers: enough to keep them busy, bounded in memory
SWEEP_DONE_STATES = frozenset({"FINISHED", "CANCELED", "CRASHED", "FAILED"})
SWEEP_FIELDS = ("display_name", "config", "method", "state", "description", "best_loss", "run_count",
                "run_count_expected", "updated_at", "metric_name", "metric_goal")


def sync_project(cx: Context, project: Project, proj_opts: ProjectOptions, *, force_reconcile: bool) -> None:
    """One project, start to end. Errors of its parts are recorded in the ledger by their units."""
    ProjectSync(cx, project, proj_opts, force_reconcile).sync()


class ProjectSync:
    def __init__(self, cx: Context, project: Project, opts: ProjectOptions, force_reconcile: bool) -> None:
        self.cx = cx
        self.project = project
        self.opts = opts
        self.force_reconcile = force_reconcile
        self.lock = threading.Lock()
        self.failed_created: list[str] = []
        self.max_created: str | None = None
        self.runs_complete = False

    def sync(self) -> None:
        cx, project = self.cx, self.project
        existing = cx.catalog.get_project(project.entity, project.name)
        if existing:
            project.internal_id = project.internal_id or existing.internal_id
            project.description = project.description or existing.description
        pk = cx.catalog.upsert_project(project)
        cx.known_project(project.entity, project.name, pk)
        proj = self.proj = ProjectRef(project.entity, project.name, pk, self.opts,
                                      ch.Scope(cx.ledger.pass_id, project.entity, project.name))
        cx.progress.set_project(proj.where)

        watermark = cx.catalog.sync_state(pk, "created_watermark")
        last_reconcile = times.epoch(cx.catalog.sync_state(pk, "last_reconcile"))
        stored = cx.catalog.stored_runs(pk)
        if watermark is None:
            mode = "initial"
        elif (self.force_reconcile or last_reconcile is None
              or time.time() - last_reconcile >= cx.settings.reconcile_interval):
            mode = "reconcile"
        elif len(stored) <= cx.settings.marker_listing_max_runs:
            mode = "markers"
        else:
            mode = "incremental"
        log.debug("%s: %s pass", proj.where, mode)

        self.sync_runs(mode, watermark, stored)
        if self.opts.artifacts:
            with cx.ledger.unit(f"{proj.where} artifacts", on_fail=proj.failed):
                sync_artifacts(cx, proj, mode in ("initial", "reconcile"))
        if self.opts.sweeps:
            with cx.ledger.unit(f"{proj.where} sweeps", on_fail=proj.failed):
                self.sync_sweeps()
        if self.opts.reports:
            with cx.ledger.unit(f"{proj.where} reports", on_fail=proj.failed):
                self.sync_reports()

        # The created-at watermark moves only over runs that are recorded: after a complete listing
        # it becomes the newest createdAt seen, or the oldest createdAt of a run that failed.
        new_wm = watermark
        if self.runs_complete:
            if self.failed_created:
                new_wm = min(self.failed_created)
            elif self.max_created:
                new_wm = max(self.max_created, watermark or "")
        state: dict[str, str | None] = {}
        if new_wm is not None and new_wm != watermark:
            state["created_watermark"] = new_wm
        if proj.ok and mode in ("initial", "reconcile"):
            state["last_reconcile"] = times.wandb_time()
        cx.catalog.set_sync_state(pk, state)

    # -- runs ------------------------------------------------------------------------------------
    def sync_runs(self, mode: str, watermark: str | None, stored: dict[str, dict[str, Any]]) -> None:
        cx, proj, ledger = self.cx, self.proj, self.cx.ledger
        client = cx.client
        markers = cx.catalog.sync_states(proj.pk, "files:")
        # what an older mirror refused under rules that kept fewer names (a backslash, a control
        # character, `a//b`, a run `..`): files' runs are fetched once more, runs come with the
        # next full listing; what name_rules still refuses is quarantined again in today's words
        cx.catalog.retry_refused(proj.pk, proj.where, "file", OLD_FILE_REFUSAL)
        cx.catalog.retry_refused(proj.pk, proj.where, "run", OLD_RUN_REFUSAL)
        cx.catalog.retry_refused(proj.pk, proj.where, "artifact", OLD_ENTRY_REFUSAL)  # versions retry every pass
        retry = set(cx.catalog.sync_states(proj.pk, "retry:"))
        info = RunsInfo()
        listing: Listing[str] = Listing()
        futures: list[Future[None]] = []
        queued = threading.BoundedSemaphore(max(QUEUED_RUNS_PER_THREAD * cx.settings.concurrency, 16))
        with ThreadPoolExecutor(max_workers=cx.settings.concurrency, thread_name_prefix="sync") as pool:
            with ledger.unit(f"{proj.where} runs", on_fail=proj.failed) as unit:
                if mode == "incremental":
                    names = sorted({n for n, r in stored.items()
                                    if r["tombstoned_at"] is None and r["state"] not in TERMINAL_STATES} | retry)
                    clauses: list[dict[str, Any]] = [{"createdAt": {"$gte": watermark}},
                                                     {"state": {"$in": UNFINISHED_STATES}}]
                    if names:
                        clauses.append({"name": {"$in": names}})
                    runs = client.runs(proj.entity, proj.name, filters={"$or": clauses}, full=True, info=info)
                else:
                    runs = client.runs(proj.entity, proj.name, full=(mode == "initial"), info=info,
                                       per_page=None if mode == "initial" else max(MARKER_PAGE, client.page_size))
                for lr in runs:
                    name = lr.run.run_id
                    reason = run_id_problem(name)
                    if reason:
                        ledger.quarantine("run", f"{proj.where}/{name!r}"[:500], f"refused run id: {reason}")
                        continue
                    listing.add(name)
                    ledger.stats.add("runs_seen")
                    if lr.run.created_at and (self.max_created is None or lr.run.created_at > self.max_created):
                        self.max_created = lr.run.created_at
                    old = stored.get(name)
                    if not self.needs_work(lr, old, markers.get(name), name in retry):
                        continue
                    cx.progress.add_runs(1)
                    # the listing waits while enough runs are queued: a queued run holds its whole
                    # listed record (config, summary, keys), so an unbounded queue grows with the project
                    queued.acquire()
                    try:
                        fut = pool.submit(self.run_worker, lr, old, markers.get(name), name in retry)
                    except BaseException:
                        queued.release()
                        raise
                    fut.add_done_callback(lambda _: queued.release())
                    futures.append(fut)
                if not info.found:
                    proj.failed()
                    ledger.error(f"{proj.where} runs", "the project is gone upstream (Runs returned no project)")
                elif not info.complete():
                    # duplicates across pages or fewer runs than runCount: some runs may be missing from
                    # this listing, so absent runs are not tombstoned and the watermark does not move
                    log.warning("%s: the run listing looks incomplete (%d listed, %d repeated, runCount %s); "
                                "no run is treated as deleted this pass", proj.where, info.listed, info.duplicates,
                                info.run_count)
                    ledger.stats.add("incomplete_listings")
            try:
                for f in futures:
                    f.result()  # workers catch their own errors; this re-raises only fatal ones
            except BaseException:
                for f in futures:
                    f.cancel()  # the pass is ending: runs still queued wait for the next one
                raise
        if info.internal_id:
            cx.catalog.set_project_internal_id(proj.pk, info.internal_id)
        self.runs_complete = not unit.failed and info.complete()
        if not self.runs_complete:
            listing.refused()
        if mode != "incremental":
            for name, r in listing.gone(stored):
                if r["tombstoned_at"] is None:
                    ledger.tombstone(tombstone("runs", r["pk"], proj.scope, "run", f"{proj.where}/{name}", run=name))

    def needs_work(self, lr: RunListing, old: dict[str, Any] | None, files_marker: str | None, retry: bool) -> bool:
        if old is None or retry or old["tombstoned_at"] is not None or old["mirrored_at"] is None:
            return True
        return judge(lr, old, lambda listed, stored: self._moved(listed, stored, files_marker)) is Verdict.CHANGED

    def _moved(self, lr: RunListing, old: dict[str, Any], files_marker: str | None) -> bool:
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
            payload = self.cx.catalog.run_payload(old["pk"])
            if payload and (r.config, r.summary, r.system_metrics) != payload:
                return True
        return False

    def run_worker(self, lr: RunListing, old: dict[str, Any] | None, files_marker: str | None, retry: bool) -> None:
        cx, proj = self.cx, self.proj
        if cx.ledger.aborted is not None:  # the pass is stopping (disk full...): queued runs wait for the next
            cx.progress.run_done()
            self.note_failed(lr, old)
            return
        try:
            with cx.ledger.unit(f"{proj.where}/{lr.run.run_id}", on_fail=lambda: self._run_failed(lr, old)):
                if not lr.full:
                    full = cx.client.run(proj.entity, proj.name, lr.run.run_id)
                    if full is None:
                        return  # deleted between the listing and now; the next reconcile tombstones it
                    lr = full
                sync_run(cx, proj, lr, old, files_marker, retry)
        finally:
            cx.progress.run_done()

    def _run_failed(self, lr: RunListing, old: dict[str, Any] | None) -> None:
        self.proj.failed()
        self.note_failed(lr, old)

    def note_failed(self, lr: RunListing, old: dict[str, Any] | None) -> None:
        """A run that was not recorded. A new one holds the created-at watermark back so the next
        incremental pass lists it again; a known one is found again by its unchanged markers."""
        if old is not None and old.get("mirrored_at"):
            return
        with self.lock:
            if lr.run.created_at:
                self.failed_created.append(lr.run.created_at)

    # -- sweeps, reports ---------------------------------------------------------------------------
    def sync_sweeps(self) -> None:
        cx, proj = self.cx, self.proj
        problems: list[Problem] = []
        listing: Listing[str] = Listing()
        for s in cx.client.sweeps(proj.entity, proj.name, problems):
            if identifier_problem(s.name):
                cx.ledger.quarantine("sweep", f"{proj.where}/{s.name[:200]}", "unsafe sweep name")
                continue
            listing.add(s.name)
            old = cx.catalog.sweep_row(proj.pk, s.name)
            if old is not None and old["tombstoned_at"] is None and all(old[f] == getattr(s, f) for f in SWEEP_FIELDS) \
                    and old["id"] == s.id:
                continue
            diff = {f: {"before": old[f] if old else None, "after": getattr(s, f)} for f in SWEEP_FIELDS
                    if old is None or old[f] != getattr(s, f)}
            changes: list[ch.Change] = []
            ch.emit(changes, proj.scope, ev.SweepUpdated(name=s.name, state=s.state, changes=diff))
            was_done = old is not None and old["state"] in SWEEP_DONE_STATES and old["tombstoned_at"] is None
            if s.state in SWEEP_DONE_STATES and not was_done:
                ch.emit(changes, proj.scope, ev.SweepFinished(name=s.name, state=s.state, best_loss=s.best_loss))
            cx.catalog.record_sweep(proj.pk, s, changes)
            cx.ledger.stats.add("sweeps")
        self.tombstone_unlisted("sweep", "sweeps", listing, problems)

    def sync_reports(self) -> None:
        cx, proj = self.cx, self.proj
        problems: list[Problem] = []
        listing: Listing[str] = Listing()
        for r in cx.client.reports(proj.entity, proj.name, problems):
            if not r.id:
                continue
            listing.add(r.id)
            old = cx.catalog.report_row(proj.pk, r.id)
            if old is not None and old["tombstoned_at"] is None and all(old[k] == v for k, v in r.to_row().items()):
                continue
            cx.catalog.upsert_report(proj.pk, r)
            cx.ledger.stats.add("reports")
        self.tombstone_unlisted("report", "reports", listing, problems)

    def tombstone_unlisted(self, kind: str, table: str, listing: Listing[str], problems: list[Problem]) -> None:
        """After a project-wide listing: report its refused entries, and tombstone the rows it no longer has."""
        self.cx.ledger.problems(problems)
        if not proves_deletions(problems=problems):
            return  # a listing with refused entries is not proof of deletions
        for key, pk in listing.gone(self.cx.catalog.live_keys(table, self.proj.pk)):
            label = key if kind != "report" else f"report {key}"
            self.cx.ledger.tombstone(tombstone(table, pk, self.proj.scope, kind, f"{self.proj.where}/{label}"))
