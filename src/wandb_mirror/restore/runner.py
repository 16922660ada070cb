"""Restore one stored project into a target project, step by step, each step journaled.

Order: sweeps (so runs can name them), then each run (metadata, history, events, files, then its
summary and final state), then artifact versions collection by collection in version order (so
version numbers and the holder of each alias come out as in the store), then who used which
version. Every object is re-hashed from the store before it is sent: nothing unverified leaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any

from .. import ids
from ..errors import IntegrityError
from ..store.reader import StoredArtifact, StoredRun, StoreReader, alias_names
from .journal import Journal
from .plan import Move
from .target import Target

log = logging.getLogger(__name__)

HISTORY_CHUNK = 1000  # rows per file_stream request (W&B's own client sends far smaller ones)
FILES_BATCH = 100     # names per createRunFiles / createArtifactFiles
EXIT_CODES = {"finished": 0, "failed": 1, "crashed": 1, "killed": 1}  # running/pending runs stay open


@dataclass
class Counts:
    runs: int = 0
    history_rows: int = 0
    events: int = 0
    files: int = 0
    bytes: int = 0
    artifact_versions: int = 0
    sweeps: int = 0
    skipped: int = 0  # steps the journal says are done
    notes: list[str] = field(default_factory=list)


def _batches(items: list[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def _runs_of_numbers(lines: list[Any], n: int) -> Iterator[list[Any]]:
    """Lines in chunks of at most n whose numbers are consecutive (each chunk is sent at its first number)."""
    chunk: list[Any] = []
    for ln in lines:
        if chunk and (len(chunk) >= n or ln.number != chunk[-1].number + 1):
            yield chunk
            chunk = []
        chunk.append(ln)
    if chunk:
        yield chunk


class ProjectRestore:
    def __init__(self, reader: StoreReader, target: Target, journal: Journal, move: Move, target_url: str,
                 progress: Callable[[str], None] = lambda s: None):
        self.reader = reader
        self.objects = reader.store.objects
        self.target = target
        self.journal = journal
        self.move = move
        self.entity, self.project = move.entity, move.project
        self.target_url = target_url
        self.progress = progress
        self.counts = Counts()
        self.sweep_names: dict[str, str] = {}
        self.run_names: set[str] = set()
        self.artifact_ids: dict[int, str] = {}  # stored artifact pk -> its id on the target (registry links)

    def key(self, *parts: str) -> str:
        return "|".join([self.move.dst, *parts])

    def _step(self, key: str, send: Callable[[], Any]) -> dict[str, Any]:
        data, skipped = self.journal.step(key, send)
        self.counts.skipped += skipped
        return data

    def _verified(self, md5: str) -> Callable[[], Any]:
        """The object, re-hashed first; a callable that opens it (once per upload attempt)."""
        try:
            info = self.objects.hash_object(md5)
        except (OSError, ValueError) as e:
            raise IntegrityError(f"object {md5} is missing from the store: {e}") from None
        if info.md5 != md5:
            raise IntegrityError(f"object {md5} in the store is damaged (it hashes to {info.md5}); run verify/repair")
        return lambda: self.objects.open(md5)

    # -- the whole project ------------------------------------------------------------------
    def run(self) -> Counts:
        pk = self.move.source.pk
        for sweep in self.reader.sweeps(pk):
            self.restore_sweep(sweep)
        runs = self.reader.runs(pk)
        self.run_names = {r.run.run_id for r in runs}
        for stored in runs:
            self.restore_run(stored)
        for art in self.reader.artifacts(pk):
            self.restore_artifact(art)
        return self.counts

    # -- sweeps -----------------------------------------------------------------------------
    def restore_sweep(self, sweep: Any) -> None:
        def send() -> dict[str, Any]:
            # The target names a sweep itself, so a create cannot be made idempotent by name: a sweep
            # created by a restore stopped before journaling it is found by its config instead.
            taken = set(self.sweep_names.values())
            for existing in self.target.sweeps(self.entity, self.project):
                if existing["config"] == sweep.config and existing["name"] not in taken:
                    return {"name": existing["name"]}
            name = self.target.create_sweep(self.entity, self.project, sweep.config, sweep.display_name,
                                            sweep.description, sweep.state)
            self.counts.sweeps += 1
            return {"name": name}

        self.sweep_names[sweep.name] = self._step(self.key("sweep", sweep.name), send)["name"]

    # -- runs -------------------------------------------------------------------------------
    def restore_run(self, stored: StoredRun) -> None:
        run = stored.run
        self.progress(f"run {self.move.dst}/{run.run_id}")
        fields = {"displayName": run.display_name, "notes": run.notes, "tags": run.tag_list(), "config": run.config,
                  "groupName": run.group_name, "jobType": run.job_type, "host": run.host, "commit": run.commit_hash,
                  "description": run.description,
                  "sweep": self.sweep_names.get(run.sweep_name or "", run.sweep_name) if run.sweep_name else None}
        fields = {k: v for k, v in fields.items() if v is not None}
        self._step(self.key("run", run.run_id, "meta"),
                   lambda: self.target.upsert_run(self.entity, self.project, run.run_id, fields))
        self._history(stored)
        self._events(stored)
        self._console(stored)
        self._files(stored)

        def finish() -> None:
            self.target.upsert_run(self.entity, self.project, run.run_id, {"summaryMetrics": run.summary})
            code = EXIT_CODES.get((run.state or "").lower())
            if code is not None:
                self.target.file_stream(self.entity, self.project, run.run_id, {"complete": True, "exitcode": code})
            self.counts.runs += 1

        self._step(self.key("run", run.run_id, "final"), finish)

    def _history(self, stored: StoredRun) -> None:
        key = self.key("run", stored.run.run_id, "history")
        if self.journal.done(key):
            self.counts.skipped += 1
            return
        sent = self.journal.data(key)  # {"offset": lines sent, "step": last step sent}
        offset, last = int(sent.get("offset", 0)), sent.get("step")
        rows = self.reader.history(stored.pk, after_step=last)
        while chunk := list(islice(rows, HISTORY_CHUNK)):
            self.target.file_stream(self.entity, self.project, stored.run.run_id,
                                    {"files": {"wandb-history.jsonl": {"offset": offset,
                                                                       "content": [r for _, r in chunk]}}})
            offset += len(chunk)
            self.counts.history_rows += len(chunk)
            self.journal.intent(key, {"offset": offset, "step": chunk[-1][0]})
        self.journal.mark_done(key, {"offset": offset})

    def _events(self, stored: StoredRun) -> None:
        def send() -> None:
            lines = self.reader.events(stored.pk)
            for i, chunk in enumerate(_batches(lines, HISTORY_CHUNK)):
                self.target.file_stream(self.entity, self.project, stored.run.run_id, {
                    "files": {"wandb-events.jsonl": {"offset": i * HISTORY_CHUNK, "content": chunk}}})
            self.counts.events += len(lines)

        self._step(self.key("run", stored.run.run_id, "events"), send)

    def _console(self, stored: StoredRun) -> None:
        """Console lines travel as wandb-core sends them: `output.log` lines `[ERROR ]TIMESTAMP text` at
        their line numbers (the run file `output.log` is uploaded afterwards, byte for byte)."""
        def send() -> None:
            lines = self.reader.console(stored.pk)
            for chunk in _runs_of_numbers(lines, HISTORY_CHUNK):
                content = [("ERROR " if ln.level == "error" else "") + (f"{ln.timestamp} " if ln.timestamp else "")
                           + ln.line for ln in chunk]
                self.target.file_stream(self.entity, self.project, stored.run.run_id,
                                        {"files": {"output.log": {"offset": chunk[0].number, "content": content}}})

        self._step(self.key("run", stored.run.run_id, "console"), send)

    def _files(self, stored: StoredRun) -> None:
        name = stored.run.run_id
        files = [f.file for f in self.reader.files(stored.pk)]
        todo = [f for f in files if not self.journal.done(self.key("file", name, f.name, f.md5))]
        self.counts.skipped += len(files) - len(todo)
        for batch in _batches(todo, FILES_BATCH):
            urls = self.target.run_upload_urls(self.entity, self.project, name, [f.name for f in batch])
            for f in batch:
                key = self.key("file", name, f.name, f.md5)
                if f.name not in urls:
                    raise IntegrityError(f"the target gave no upload URL for {self.move.dst}/{name}/{f.name}")
                url, headers = urls[f.name]
                opener = self._verified(f.md5)
                self.journal.intent(key)
                self.target.put(url, opener, f.md5, headers, "upload run file")
                self.journal.mark_done(key)
                self.counts.files += 1
                self.counts.bytes += f.size

    # -- artifacts --------------------------------------------------------------------------
    def client_id(self, what: str) -> str:
        """Stable per (target, destination, source item): a resent create finds what it created."""
        return hashlib.sha256(f"{self.target_url}\0{self.move.dst}\0{what}".encode()).hexdigest()[:32]

    def restore_artifact(self, stored: StoredArtifact) -> None:
        a = stored.artifact
        label = f"{stored.collection}:v{a.version_index}"
        key = self.key("artifact", label)
        if self.journal.done(key):
            self.counts.skipped += 1
            new_id = self.journal.data(key)["id"]
        else:
            self.progress(f"artifact {self.move.dst}/{label}")
            new_id = self._artifact(stored)
            self.journal.mark_done(key, {"id": new_id})
        self.artifact_ids[stored.pk] = new_id
        for run in (r for r in stored.consumers if r in self.run_names):
            self._step(self.key("use", label, run), partial(self.target.use_artifact, self.entity, self.project,
                                                            run, new_id))

    def _artifact(self, stored: StoredArtifact) -> str:
        a = stored.artifact
        aliases = [x for x in alias_names(a.aliases) if x != "latest"]
        producer = stored.producer if stored.producer in self.run_names else None
        fields: dict[str, Any] = {
            "entityName": self.entity, "projectName": self.project, "runName": producer,
            "artifactTypeName": a.type_name, "artifactCollectionName": stored.collection,
            "clientID": self.client_id(a.id), "sequenceClientID": self.client_id("collection:" + stored.collection),
            "digest": a.digest, "digestAlgorithm": a.digest_algorithm or "MANIFEST_MD5", "description": a.description,
            "metadata": a.metadata, "historyStep": a.history_step,
            "aliases": [{"alias": x, "artifactCollectionName": stored.collection} for x in aliases],
            "tags": [{"tagName": t} for t in json.loads(a.tags or "[]")],
            "enableDigestDeduplication": False,
            "ttlDurationSeconds": a.ttl_duration_seconds if (a.ttl_duration_seconds or -1) > 0 else None,
        }
        created = self.target.create_artifact({k: v for k, v in fields.items() if v is not None})
        self.journal.intent(self.key("artifact", f"{stored.collection}:v{a.version_index}"), {"id": created.id})
        if created.state == "COMMITTED":
            return created.id
        entries = self.reader.entries(stored.pk)
        stored_files = [e for e in entries if e.md5]
        for batch in _batches(stored_files, FILES_BATCH):
            urls = self.target.artifact_upload_urls(created.id, [(e.path, ids.md5_hex_to_b64(e.md5)) for e in batch])
            for e in batch:
                if e.path in urls:
                    url, headers = urls[e.path]
                    self.target.put(url, self._verified(e.md5), e.md5, headers, "upload artifact file")
                    self.counts.bytes += e.size
        manifest = self._manifest(stored, entries, created.id)
        url, headers = self.target.manifest_upload_url(created.id, a.digest or "", self.entity, self.project,
                                                       producer or "")
        body = json.dumps(manifest, indent=4).encode()
        md5 = hashlib.md5(body).hexdigest()
        self.target.t.send("PUT", url, "upload artifact manifest", data=body,
                           headers={"Content-Type": "application/json",
                                    "Content-MD5": ids.md5_hex_to_b64(md5), **headers})
        digest = self.target.commit_artifact(created.id)
        if a.digest and digest != a.digest:
            raise IntegrityError(f"{self.move.dst}/{stored.collection}:v{a.version_index}: the target committed "
                                 f"digest {digest}, the store has {a.digest}")
        self.counts.artifact_versions += 1
        return created.id

    def _manifest(self, stored: StoredArtifact, entries: list[Any], new_id: str) -> dict[str, Any]:
        """The stored manifest, with the entries' birth artifact pointing at the version just created."""
        if stored.manifest_md5 and self.objects.has(stored.manifest_md5):
            doc = json.loads(self.objects.read_bytes(stored.manifest_md5))
        else:
            doc = {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                   "storagePolicyConfig": {"storageLayout": "V2"}, "contents": {}}
            for e in entries:
                entry = {"digest": e.digest, "size": e.size, **({"ref": e.ref} if e.ref else {})}
                extra = json.loads(e.extra or "{}")
                if extra:
                    entry["extra"] = extra
                doc["contents"][e.path] = entry
        for entry in doc["contents"].values():
            if not entry.get("ref"):
                entry["birthArtifactID"] = new_id
        return doc

