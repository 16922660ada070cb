"""`Upstream`: the write-back handle plugins get as the `upstream` argument.

Each plugin gets its own writer. Every write is journaled in the catalog table `journal`
(plugin, action, target, before, after, dry_run, result, at) *whether or not* it is sent: in
dry-run mode (the default for every plugin) nothing leaves the machine and the journal row says
`dry-run`. A failed write is journaled as `error: ...` and raises `UpstreamWriteError`, so the
event is retried with backoff like any other hook failure.

The mutations are the ones the official client (wandb 0.31.0) sends:

- summary: `wandb/apis/public/summary.py` `HTTPSummary._write`: the WHOLE summary as compact JSON.
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

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ..client.documents import Document
from ..models import dumps_compact, loads_lenient
from ..store import Store
from ..store.catalog import utcnow
from .types import Artifact, File, Run

__all__ = ["Upstream", "WriteResult", "UpstreamWriteError", "Transport"]

log = logging.getLogger("wandb_mirror.upstream")

SUMMARY_MUTATION = Document("UpsertBucket", """
        mutation UpsertBucket( $id: String, $summaryMetrics: JSONString) {
            upsertBucket(input: { id: $id, summaryMetrics: $summaryMetrics}) {
                bucket { id }
            }
        }
        """)

# wandb-core's run upsert (mutation_run.graphql): every variable nullable, so we can send only one.
RUN_UPSERT_MUTATION = Document("UpsertBucket", """mutation UpsertBucket(
            $id: String,
            $name: String,
            $project: String,
            $entity: String,
            $groupName: String,
            $description: String,
            $displayName: String,
            $notes: String,
            $commit: String,
            $config: JSONString,
            $host: String,
            $debug: Boolean,
            $program: String,
            $repo: String,
            $jobType: String,
            $state: String,
            $sweep: String,
            $tags: [String!],
            $summaryMetrics: JSONString,
        ) {
            upsertBucket(input: {
                id: $id,
                name: $name,
                groupName: $groupName,
                modelName: $project,
                entityName: $entity,
                description: $description,
                displayName: $displayName,
                notes: $notes,
                config: $config,
                commit: $commit,
                host: $host,
                debug: $debug,
                jobProgram: $program,
                jobRepo: $repo,
                jobType: $jobType,
                state: $state,
                sweep: $sweep,
                tags: $tags,
                summaryMetrics: $summaryMetrics,
            }) {
                bucket {
                    id
                    name
                    displayName
                    description
                    config
                    sweepName
                    project {
                        id
                        name
                        entity {
                            id
                            name
                        }
                    }
                    historyLineCount
                }
                inserted
            }
        }
