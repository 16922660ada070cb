"""`Upstream`: the write-back handle plugins get as the `upstream` argument.

Each plugin gets its own writer. Every write is journaled in the catalog table `journal`
(plugin, action, target, before, after, dry_run, result, at) *whether or not* it is sent: in
dry-run mode (the default for every plugin) nothing leaves the machine and the journal row says
`dry-run`. A real write's intent is committed before the request leaves and its result after
(hooks/journal.py settles intents a killed process left). A failed write is journaled as
`error: ...` and raises `UpstreamWriteError`, so the event is retried with backoff like any other
hook failure; an effect that is already there upstream is `ok: already done upstream`, not an error.

Never revert a user's edit: every read-modify-write starts from upstream's state read just before
the write (the mirror may lag by a reconcile interval) and changes only the keys the plugin meant
to change. `set_summary(run, d)` / `set_config` / `set_tags` take the plugin's whole desired value
as computed from `run` (the mirror's copy): only the difference between `run`'s value and `d` is
applied to upstream's current one. `update_summary` / `update_config` / `add_tags` /
`remove_tags` name the keys directly.

The mutations are the ones the official client (wandb 0.31.0) sends:

- summary: `wandb/apis/public/summary.py` `HTTPSummary._write`: the WHOLE summary as compact JSON,
  computed as upstream's summary read just before the write with only the plugin's keys changed.
- tags / notes / config: `upsertBucket` with the run's storage id and only the changed field, in
  the document wandb-core sends (`core/api/graphql/mutation_run.graphql`, every variable nullable).
  Deviation, written down on purpose: the Public API's `Run.update()` resends description, notes,
  tags, config, group and job type together; from a mirror that may lag upstream by a poll interval
  that would revert other fields edited meanwhile, so we send only the field we mean to change.
  Config values are wrapped `{"value": v, "desc": null}` and `_wandb` is kept, as `Run.json_config`.
- deleteFiles: `wandb/apis/public/files.py` `File.delete` (`projectId` = Project.internalId).
  The writer refuses to delete a file whose local copy does not re-hash to its md5.
- artifact aliases: `AddAliases` / `DeleteAliases` (`wandb/sdk/artifacts/artifact.py` `_add_aliases`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..client.documents import Document
from ..client.transport import Transport
from ..models import dumps_compact, loads_lenient
from ..store import Store
from . import journal as J
from .types import Artifact, File, Run
from .upstream_documents import (
    ADD_ALIASES_MUTATION,
    DELETE_ALIASES_MUTATION,
    DELETE_FILES_MUTATION,
    RUN_UPSERT_MUTATION,
    SUMMARY_MUTATION,
)

__all__ = ["Upstream", "WriteResult", "UpstreamWriteError"]

log = logging.getLogger("wandb_mirror.upstream")

class UpstreamWriteError(Exception):
    """A write-back failed (journaled as `error: ...`); raising it lets delivery retry the event."""


@dataclass
class WriteResult:
    """What one write did. `result` is "ok", "ok: already done upstream", "dry-run", "unchanged" or
    "error: ..." (as journaled)."""

    action: str
    target: str
    dry_run: bool
    result: str
    before: Any = None
    after: Any = None

    @property
    def ok(self) -> bool:
        return self.result in ("dry-run", "unchanged") or self.result.startswith("ok")


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, allow_nan=True) == json.dumps(b, sort_keys=True, allow_nan=True)


def _delta(base: dict[str, Any], desired: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(keys to set, keys to remove) turning `base` into `desired`."""
    return ({k: v for k, v in desired.items() if k not in base or not _same(base[k], v)},
            [k for k in base if k not in desired])


def _unwrap_config(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.get("value") if isinstance(v, dict) and "value" in v else v)
            for k, v in raw.items() if k not in ("_wandb", "wandb_version")}


