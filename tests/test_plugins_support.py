"""Shared helpers for the plugin and daemon tests (no tests here).

- `plugin_doc()`: a small fixture document (docs/fixtures.md) with a sweep whose best finished run
  is not its best run overall, runs whose summaries lack history keys, and files to clean up.
- `seed_store(path, doc)`: a store seeded from a document.
- `emit(store, kind, ...)`: write a change row the way the sync engine does.
- `Recorder`: a plugin object that records every event it receives.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

from wandb_mirror.hooks import hookimpl
from wandb_mirror.store import Store

ENTITY = "acme"
PROJECT = "sweepy"


def plugin_doc() -> dict[str, Any]:
    return {
        "viewer": {"username": "ada", "entity": ENTITY},
        "projects": [{
            "name": PROJECT,
            "created_at": "2024-01-01T00:00:00",
            "sweeps": [{"name": "sw", "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                        "parameters": {"lr": {"values": [0.1, 0.01]}}}],
            "runs": [
                # finished, in the sweep: loss 0.3 (summary), history min 0.05
                {"id": "a1", "state": "finished", "sweep": "sw", "tags": ["keep"],
                 "history": [{"loss": 0.9, "acc": 0.1}, {"loss": 0.05, "acc": 0.5}, {"loss": 0.3, "acc": 0.7}],
                 "summary": {"loss": 0.3},
                 "files": [{"name": "plot.png", "size": 2000, "seed": 1}, {"name": "notes.txt", "text": "hi\n"},
                           {"name": "media/x.PNG", "size": 100, "seed": 2}]},
                # finished, in the sweep: the best by summary (0.2)
                {"id": "a2", "state": "finished", "sweep": "sw",
                 "history": [{"loss": 0.8}, {"loss": 0.2}], "summary": {"loss": 0.2},
                 "files": [{"name": "model.ckpt", "size": 5000, "seed": 3}, {"name": "plot.png", "size": 1000, "seed": 4}]},
                # crashed with a better loss: never the best
                {"id": "a3", "state": "crashed", "sweep": "sw", "history": [{"loss": 0.01}], "summary": {"loss": 0.01}},
                # running with a better loss: never the best
                {"id": "a4", "state": "running", "sweep": "sw", "history": [{"loss": 0.02}], "summary": {"loss": 0.02},
                 "files": [{"name": "live.png", "size": 100, "seed": 5}]},
                # not in a sweep; summary complete
                {"id": "b1", "state": "finished", "history": [{"loss": 1.0}], "summary": {"loss": 1.0}},
            ],
            "artifacts": [{"name": "weights", "type": "model", "versions": [
                {"files": [{"path": "w.bin", "size": 300, "seed": 9}], "created_by": "a1"},
                {"files": [{"path": "w.bin", "size": 300, "seed": 10}], "created_by": "a2"},
            ]}],
        }],
    }


def seed_store(path: Path, doc: dict[str, Any] | None = None, *, catalog: str | None = None) -> Path:
    from wandb_mirror.fixtures import seed

    store = Store(path, catalog=catalog)
    try:
        seed(store, doc or plugin_doc())
    finally:
        store.close()
    return path


def serve_writable_copy(seeded: Path, tmp_path: Path, start_mirror_server: Any, monkeypatch: Any) -> tuple[Any, Path]:
    """A private copy of a seeded upstream, served writable (the plugins' writes land in it)."""
    dst = tmp_path / "upstream"
    shutil.copytree(seeded, dst)
    for p in dst.rglob("*"):
        if p.is_file():
            p.chmod(0o600)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    return start_mirror_server(dst, writable=True), dst


def emit(store: Store, kind: str, payload: dict[str, Any] | None = None, *, run: str | None = None,
         subject: str | None = None, entity: str = ENTITY, project: str = PROJECT) -> int:
    with store.catalog.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO changes (pass_id, at, kind, entity, project, run, subject, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [None, "2024-01-01T00:00:00Z", kind, entity, project, run, subject, json.dumps(payload or {})],
        )
        return int(cur.lastrowid)


def emit_runs_created(store: Store) -> None:
    for r in store.catalog.query("SELECT run_id, state FROM runs ORDER BY pk"):
        emit(store, "run_created", {"state": r["state"]}, run=r["run_id"])


class Recorder:
    """A plugin that records (hook, key) for every event it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def _add(self, hook: str, key: Any) -> None:
        with self.lock:
            self.calls.append((hook, key))

    @hookimpl
    def run_created(self, run):
        self._add("run_created", run.run_id)

    @hookimpl
    def run_state_changed(self, run, old, new):
        self._add("run_state_changed", (run.run_id, old, new))

    @hookimpl
    def run_updated(self, run, changes):
        self._add("run_updated", (run.run_id, sorted(changes)))

    @hookimpl
    def history_appended(self, run, first_step, last_step):
        self._add("history_appended", (run.run_id, first_step, last_step))

    @hookimpl
    def file_mirrored(self, run, file):
        self._add("file_mirrored", (run.run_id, file.name, file.md5))

    @hookimpl
    def artifact_version_mirrored(self, artifact):
        self._add("artifact_version_mirrored", artifact.qualified_name)

    @hookimpl
    def artifact_aliases_changed(self, artifact, added, removed):
        self._add("artifact_aliases_changed", (artifact.qualified_name, added, removed))

    @hookimpl
    def sweep_updated(self, sweep):
        self._add("sweep_updated", sweep.name)

    @hookimpl
    def sweep_finished(self, sweep):
        self._add("sweep_finished", sweep.name)

    @hookimpl
    def tombstoned(self, kind, key):
        self._add("tombstoned", (kind, key))

    @hookimpl
    def cycle_finished(self, stats):
        self._add("cycle_finished", stats.cycle)