""")

DELETE_FILES_MUTATION = Document("deleteFiles", """
            mutation deleteFiles($files: [ID!]!, $projectId: Int) {
                deleteFiles(input: {
                    files: $files
                    projectId: $projectId
                }) {
                    success
                }
            }
        """)

ADD_ALIASES_MUTATION = Document("AddAliases", """
mutation AddAliases($input: AddAliasesInput!) {
  result: addAliases(input: $input) {
    success
  }
}
""")

DELETE_ALIASES_MUTATION = Document("DeleteAliases", """
mutation DeleteAliases($input: DeleteAliasesInput!) {
  result: deleteAliases(input: $input) {
    success
  }
}
""")


# The fields a read-modify-write needs, in the shape of the official client's `Run` query
# (a subset of its RunFragment).
RUN_STATE_QUERY = Document("RunState", """
query RunState($project: String!, $entity: String!, $name: String!) {
    project(name: $project, entityName: $entity) {
        run(name: $name) {
            id
            tags
            notes
            config
            summaryMetrics
        }
    }
}
""")


class UpstreamWriteError(Exception):
    """A write-back failed (journaled as `error: ...`); raising it lets delivery retry the event."""


class Transport(Protocol):
    """What the writer needs of `client.Transport`: run one GraphQL operation, return its `data`."""

    def graphql(self, operation: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]: ...


@dataclass
class WriteResult:
    """What one write did. `result` is "ok", "dry-run", "unchanged" or "error: ..." (as journaled)."""

    action: str
    target: str
    dry_run: bool
    result: str
    before: Any = None
    after: Any = None

    @property
    def ok(self) -> bool:
        return self.result in ("ok", "dry-run", "unchanged")


class Upstream:
    """Write-back to W&B for one plugin: dry-run aware, journaled.

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

    def bind(self) -> Upstream:
        """A writer for one hook call, which the dispatcher can revoke if the call is abandoned."""
        w = Upstream(self.plugin, self._store, self._transport, dry_run=self.dry_run, stats=self._stats)
        return w

    def revoke(self) -> None:
        self._revoked.set()

    # -- the core ----------------------------------------------------------------------------
    def _journal(self, action: str, target: str, before: Any, after: Any, dry_run: bool, result: str) -> None:
        def enc(v: Any) -> str | None:
            return None if v is None else json.dumps(v, separators=(",", ":"), sort_keys=False)

        with self._store.catalog.transaction() as conn:
            conn.execute(
                "INSERT INTO journal (at, plugin, action, target, before, after, dry_run, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [utcnow(), self.plugin, action, target, enc(before), enc(after), int(dry_run), result],
            )
        key = "dry_run" if result == "dry-run" else ("error" if result.startswith("error") else result)
        self._stats[key] = self._stats.get(key, 0) + 1

    def _write(self, action: str, target: str, before: Any, after: Any, document: Document, variables: dict[str, Any],
               check: Any = None) -> WriteResult:
        if self._revoked.is_set():
            result = "error: hook call abandoned after its timeout; write refused"
            self._journal(action, target, before, after, self.dry_run, result)
            raise UpstreamWriteError(result)
        if self.dry_run:
            self._journal(action, target, before, after, True, "dry-run")
            log.info("[%s] dry-run %s %s", self.plugin, action, target)
            return WriteResult(action, target, True, "dry-run", before, after)
        if self._transport is None:
            result = "error: no upstream configured (no [source] credentials)"
            self._journal(action, target, before, after, False, result)
            raise UpstreamWriteError(result)
        try:
            data = self._transport.graphql(document.name, document.text, variables)
            if check is not None and not check(data):
                raise UpstreamWriteError(f"unexpected response: {json.dumps(data)[:200]}")
        except Exception as e:  # noqa: BLE001 - any transport failure is journaled, then re-raised
            msg = str(e) or type(e).__name__
            result = f"error: {msg}"[:500]
            self._journal(action, target, before, after, False, result)
            raise UpstreamWriteError(f"{action} {target}: {msg}") from e
        self._journal(action, target, before, after, False, "ok")
        log.info("[%s] %s %s", self.plugin, action, target)
        return WriteResult(action, target, False, "ok", before, after)

    def _current(self, run: Run) -> dict[str, Any]:
        """The run's current summary/config/tags/notes: from upstream when writing for real.

        The mirror lags upstream (edits to finished runs arrive at the next reconcile, including
        this writer's own earlier writes), so a read-modify-write based on the catalog would undo
        them: e.g. untagging the previous best run would see no tag to remove.
        """
        if not self.dry_run and self._transport is not None and not self._revoked.is_set():
            try:
                data = self._transport.graphql(RUN_STATE_QUERY.name, RUN_STATE_QUERY.text,
                                               {"entity": run.entity, "project": run.project, "name": run.name})
            except Exception as e:  # noqa: BLE001 - journaled by the caller's write attempt
                raise UpstreamWriteError(f"cannot read {self._run_target(run)} upstream: {e}") from e
            node = ((data or {}).get("project") or {}).get("run")
            if node is None:
                raise UpstreamWriteError(f"run {self._run_target(run)} does not exist upstream")
            return {"storage_id": node.get("id"), "summary": node.get("summaryMetrics"), "config": node.get("config"),
                    "tags": json.dumps(node.get("tags") or []), "notes": node.get("notes")}
        row = self._store.catalog.query_one(
            "SELECT r.storage_id, r.summary, r.config, r.tags, r.notes FROM runs r JOIN projects p ON p.pk = r.project_pk "
            "WHERE p.entity = ? AND p.name = ? AND r.name = ?",
            [run.entity, run.project, run.name],
        )
        return row or {"storage_id": run.storage_id, "summary": run.summary, "config": run.config,
                       "tags": run.tags, "notes": run.notes}

    @staticmethod
    def _run_target(run: Run) -> str:
        return f"{run.entity}/{run.project}/{run.name}"

    def _storage_id(self, run: Run, cur: dict[str, Any]) -> str:
        sid = cur.get("storage_id") or run.storage_id
        if not sid:
            raise UpstreamWriteError(f"run {self._run_target(run)} has no storage id in the catalog")
        return sid

    # -- runs --------------------------------------------------------------------------------
    def set_summary(self, run: Run, summary: dict[str, Any]) -> WriteResult:
        """Replace the run's summary with `summary` (the whole dict, as the official client sends it)."""
        cur = self._current(run)
        before = loads_lenient(cur.get("summary"), {}) or {}
        target = self._run_target(run)
        if before == summary:
            return WriteResult("summary", target, self.dry_run, "unchanged", before, summary)
        return self._write(
            "summary", target, before, summary, SUMMARY_MUTATION,
            {"id": self._storage_id(run, cur), "summaryMetrics": dumps_compact(summary)},
            check=lambda d: bool(((d or {}).get("upsertBucket") or {}).get("bucket", {}).get("id")),
        )

    def set_config(self, run: Run, config: dict[str, Any]) -> WriteResult:
        """Replace the run's config with `config` (plain values; wrapped for the wire, `_wandb` kept)."""
        cur = self._current(run)
        raw = loads_lenient(cur.get("config"), {}) or {}
        before = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v)
                  for k, v in raw.items() if k not in ("_wandb", "wandb_version")}
        target = self._run_target(run)
        if before == config:
            return WriteResult("config", target, self.dry_run, "unchanged", before, config)
        wrapped: dict[str, Any] = {}
        if "_wandb" in raw:
            w = raw["_wandb"]
            wrapped["_wandb"] = {"value": w.get("value") if isinstance(w, dict) and "value" in w else w, "desc": None}
        for k, v in config.items():
            wrapped[k] = {"value": v, "desc": None}
        return self._write("config", target, before, config, RUN_UPSERT_MUTATION,
                           {"id": self._storage_id(run, cur), "config": json.dumps(wrapped)},
                           check=lambda d: bool(((d or {}).get("upsertBucket") or {}).get("bucket")))

    def set_tags(self, run: Run, tags: list[str]) -> WriteResult:
        """Replace the run's tags (order kept, duplicates dropped)."""
        cur = self._current(run)
        before = list(loads_lenient(cur.get("tags"), []) or [])
        after = list(dict.fromkeys(tags))
        target = self._run_target(run)
        if before == after:
            return WriteResult("tags", target, self.dry_run, "unchanged", before, after)
        return self._write("tags", target, before, after, RUN_UPSERT_MUTATION,
                           {"id": self._storage_id(run, cur), "tags": after},
                           check=lambda d: bool(((d or {}).get("upsertBucket") or {}).get("bucket")))

    def add_tags(self, run: Run, *tags: str) -> WriteResult:
        before = list(loads_lenient(self._current(run).get("tags"), []) or [])
        return self.set_tags(run, before + [t for t in tags if t not in before])

    def remove_tags(self, run: Run, *tags: str) -> WriteResult:
        before = list(loads_lenient(self._current(run).get("tags"), []) or [])
        return self.set_tags(run, [t for t in before if t not in tags])

    def set_notes(self, run: Run, notes: str) -> WriteResult:
        cur = self._current(run)
        target = self._run_target(run)
        if (cur.get("notes") or "") == notes:
            return WriteResult("notes", target, self.dry_run, "unchanged", cur.get("notes"), notes)
        return self._write("notes", target, cur.get("notes"), notes, RUN_UPSERT_MUTATION,
                           {"id": self._storage_id(run, cur), "notes": notes},
                           check=lambda d: bool(((d or {}).get("upsertBucket") or {}).get("bucket")))

    # -- files -------------------------------------------------------------------------------
    def delete_file(self, run: Run, file: File) -> WriteResult:
        """Delete one run file upstream; refused unless its local copy re-hashes to its md5.

        The mirror keeps the file (catalog row and bytes): deleting upstream is the point.
        """
        target = f"{run.entity}/{run.project}/{run.name}/{file.name}"
        before = {"name": file.name, "md5": file.md5, "size": file.size, "id": file.id}
        if not self._verified(file):
            result = "error: local copy missing or does not match its md5; not deleting upstream"
            self._journal("delete_files", target, before, None, self.dry_run, result)
            raise UpstreamWriteError(f"delete {target}: {result[7:]}")
        if not file.id:
            result = "error: no upstream file id in the catalog"
            self._journal("delete_files", target, before, None, self.dry_run, result)
            raise UpstreamWriteError(f"delete {target}: {result[7:]}")
        project_id = self._project_internal_id(run)
        return self._write("delete_files", target, before, None, DELETE_FILES_MUTATION,
                           {"files": [file.id], "projectId": project_id},
                           check=lambda d: bool(((d or {}).get("deleteFiles") or {}).get("success")))

    def _verified(self, file: File) -> bool:
        import hashlib

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
        text = self._store.catalog.scalar("SELECT aliases FROM artifacts WHERE id = ?", [artifact.id])
        return list(loads_lenient(text if text is not None else artifact.aliases, []) or [])

    def add_alias(self, artifact: Artifact, alias: str) -> WriteResult:
        """Add `alias` to this artifact version (W&B moves it off any other version of the collection)."""
        before = self._aliases_now(artifact)
        target = artifact.qualified_name
        if alias in before:
            return WriteResult("alias_add", target, self.dry_run, "unchanged", before, before)
        return self._write("alias_add", target, before, before + [alias], ADD_ALIASES_MUTATION,
                           {"input": self._alias_input(artifact, alias)},
                           check=lambda d: bool(((d or {}).get("result") or {}).get("success")))

    def remove_alias(self, artifact: Artifact, alias: str) -> WriteResult:
        before = self._aliases_now(artifact)
        target = artifact.qualified_name
        if alias not in before:
            return WriteResult("alias_remove", target, self.dry_run, "unchanged", before, before)
        return self._write("alias_remove", target, before, [a for a in before if a != alias], DELETE_ALIASES_MUTATION,
                           {"input": self._alias_input(artifact, alias)},
                           check=lambda d: bool(((d or {}).get("result") or {}).get("success")))
