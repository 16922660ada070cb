"""W&B's exported files stored column by column (History.put_tables, store/segment_writer.py): the
rows read back are exactly those the row-by-row path stores, segments stay within their bounds,
and files whose column types the segment layout does not hold go through rows instead."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from wandb_mirror.client import history_exports as X  # noqa: E402
from wandb_mirror.models import Project, Run  # noqa: E402
from wandb_mirror.store import Store, segments  # noqa: E402


def _export_files(tmp: Path) -> list[Path]:
    """Two export files of one run as another writer might type them: narrow ints and floats,
    large and dictionary strings, structs, lists, bools, NaN and infinities, an all-null column,
    a JSON-text column marked as ours, and a key that appears only in the second file."""
    n = 300
    steps = list(range(n))
    first = pa.table({
        "loss": pa.array([float("nan") if i == 3 else float("inf") if i == 4 else 1.0 / (i + 1) for i in steps],
                         pa.float32()),
        "_step": pa.array(steps, pa.int32()),  # not first, not int64
        "epoch": pa.array([i // 10 for i in steps], pa.int16()),
        "ok": pa.array([i % 2 == 0 if i % 7 else None for i in steps], pa.bool_()),
        "phase": pa.array(["train" if i % 3 else "eval" for i in steps], pa.large_string()),
        "tag": pa.array(["a", "b", None] * (n // 3), pa.string()).dictionary_encode(),
        "val": pa.array([{"loss": 0.5, "acc": [0.1, 0.2]} if i % 5 == 0 else None for i in steps]),
        "hist": pa.array([[i, i + 1] if i % 4 == 0 else None for i in steps], pa.list_(pa.int64())),
        "never": pa.nulls(n),
        "raw": pa.array([json.dumps({"k": [1, None]}) if i % 6 == 0 else None for i in steps], pa.string()),
    }).replace_schema_metadata(segments.metadata(["raw"]))
    second = pa.table({
        "_step": pa.array(range(n, 2 * n), pa.int64()),
        "loss": pa.array([0.5] * n, pa.float64()),  # wider than the first file's: a new segment
        "late": pa.array(["x"] * n, pa.string()),    # a key the first file does not have
    })
    paths = []
    for k, t in enumerate((first, second)):
        p = tmp / f"export-{k}.parquet"
        pq.write_table(t, p, row_group_size=128)  # several row groups per file
        paths.append(p)
    return paths


def _norm(rows: list[tuple[int, dict[str, Any]]]) -> str:
    return json.dumps(rows, sort_keys=True, allow_nan=True)


def _run(store: Store, name: str) -> int:
    ppk = store.catalog.upsert_project(Project(entity="e", name="p"))
    return store.catalog.upsert_run(ppk, Run(run_id=name, state="finished"))


def test_columnar_path_stores_the_rows_the_row_path_stores(tmp_path: Path) -> None:
    files = _export_files(tmp_path)
    got = X.DownloadedExports(files=[("u0", files[0], 0, 299), ("u1", files[1], 300, 599)],
                              plans={p: segments.file_plan(p) for p in files})
    assert got.columnar
    store = Store(tmp_path / "s")
    by_rows, by_cols = _run(store, "rows"), _run(store, "cols")
    store.history.put_rows(by_rows, got.rows(3))
    assert store.history.appendable(by_cols, 3)
    assert store.history.put_tables(by_cols, got.tables(3, 590)) == (587, 3, 589)

    want = [r for r in store.history.rows(by_rows, within_last=False) if r[0] < 590]
    have = list(store.history.rows(by_cols, within_last=False))
    assert _norm(have) == _norm(want) and len(have) == 587
    row = dict(have)
    assert math.isnan(row[3]["loss"]) and row[4]["loss"] == math.inf and row[10]["val"] == {"loss": 0.5, "acc": [0.1, 0.2]}
    assert row[12]["raw"] == {"k": [1, None]} and row[8]["hist"] == [8, 9] and "never" not in row[8]
    assert row[19]["tag"] == "b" and "tag" not in row[20] and row[300] == {"_step": 300, "loss": 0.5, "late": "x"}
    assert list(store.history.texts(by_cols, min_step=6, max_step=7)) == \
        list(store.history.texts(by_rows, min_step=6, max_step=7))
    # a key that appears later starts a new segment; segments do not overlap and index their keys
    segs = store.history.segments(by_cols)
    assert [(s.first_step, s.last_step, s.rows) for s in segs] == [(3, 299, 297), (300, 589, 290)]
    assert "late" in segs[1].keys and "late" not in segs[0].keys and "never" not in segs[0].keys
    # and the run is no longer appendable below its last step
    assert not store.history.appendable(by_cols, 589) and store.history.appendable(by_cols, 590)


def test_segments_are_bounded_in_rows_and_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb_mirror.store import history

    files = _export_files(tmp_path)
    store = Store(tmp_path / "s")
    pk = _run(store, "r")
    monkeypatch.setattr(history, "SEGMENT_ROWS", 100)
    tables = [t for p in files for t in segments.tables(p)]
    assert store.history.put_tables(pk, tables)[0] == 600
    segs = store.history.segments(pk)
    assert max(s.rows for s in segs) == 100 and sum(s.rows for s in segs) == 600
    assert all(a.last_step < b.first_step for a, b in zip(segs, segs[1:]))

    pk2 = _run(store, "r2")
    monkeypatch.setattr(history, "SEGMENT_ROWS", 10_000)
    monkeypatch.setattr(history, "MAX_SEGMENT_BYTES", 1)  # every write closes the segment
    store.history.put_tables(pk2, [t for p in files for t in segments.tables(p)])
    assert len(store.history.segments(pk2)) == len(tables)  # one per row group written
    assert _norm(list(store.history.rows(pk2, within_last=False))) == \
        _norm(list(store.history.rows(pk, within_last=False)))


def test_a_file_the_layout_cannot_hold_goes_through_rows(tmp_path: Path) -> None:
    p = tmp_path / "export.parquet"
    pq.write_table(pa.table({"_step": pa.array([0, 1], pa.int64()), "blob": pa.array([b"x", b"y"])}), p)
    assert segments.file_plan(p) is None
    got = X.DownloadedExports(files=[("u", p, 0, 1)], plans={p: segments.file_plan(p)})
    assert not got.columnar
    with pytest.raises(ValueError):
        next(segments.tables(p))
