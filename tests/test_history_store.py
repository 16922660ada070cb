"""The columnar history store: Parquet segments plus a SQLite tail, one reader, compaction,
the in-place migration of stores whose history is all in the tail, and `verify --deep` on segments."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wandb_mirror.models import Project, Run
from wandb_mirror.store import Store, history, segments  # noqa: F401


def _rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rows = [{"_step": i, "_runtime": 1.5 * i, "loss": 1.0 / (i + 1 + seed), "epoch": i // 10, "ok": i % 2 == 0,
             "phase": "train"} for i in range(n)]
    rows[3]["loss"] = float("nan")
    rows[4]["loss"] = float("inf")
    rows[5]["val"] = {"loss": 0.5, "acc": [0.1, 0.2]}  # nested: a JSON column
    rows[6]["note"] = None                               # an explicit null is a value, not a missing key
    rows[7]["epoch"] = 2 ** 70                           # too big for int64: a JSON column, exact
    return rows


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    norm = lambda d: json.dumps(d, sort_keys=True, allow_nan=True)  # noqa: E731 - NaN == NaN by its text
    return norm(a) == norm(b)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest) -> str | None:
    """The catalog engine: None (PATH/catalog.db), or a PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    pytest.importorskip("psycopg")
    return str(request.getfixturevalue("pg_url"))


def _store_with_tails(path: Path, runs: dict[str, tuple[str, int]],
                      catalog: str | None = None) -> tuple[Store, dict[str, int]]:
    """A store laid out as before segments existed: every run's rows in the tail."""
    store = Store(path, catalog=catalog)
    ppk = store.catalog.upsert_project(Project(entity="e", name="p"))
    pks = {}
    for name, (state, n) in runs.items():
        pk = store.catalog.upsert_run(ppk, Run(run_id=name, state=state))
        store.history.append(pk, ((r["_step"], json.dumps(r)) for r in _rows(n, seed=pk)))
        pks[name] = pk
    return store, pks


def test_compaction_keeps_every_value_and_readers_merge_tail(tmp_path: Path, catalog: str | None) -> None:
    store, pks = _store_with_tails(tmp_path / "s", {"done": ("finished", 1200), "live": ("running", 30)}, catalog)
    pk = pks["done"]
    before = [json.loads(t) for _, t in store.history.texts(pk)]
    assert store.history.compact_due() == (1, 1200)  # the running run's short tail stays
    segs = store.history.segments(pk)
    assert [(s.first_step, s.last_step, s.rows) for s in segs] == [(0, 1199, 1200)]
    assert store.catalog.scalar("SELECT COUNT(*) FROM history WHERE run_pk = ?", [pk]) == 0
    assert store.history.count(pks["live"]) == 30 and store.history.segments(pks["live"]) == []
    after = [r for _, r in store.history.rows(pk)]
    assert len(after) == 1200 and all(_same(a, b) for a, b in zip(before, after))
    assert math.isnan(after[3]["loss"]) and after[4]["loss"] == math.inf
    assert after[6] == {**before[6], "note": None} and "note" not in after[8]
    assert after[7]["epoch"] == 2 ** 70 and isinstance(after[8]["epoch"], int)
    # HistoryPage text keeps W&B's tokens
    assert '"loss":NaN' in dict(store.history.texts(pk, min_step=3, max_step=4))[3]
    # ranges are [min, max), keys read only their columns (a dotted key reads its top-level column)
    assert [s for s, _ in store.history.rows(pk, min_step=10, max_step=13)] == [10, 11, 12]
    sub = dict(store.history.rows(pk, min_step=4, max_step=6, keys=["val.loss"]))
    assert sub == {4: {"_step": 4}, 5: {"_step": 5, "val": {"loss": 0.5, "acc": [0.1, 0.2]}}}
    # a step W&B rewrote after compaction: the tail wins until the next compaction folds it in
    store.history.append(pk, [(5, '{"_step": 5, "loss": 0.25}'), (1200, '{"_step": 1200, "loss": 0.1}')])
    assert dict(store.history.rows(pk, min_step=5, max_step=6))[5] == {"_step": 5, "loss": 0.25}
    assert store.history.count(pk) == 1201 and store.history.last_step(pk) == 1200
    store.history.compact(pk)
    assert [(s.first_step, s.last_step, s.rows) for s in store.history.segments(pk)] == [(0, 1200, 1201)]
    assert dict(store.history.rows(pk, min_step=5, max_step=6))[5] == {"_step": 5, "loss": 0.25}


