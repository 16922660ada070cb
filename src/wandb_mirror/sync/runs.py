"""One run -> one catalog transaction.

`sync_run` takes a run as the listing gave it and mirrors what moved: history from the last
mirrored step (HistoryPage windows, unsampled, written in idempotent chunks), events (system
metrics, refreshed when the run moved), files (downloads verified while streaming, skipped when the
object is already stored); then ONE transaction (`Catalog.record_run`) records the run row with its
new change markers, events, files and change events. A run half-processed when the process died is
therefore redone by the next pass (its markers were not recorded). Last, the artifacts the run
logged and used (artifacts.py), each in its own transaction; a retry marker stays set until they
are done.

A new per-run source (parquet history, console logs) is one more step of `RunWork.process` that
fills the RunRecord before it is recorded.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from .. import events as ev
from ..client import Problem, RunListing
from ..client.transport import GraphQLError
from ..models import Run, RunFile, loads_lenient
from ..store.history import History
from ..store.objects import LocalObjects
from ..store.sync_records import RunRecord, Tombstone
from ..times import utcnow
from . import changes as ch
from . import history
from .artifacts import mirror_artifact
from .context import Context, ProjectRef
from .history import Fetched, HistoryRewritten
from .history_exports import mirror_history_exports
from .reconcile import tombstone

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"finished", "crashed", "failed", "killed"})
RUN_UPDATE_FIELDS = (  # catalog column -> name in run_updated payloads
    ("tags", "tags"), ("notes", "notes"), ("display_name", "display_name"), ("description", "description"),
    ("group_name", "group"), ("job_type", "job_type"), ("sweep_name", "sweep"), ("commit_hash", "commit"),
    ("system_metrics", "system_metrics"),
)
EVENTS_MAX = 2_000_000  # system-metrics rows of one run (a row every 2 s for 46 days)
# Upstream calls of one run that may fail for good (each after its own retries) before the run is
# given up for this pass: a run whose files keep failing is reported and retried next pass instead
# of spending the pass's shared retry budget (which would stop every run after it).
RUN_FAILURE_LIMIT = 3


def sync_run(cx: Context, proj: ProjectRef, lr: RunListing, old: dict[str, Any] | None, files_marker: str | None,
             retry: bool) -> None:
    """Mirror one run (the listing's markers said it moved). Errors propagate to the caller's unit."""
    RunWork(cx, proj, lr, old, files_marker, retry).process()


class RunWork:
    def __init__(self, cx: Context, proj: ProjectRef, lr: RunListing, old: dict[str, Any] | None,
                 files_marker: str | None, retry: bool) -> None:
        self.cx = cx
        self.proj = proj
        self.lr = lr
        self.run = lr.run
        self.run_id = lr.run.run_id
        self.old = old
        self.files_marker = files_marker
        self.retry = retry
        self.where = f"{proj.where}/{self.run_id}"
        self.failed = False  # something of this run must be tried again next pass
        self.failures = 0    # calls of this run that failed for good in this pass
        self.staged: int | None = None  # where a new run's history waits for its row

    def call_failed(self) -> bool:
        """Count a failed call; True once the run has failed often enough to be given up."""
        self.failed = True
        self.failures += 1
        if self.failures == RUN_FAILURE_LIMIT:
            self.cx.ledger.error(self.where, f"giving up on this run for this pass after {self.failures} failed "
                                             "calls; it is tried again next pass")
        return self.failures >= RUN_FAILURE_LIMIT

    def process(self) -> None:
        cx, proj, ledger = self.cx, self.proj, self.cx.ledger
        # a row without mirrored_at is a placeholder an older version left when it crashed: new
        old_run = cx.catalog.get_run(proj.pk, self.run_id) if self.old and self.old.get("mirrored_at") else None
        run = self.run
        new = old_run is None

        # fields the upstream sent malformed: keep what we had
        if self.lr.problems:
            bad = " ".join(p.reason for p in self.lr.problems)
            ledger.problems(self.lr.problems)
            self.failed = False  # recorded in quarantine; retrying would not fix the upstream
            for col, src in (("config", "config"), ("summary", "summaryMetrics"), ("system_metrics", "systemMetrics"),
                             ("history_keys", "historyKeys")):
                if src in bad:
                    setattr(run, col, getattr(old_run, col) if old_run else getattr(Run(run_id=""), col))

        rec = RunRecord(project_pk=proj.pk, run=run, mirrored_at="")

        # 1. history from the last mirrored step, or all of it again when upstream rewrote it
        last_step = old_run.last_step if old_run and old_run.last_step is not None else -1
        appended = Fetched()
        if proj.opts.history:
            rewritten = self.rewritten(old_run, last_step)
            # an edited run whose lastStep stayed may still have been resumed from an earlier step:
            # its row at lastStep is asked again (one small request) and compared
            recheck = (old_run is not None and last_step >= 0 and self.lr.last_step == last_step
                       and old_run.updated_at != run.updated_at)
            if not rewritten and (self.lr.last_step > last_step or recheck):
                try:
                    appended = self.fetch_history(old_run, last_step, self.lr.last_step + 1)
                except HistoryRewritten as e:
                    log.info("%s; fetching its whole history again", e)
                    rewritten = True
            if rewritten:
                appended = self.fetch_history(None, -1, self.lr.last_step + 1, replace=True)
                rec.replace_history = True
            if rewritten or self.lr.last_step > last_step:
                last_step = self.lr.last_step
        run.last_step = last_step if proj.opts.history else (old_run.last_step if old_run else -1)

        # 2. events (system metrics): only sampled access exists; refreshed when the run moved
        moved = new or self.retry or (old_run is not None and (
            old_run.heartbeat_at, old_run.state, old_run.history_line_count)
            != (run.heartbeat_at, run.state, run.history_line_count))
        if proj.opts.events and moved:
            rec.events = self.fetch_events()
        run.events_line_count = len(rec.events) if rec.events is not None else (
            old_run.events_line_count if old_run else 0)

        # 3. files
        files: list[tuple[RunFile, bool]] = []
        file_tombs: list[Tombstone] = []
        files_listed = False
        if proj.opts.files and (new or self.retry or moved or self.lr.file_count is None
                                or str(self.lr.file_count) != (self.files_marker or "")
                                or (old_run is not None and old_run.updated_at != run.updated_at)):
            files, file_tombs, files_listed = self.sync_files(cx.catalog.run_pk(proj.pk, self.run_id))

        unfinished = run.state not in TERMINAL_STATES
        want_artifacts = proj.opts.artifacts and (new or self.retry or unfinished
                                                  or (old_run is not None and old_run.state != run.state))

        # 4. one transaction: the run row with its new markers, and everything that hangs off it.
        # While its artifacts are still to be mirrored, a retry marker stays set: a crash before
        # they are done makes the next pass redo this run.
        changes = rec.changes
        if old_run is None:
            ch.emit(changes, proj.scope, ev.RunCreated(run=self.run_id, state=run.state, display_name=run.display_name,
                                                       created_at=run.created_at))
        else:
            if old_run.state != run.state:
                ch.emit(changes, proj.scope, ev.RunStateChanged(run=self.run_id, old=old_run.state, new=run.state))
            diff = run_diff(old_run, run)
            if diff:
                ch.emit(changes, proj.scope, ev.RunUpdated(run=self.run_id, changes=diff))
        first, last, rows = appended.first, appended.last, appended.rows
        if rows and first is not None and last is not None:
            ch.emit(changes, proj.scope, ev.HistoryAppended(run=self.run_id, first_step=first, last_step=last, rows=rows))
        for f, changed in files:
            rec.files.append(f)
            ch.emit(rec.changes, proj.scope, ev.FileMirrored(run=self.run_id, name=f.name, md5=f.md5, size=f.size,
                                                             changed=changed))
        if files_listed:
            # deletions a complete file listing proves are recorded with the markers that say it was
            # read: a pass that later ends with errors cannot lose them
            rec.tombstones = file_tombs
            if self.lr.file_count is not None:
                rec.state[f"files:{self.run_id}"] = str(self.lr.file_count)
        rec.state[f"retry:{self.run_id}"] = "1" if (self.failed or want_artifacts) else None
        rec.staged_history = self.staged
        rec.mirrored_at = utcnow()
        recorded = cx.catalog.record_run(rec)
        if recorded.event_rows:
            ledger.stats.add("event_rows", recorded.event_rows)
        if recorded.tombstoned:
            ledger.stats.add("tombstoned", recorded.tombstoned)

        # 5. artifacts this run logged and used (each recorded and linked in its own transaction)
        if want_artifacts:
            with ledger.unit(f"{self.where} artifacts") as unit:
                self.sync_run_artifacts(recorded.run_pk)
            if unit.failed:
                self.failed = True
            if not self.failed:
                cx.catalog.set_sync_state(proj.pk, {f"retry:{self.run_id}": None})
        ledger.stats.add("runs_new" if new else "runs_updated")

    # -- history -------------------------------------------------------------------------------
    def rewritten(self, old_run: Run | None, stored_last: int) -> bool:
        """Whether the listing's markers alone show upstream rewrote history the mirror holds:
        its lastStep went back, or its line count changed at the same lastStep."""
        if old_run is None or stored_last < 0 or self.lr.last_step < 0:
            return False
        if any("historyKeys" in p.reason for p in self.lr.problems):
            return False  # an unreadable lastStep is no evidence
        return self.lr.last_step < stored_last or (
            self.lr.last_step == stored_last and self.run.history_line_count != old_run.history_line_count)

    def fetch_history(self, old_run: Run | None, stored_last: int, stop: int, *, replace: bool = False) -> Fetched:
        """Rows after `stored_last` (checking the stored row at it), or, for a new run or a
        replacement, every row under a staging pk that no reader knows: they move to the run when
        its row is recorded, whole (a crash leaves them staged; the next pass fetches them again)."""
        cx, proj = self.cx, self.proj
        run_pk = None if replace else cx.catalog.run_pk(proj.pk, self.run_id)
        expect = None
        if run_pk is None:
            run_pk = self.staged = cx.catalog.staging_run_pk(proj.pk, self.run_id)
            start = 0
        else:
            row = None
            if old_run is not None and stored_last >= 0:  # the tail or a parquet segment
                row = next((t for _, t in History(cx.catalog, cx.objects).texts(
                    run_pk, min_step=stored_last, max_step=stored_last + 1)), None)
            expect = (stored_last, row) if row is not None else None
            start = stored_last if expect else stored_last + 1
        if expect is not None:  # an append checks its first row through HistoryPage
            return history.fetch(cx, proj, self.run_id, run_pk, start, stop, expect)
        first, last, rows, start = self._history_from_exports(run_pk, start, stop)
        paged = history.fetch(cx, proj, self.run_id, run_pk, start, stop)
        firsts = [x for x in (first, paged.first) if x is not None]
        lasts = [x for x in (last, paged.last) if x is not None]
        return Fetched(min(firsts) if firsts else None, max(lasts) if lasts else None, rows + paged.rows)

    def _history_from_exports(self, run_pk: int, start: int, stop: int) -> tuple[int | None, int | None, int, int]:
        """(first, last, rows) stored from the upstream's parquet exports, and the step HistoryPage
        takes over at: `stop` for a fully exported run, `start` when there are no usable exports."""
        cx, proj = self.cx, self.proj
        try:
            tmp = cx.objects.tmp if isinstance(cx.objects, LocalObjects) else Path(tempfile.gettempdir())
            out = mirror_history_exports(cx.client, History(cx.catalog, cx.objects), tmp, proj.entity,
                                         proj.name, self.run_id, run_pk, start, stop)
        except GraphQLError as e:  # a server that predates parquetHistory: page everything, as before
            log.info("%s: no parquet history (%s); reading HistoryPage", self.where, e)
            return None, None, 0, start
        if out.rejected is not None:
            cx.ledger.quarantine("history_export", f"{self.where} parquet export", out.rejected.reason,
                                 out.rejected.url[:4096])
            return None, None, 0, start
        if out.rows:
            cx.ledger.stats.add("history_rows", out.rows)
            cx.ledger.stats.add("history_export_files", out.files)
            cx.progress.add(rows=out.rows)
        return out.first, out.last, out.rows, out.next_step

    # -- events --------------------------------------------------------------------------------
    def fetch_events(self) -> list[str]:
        cx, proj = self.cx, self.proj
        # ask again for more while the answer is full (it may be downsampled): the run's system
        # metrics come whole, whatever events_samples says, up to EVENTS_MAX rows
        samples = cx.settings.events_samples
        rows = cx.client.events(proj.entity, proj.name, self.run_id, samples)
        while len(rows) >= samples and samples < EVENTS_MAX:
            samples = min(EVENTS_MAX, samples * 4)
            rows = cx.client.events(proj.entity, proj.name, self.run_id, samples)
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
            if not ok or text is None:
                bad += 1
                if bad <= 5:
                    cx.ledger.quarantine("event_row", self.where, "malformed system-metrics row", str(raw)[:4096])
                continue
            out.append(text)
        return out

    # -- files ---------------------------------------------------------------------------------
    def sync_files(self, run_pk: int | None) -> tuple[list[tuple[RunFile, bool]], list[Tombstone], bool]:
        """(files downloaded, with whether they replace a stored one; tombstones; whether the listing
        was read to its end)."""
        cx, proj, ledger = self.cx, self.proj, self.cx.ledger
        client = cx.client
        stored = cx.catalog.run_files(run_pk) if run_pk is not None else {}
        problems: list[Problem] = []
        out: list[tuple[RunFile, bool]] = []
        listed: set[str] = set()
        for rf in client.run_files(proj.entity, proj.name, self.run_id, problems):
            f = rf.file
            listed.add(f.name)
            if not proj.opts.want_file(f.name):
                continue
            old = stored.get(f.name)
            if old and old["md5"] == f.md5 and old["tombstoned_at"] is None and cx.objects.has(f.md5):
                continue
            if not f.md5:
                ledger.quarantine("file", f"{self.where}/{f.name}", "upstream gives no md5; cannot verify")
                continue
            url = rf.url if (rf.url and client.t.under_base(client.t.resolve(rf.url))) else (rf.direct_url or rf.url)
            if not url:
                ledger.quarantine("file", f"{self.where}/{f.name}", "upstream gives no download URL")
                continue
            had = cx.objects.has(f.md5)
            with ledger.unit(f"{self.where}/{f.name}",
                             quarantine=("file", f"{self.where}/{f.name}", "download failed verification: ")) as unit:
                info = client.fetch_to_store(url, cx.objects, operation="GET file", expected_md5=f.md5,
                                             expected_size=f.size)
            if unit.failed:
                if self.call_failed():
                    break
                continue
            f.md5, f.size = info.md5, info.size
            out.append((f, old is not None))
            ledger.stats.add("files")
            if not had:
                ledger.stats.add("file_bytes", info.size)
                cx.progress.add(files=1, bytes=info.size)
            else:
                cx.progress.add(files=1)
        else:
            ledger.problems(problems)
            tombs = [tombstone("files", r["pk"], proj.scope, "file", f"{self.where}/{n}", run=self.run_id)
                     for n, r in stored.items() if n not in listed and r["tombstoned_at"] is None]
            return out, tombs, True
        # given up part-way: what was downloaded is recorded, the listing is incomplete (no tombstones,
        # no files marker) and the run's retry marker brings it back next pass
        ledger.problems(problems)
        return out, [], False

    # -- artifacts -----------------------------------------------------------------------------
    def sync_run_artifacts(self, run_pk: int) -> None:
        cx, proj = self.cx, self.proj
        for direction in ("output", "input"):
            for ra in cx.client.run_artifacts(proj.entity, proj.name, self.run_id, direction):
                if not proj.opts.want_artifact_type(ra.artifact.type_name):
                    continue
                if ra.artifact.state != "COMMITTED":
                    continue
                if direction == "output":
                    pk = mirror_artifact(cx, proj, ra, producer=(self.run_id, run_pk))
                else:
                    pk = mirror_artifact(cx, proj, ra, consumer_pk=run_pk)
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


__all__ = ["sync_run", "run_diff", "TERMINAL_STATES", "RUN_FAILURE_LIMIT"]