class Upstream:
    """Write-back to W&B for one plugin: dry-run aware, journaled ahead of every real write.

    `dry_run` comes from the plugin's config (default True). With `transport=None` real writes
    fail (journaled as errors): a daemon without upstream credentials can still run dry-run plugins.
    """

    def __init__(
        self,
        plugin: str,
        store: Store,
        transport: Transport | None,
        *,
        dry_run: bool = True,
        stats: dict[str, int] | None = None,
    ):
        self.plugin = plugin
        self.dry_run = bool(dry_run)
        self._store = store
        self._transport = transport
        self._revoked = threading.Event()
        self._stats = stats if stats is not None else {}
        self._journal = J.Journal(store, plugin, self._stats)

    def bind(self) -> Upstream:
        """A writer for one hook call, which the dispatcher can revoke if the call is abandoned."""
        w = Upstream(self.plugin, self._store, self._transport, dry_run=self.dry_run, stats=self._stats)
        return w

    def revoke(self) -> None:
        self._revoked.set()

    # -- the core ----------------------------------------------------------------------------
    @property
    def _live(self) -> bool:
        """Whether writes go upstream for real (and so reads must come from upstream too)."""
        return not self.dry_run and self._transport is not None and not self._revoked.is_set()

    def _gql(self, document: Document, variables: dict[str, Any]) -> dict[str, Any]:
        assert self._transport is not None
        return self._transport.graphql(document.name, document.text, variables)

    def _write(self, action: str, target: str, before: Any, after: Any, document: Document, variables: dict[str, Any],
               check: Any = None, ref: Any = None, done: Any = None) -> WriteResult:
        """Journal the intent, send, journal the result. `done()` says (by reading upstream) whether
        the effect is there after all when the call failed: then it is not an error."""
        if self._revoked.is_set():
            result = "error: hook call abandoned after its timeout; write refused"
            self._journal.record(action, target, before, after, self.dry_run, result)
            raise UpstreamWriteError(result)
        if self.dry_run:
            self._journal.record(action, target, before, after, True, "dry-run")
            log.info("[%s] dry-run %s %s", self.plugin, action, target)
            return WriteResult(action, target, True, "dry-run", before, after)
        if self._transport is None:
            result = "error: no upstream configured (no [source] credentials)"
            self._journal.record(action, target, before, after, False, result)
            raise UpstreamWriteError(result)
        pk = self._journal.intent(action, target, before, after, ref)
        try:
            data = self._gql(document, variables)
            if check is not None and not check(data):
                raise UpstreamWriteError(f"unexpected response: {json.dumps(data)[:200]}")
        except Exception as e:  # noqa: BLE001 - any transport failure is journaled, then re-raised
            if done is not None and self._done_anyway(done):
                self._journal.outcome(pk, J.ALREADY_DONE)
                log.info("[%s] %s %s: already done upstream", self.plugin, action, target)
                return WriteResult(action, target, False, J.ALREADY_DONE, before, after)
            msg = str(e) or type(e).__name__
            result = f"error: {msg}"[:500]
            self._journal.outcome(pk, result)
            raise UpstreamWriteError(f"{action} {target}: {msg}") from e
        self._journal.outcome(pk, "ok")
        log.info("[%s] %s %s", self.plugin, action, target)
        return WriteResult(action, target, False, "ok", before, after)

    @staticmethod
    def _done_anyway(done: Any) -> bool:
        try:
            return bool(done())
        except Exception:  # noqa: BLE001 - cannot tell: the original error stands
            return False

    def _already(self, action: str, target: str, before: Any, after: Any) -> WriteResult:
        self._journal.record(action, target, before, after, False, J.ALREADY_DONE)
        log.info("[%s] %s %s: already done upstream", self.plugin, action, target)
        return WriteResult(action, target, False, J.ALREADY_DONE, before, after)

    def _current(self, run: Run) -> dict[str, Any]:
        """The run's current summary/config/tags/notes: from upstream (read now) when writing for real.

        The mirror lags upstream (edits to finished runs arrive at the next reconcile, including
        this writer's own earlier writes and the user's), so a read-modify-write based on the
        catalog would undo them.
        """
        if self._live:
            try:
                node = J.run_state(self._gql, run.entity, run.project, run.run_id)
            except Exception as e:  # noqa: BLE001 - journaled by the caller's write attempt
                raise UpstreamWriteError(f"cannot read {self._run_target(run)} upstream: {e}") from e
            if node is None:
                raise UpstreamWriteError(f"run {self._run_target(run)} does not exist upstream")
            return {"storage_id": node.get("id"), "summary": node.get("summaryMetrics"), "config": node.get("config"),
                    "tags": json.dumps(node.get("tags") or []), "notes": node.get("notes")}
        row = self._store.catalog.query_one(
            "SELECT r.storage_id, r.summary, r.config, r.tags, r.notes FROM runs r JOIN projects p ON p.pk = r.project_pk "
            "WHERE p.entity = ? AND p.name = ? AND r.run_id = ?",
            [run.entity, run.project, run.run_id],
        )
        return row or {"storage_id": run.storage_id, "summary": run.summary, "config": run.config,
                       "tags": run.tags, "notes": run.notes}

    @staticmethod
    def _run_target(run: Run) -> str:
        return f"{run.entity}/{run.project}/{run.run_id}"

    def _storage_id(self, run: Run, cur: dict[str, Any]) -> str:
        sid = cur.get("storage_id") or run.storage_id
        if not sid:
            raise UpstreamWriteError(f"run {self._run_target(run)} has no storage id in the catalog")
        return sid

    @staticmethod
    def _upserted(d: Any) -> bool:
        return bool(((d or {}).get("upsertBucket") or {}).get("bucket"))

    # -- runs --------------------------------------------------------------------------------
    def set_summary(self, run: Run, summary: dict[str, Any]) -> WriteResult:
        """Make the run's summary `summary`, as computed from `run`: the keys that differ from
        `run`'s summary are set (or removed) on upstream's current summary; others are left alone."""
        changes, removed = _delta(loads_lenient(run.summary, {}) or {}, summary)
        return self.update_summary(run, changes, removed)

    def update_summary(self, run: Run, changes: dict[str, Any], remove: Iterable[str] = ()) -> WriteResult:
        """Set `changes` and drop `remove` in upstream's current summary, keeping every other key.

        The whole resulting summary is sent, as the official client does (`HTTPSummary._write`).
        """
        cur = self._current(run)
        before = loads_lenient(cur.get("summary"), {}) or {}
        after = {k: v for k, v in before.items() if k not in set(remove)}
        after.update(changes)
        target = self._run_target(run)
        if _same(before, after):
            return WriteResult("summary", target, self.dry_run, "unchanged", before, after)
        return self._write("summary", target, before, after, SUMMARY_MUTATION,
                           {"id": self._storage_id(run, cur), "summaryMetrics": dumps_compact(after)},
                           check=lambda d: bool(((d or {}).get("upsertBucket") or {}).get("bucket", {}).get("id")))

    def set_config(self, run: Run, config: dict[str, Any]) -> WriteResult:
        """Make the run's config `config` (plain values), as computed from `run`: only the keys
        that differ from `run`'s config change upstream."""
        changes, removed = _delta(_unwrap_config(loads_lenient(run.config, {}) or {}), config)
        return self.update_config(run, changes, removed)

    def update_config(self, run: Run, changes: dict[str, Any], remove: Iterable[str] = ()) -> WriteResult:
        """Set `changes` (plain values; wrapped for the wire) and drop `remove` in upstream's
        current config, keeping every other key and `_wandb`."""
        cur = self._current(run)
        raw = loads_lenient(cur.get("config"), {}) or {}
        before = _unwrap_config(raw)
        after = {k: v for k, v in before.items() if k not in set(remove)}
        after.update(changes)
        target = self._run_target(run)
        if _same(before, after):
            return WriteResult("config", target, self.dry_run, "unchanged", before, after)
        wrapped: dict[str, Any] = {}
        if "_wandb" in raw:
            w = raw["_wandb"]
            wrapped["_wandb"] = {"value": w.get("value") if isinstance(w, dict) and "value" in w else w, "desc": None}
        for k, v in after.items():
            wrapped[k] = {"value": v, "desc": None}
        return self._write("config", target, before, after, RUN_UPSERT_MUTATION,
                           {"id": self._storage_id(run, cur), "config": json.dumps(wrapped)}, check=self._upserted)

    def set_tags(self, run: Run, tags: list[str]) -> WriteResult:
        """Make the run's tags `tags`, as computed from `run`: tags added or removed relative to
        `run`'s tags are added or removed upstream; tags someone else set meanwhile stay."""
        base = list(loads_lenient(run.tags, []) or [])
        want = list(dict.fromkeys(tags))
        return self._edit_tags(run, [t for t in want if t not in base], [t for t in base if t not in want])

    def add_tags(self, run: Run, *tags: str) -> WriteResult:
        return self._edit_tags(run, list(tags), [])

    def remove_tags(self, run: Run, *tags: str) -> WriteResult:
        return self._edit_tags(run, [], list(tags))

    def _edit_tags(self, run: Run, add: list[str], remove: list[str]) -> WriteResult:
        cur = self._current(run)
        before = list(loads_lenient(cur.get("tags"), []) or [])
        after = [t for t in before if t not in remove] + [t for t in dict.fromkeys(add) if t not in before]
        target = self._run_target(run)
        if before == after:
            return WriteResult("tags", target, self.dry_run, "unchanged", before, after)
        return self._write("tags", target, before, after, RUN_UPSERT_MUTATION,
                           {"id": self._storage_id(run, cur), "tags": after}, check=self._upserted)

    def set_notes(self, run: Run, notes: str) -> WriteResult:
        cur = self._current(run)
        target = self._run_target(run)
        if (cur.get("notes") or "") == notes:
            return WriteResult("notes", target, self.dry_run, "unchanged", cur.get("notes"), notes)
        return self._write("notes", target, cur.get("notes"), notes, RUN_UPSERT_MUTATION,
                           {"id": self._storage_id(run, cur), "notes": notes}, check=self._upserted)

    # -- files -------------------------------------------------------------------------------
    def delete_file(self, run: Run, file: File) -> WriteResult:
        """Delete one run file upstream; refused unless its local copy re-hashes to its md5.

        The mirror keeps the file (catalog row and bytes): deleting upstream is the point. A file
        already gone upstream is `ok: already done upstream`, not an error.
        """
        target = f"{run.entity}/{run.project}/{run.run_id}/{file.name}"
        before = {"name": file.name, "md5": file.md5, "size": file.size, "id": file.id}
        if not self._verified(file):
            result = "error: local copy missing or does not match its md5; not deleting upstream"
            self._journal.record("delete_files", target, before, None, self.dry_run, result)
            raise UpstreamWriteError(f"delete {target}: {result[7:]}")
        if not file.id:
            result = "error: no upstream file id in the catalog"
            self._journal.record("delete_files", target, before, None, self.dry_run, result)
            raise UpstreamWriteError(f"delete {target}: {result[7:]}")

        def gone() -> bool:
            return not J.file_exists(self._gql, run.entity, run.project, run.run_id, file.name)

        if self._live and self._done_anyway(gone):
            return self._already("delete_files", target, before, None)
        project_id = self._project_internal_id(run)
        return self._write("delete_files", target, before, None, DELETE_FILES_MUTATION,
                           {"files": [file.id], "projectId": project_id},
                           check=lambda d: bool(((d or {}).get("deleteFiles") or {}).get("success")), done=gone)

    def _verified(self, file: File) -> bool:
        try:
            h = hashlib.md5()
            n = 0
            with self._store.objects.open(file.md5) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                    n += len(chunk)
        except (OSError, ValueError):
            return False
        return h.hexdigest() == file.md5 and n == file.size

    def _project_internal_id(self, run: Run) -> int | None:
        v = run.project_internal_id or self._store.catalog.scalar(
            "SELECT internal_id FROM projects WHERE entity = ? AND name = ?", [run.entity, run.project])
        try:
            return int(v) if v is not None else None
        except (TypeError, ValueError):
            return None

    # -- artifacts ---------------------------------------------------------------------------
    def _alias_input(self, artifact: Artifact, alias: str) -> dict[str, Any]:
        return {"aliases": [{"alias": alias, "artifactCollectionName": artifact.collection_name,
                             "entityName": artifact.entity, "projectName": artifact.project}],
                "artifactID": artifact.id}

    def _aliases_now(self, artifact: Artifact) -> list[str]:
        """The version's aliases: upstream's, read now, when writing for real; else the mirror's."""
        if self._live:
            try:
                return J.artifact_aliases(self._gql, artifact.id)
            except Exception as e:  # noqa: BLE001 - the write cannot be computed without them
                raise UpstreamWriteError(f"cannot read the aliases of {artifact.qualified_name} upstream: {e}") from e
        text = self._store.catalog.scalar("SELECT aliases FROM artifacts WHERE id = ?", [artifact.id])
        return list(loads_lenient(text if text is not None else artifact.aliases, []) or [])

    def add_alias(self, artifact: Artifact, alias: str) -> WriteResult:
        """Add `alias` to this artifact version (W&B moves it off any other version of the collection)."""
        return self._alias("alias_add", artifact, alias, ADD_ALIASES_MUTATION)

    def remove_alias(self, artifact: Artifact, alias: str) -> WriteResult:
        return self._alias("alias_remove", artifact, alias, DELETE_ALIASES_MUTATION)

    def _alias(self, action: str, artifact: Artifact, alias: str, mutation: Document) -> WriteResult:
        adding = action == "alias_add"
        before = self._aliases_now(artifact)
        after = before + [alias] if adding else [a for a in before if a != alias]
        target = artifact.qualified_name
        if (alias in before) == adding:
            return WriteResult(action, target, self.dry_run, "unchanged", before, before)

        def done() -> bool:
            return (alias in J.artifact_aliases(self._gql, artifact.id)) == adding

        return self._write(action, target, before, after, mutation, {"input": self._alias_input(artifact, alias)},
                           check=lambda d: bool(((d or {}).get("result") or {}).get("success")),
                           ref={"id": artifact.id, "alias": alias}, done=done)