def test_long_running_tail_is_compacted_into_bounded_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              catalog: str | None) -> None:
    monkeypatch.setattr(history, "SEGMENT_ROWS", 100)
    monkeypatch.setattr(history, "TAIL_ROWS", 40)
    monkeypatch.setattr(history, "ALIGN", 50)
    store, pks = _store_with_tails(tmp_path / "s", {"live": ("running", 30)}, catalog)
    pk = pks["live"]
    assert store.history.compact_due() == (0, 0)  # below TAIL_ROWS: stays in the tail
    for lo in range(30, 250, 20):
        store.history.append(pk, ((s, json.dumps({"_step": s, "x": s})) for s in range(lo, lo + 20)))
        store.history.compact_due()
    ranges = [(s.first_step, s.last_step) for s in store.history.segments(pk)]
    assert all(s.rows <= 100 for s in store.history.segments(pk))
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:])) and ranges[0][0] == 0  # contiguous
    assert (ranges[-1][1] + 1) % 50 == 0  # a running run's segments end on ALIGN: the live part starts a page
    tail = [r["step"] for r in store.catalog.query("SELECT step FROM history WHERE run_pk = ? ORDER BY step", [pk])]
    assert tail[0] == ranges[-1][1] + 1 and len(tail) < 50 + 40
    assert [s for s, _ in store.history.rows(pk)] == list(range(250))
    store.catalog.conn.execute("UPDATE runs SET state = 'finished'")
    store.catalog.conn.commit()
    store.history.compact_due()  # finished: the whole tail
    assert store.history.segments(pk)[-1].last_step == 249 and store.history.count(pk) == 250


def test_migration_of_an_old_store_resumes_after_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {f"r{i}": ("finished" if i % 3 else "crashed", 50 + i) for i in range(6)}
    store, pks = _store_with_tails(tmp_path / "s", runs)
    want = {name: list(store.history.texts(pk)) for name, pk in pks.items()}
    real_encode, calls = segments.encode, []

    def failing(rows: Any) -> bytes:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        return real_encode(rows)

    monkeypatch.setattr(segments, "encode", failing)
    with pytest.raises(OSError, match="injected"):
        store.history.compact_due()
    done = {n for n, pk in pks.items() if store.history.segments(pk)}
    assert len(done) == 2  # two runs migrated whole, the third rolled back, nothing half-done
    for name, pk in pks.items():
        assert [(s, json.loads(t)) for s, t in store.history.texts(pk)] == [(s, json.loads(t)) for s, t in want[name]]
    monkeypatch.setattr(segments, "encode", real_encode)
    assert store.history.compact_due() == (4, sum(50 + i for i, n in enumerate(runs) if n not in done))
    assert store.catalog.scalar("SELECT COUNT(*) FROM history") == 0
    assert store.catalog.scalar("PRAGMA freelist_count") == 0  # the tail's pages went back to the filesystem
    for name, pk in pks.items():
        got = [r for _, r in store.history.rows(pk)]
        assert len(got) == len(want[name]) and all(_same(json.loads(t), r) for (_, t), r in zip(want[name], got))
    store.close()
    # the same store through the CLI: verify --deep checks every segment
    r = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "verify", "--store", str(tmp_path / "s"), "--deep"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_verify_deep_finds_a_segment_that_disagrees_with_its_index(tmp_path: Path) -> None:
    store, pks = _store_with_tails(tmp_path / "s", {"a": ("finished", 40)})
    store.history.compact_due()
    store.catalog.conn.execute("UPDATE history_segments SET rows = 41, last_step = 40")
    store.catalog.conn.commit()
    store.close()
    r = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "verify", "--store", str(tmp_path / "s"), "--deep"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "holds 40 rows, steps 0..39; catalog says 41 rows, steps 0..40" in r.stdout + r.stderr
