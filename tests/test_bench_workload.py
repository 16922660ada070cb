"""Smoke test of the benchmark's workload generator (bench/workload.py); the benchmark itself is `make bench`."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

from wandb_mirror.fixtures import parse, seed
from wandb_mirror.store import Store

_spec = importlib.util.spec_from_file_location("bench_workload", Path(__file__).parent.parent / "bench" / "workload.py")
W = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(W)


def test_default_shape_is_a_valid_fixture() -> None:
    doc = W.workload()
    p = doc["projects"][0]
    assert len(p["runs"]) == 200 and len(W.workload(3)["projects"][0]["runs"]) == 600
    assert {len(r["files"]) for r in p["runs"]} == {5}
    assert sum("sweep" in r for r in p["runs"]) == 50
    versions = p["artifacts"][0]["versions"]
    assert len(versions) == 20
    a, b = ({f["path"]: f["seed"] for f in v["files"]} for v in versions[:2])
    assert sum(a[k] == b[k] for k in a) == 16  # 80% shared between consecutive versions
    parse(W.workload(runs=4, steps=10))  # the same generator, small: validates without writing anything


def test_change_upstream_appends_history_and_edits_a_summary(tmp_path: Path) -> None:
    doc = W.workload(runs=10, steps=30, files_per_run=0, sweep_runs=2, artifact_versions=1, artifact_files=1)
    with Store(tmp_path / "up") as store:
        seed(store, doc)
    change = W.change_upstream(str(tmp_path / "up" / "catalog.db"), share=0.2, new_steps=5)
    assert len(change["changed_runs"]) == 2 and change["rows"] == 10
    conn = sqlite3.connect(tmp_path / "up" / "catalog.db")
    for name in change["changed_runs"]:
        last_step, lines, hk = conn.execute("SELECT last_step, history_line_count, history_keys FROM runs "
                                            "WHERE run_id = ?", [name]).fetchone()
        assert (last_step, lines, json.loads(hk)["lastStep"]) == (34, 35, 34)
        pk = conn.execute("SELECT pk FROM runs WHERE run_id = ?", [name]).fetchone()[0]
        with Store(tmp_path / "up", create=False, readonly=True) as s:
            assert (s.history.count(pk), s.history.last_step(pk)) == (35, 34)
    summary = json.loads(conn.execute("SELECT summary FROM runs WHERE run_id = ?", [change["edited_run"]]).fetchone()[0])
    assert summary["best_val_loss"] == 0.01234
