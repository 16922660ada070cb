"""The analysts' history dataset: hive-partitioned, hard links to the store's segments, read by
DuckDB (with the SQL docs/history.md gives) and pandas."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENTITY, PROJECT
from test_server_parquet import LIVE_TO, store_with_live_tail  # noqa: F401 - a fixture

from wandb_mirror.store import Store

duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wandb_mirror.cli", *args], capture_output=True, text=True, timeout=120)


def _counts(store_path: Path) -> dict[str, tuple[int, int]]:
    with Store(store_path, create=False, readonly=True) as s:
        out = {}
        for r in s.catalog.query("SELECT r.pk, r.run_id FROM runs r JOIN projects p ON p.pk = r.project_pk "
                                 "WHERE p.name = ?", [PROJECT]):
            if s.history.count(r["pk"]):
                out[r["run_id"]] = (s.history.count(r["pk"]), s.history.last_step(r["pk"]))
        return out


def test_dataset_is_links_and_duckdb_and_pandas_read_it(store_with_live_tail: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "ds"
    r = cli("dataset", "--store", str(store_with_live_tail), "--out", str(out))
    assert r.returncode == 0, r.stderr
    run_dir = out / f"entity={ENTITY}" / f"project={PROJECT}" / "run=r01"
    (part,) = run_dir.glob("part-*.parquet")
    with Store(store_with_live_tail, create=False, readonly=True) as s:
        seg = s.history.segments(s.catalog.run_pk(s.catalog.project_pk(ENTITY, PROJECT), "r01"))[0]
        assert os.stat(part).st_ino == os.stat(s.objects.path(seg.md5)).st_ino  # a hard link: no copy
        want_r01 = [r for _, r in s.history.rows(seg.run_pk)]
    assert (out / f"entity={ENTITY}" / f"project={PROJECT}" / "run=r04" / "tail.parquet").exists()

    glob = f"{out}/**/*.parquet"
    sql = (f"SELECT run, count(*) AS n, max(_step) AS last FROM read_parquet('{glob}', hive_partitioning = true, "
           f"union_by_name = true) WHERE project = '{PROJECT}' GROUP BY run ORDER BY run")
    got = {run: (n, last) for run, n, last in duckdb.sql(sql).fetchall()}
    assert got == _counts(store_with_live_tail) and got["r04"] == (LIVE_TO, LIVE_TO - 1)
    nan_row = duckdb.sql(f"SELECT loss, nested.a FROM read_parquet('{glob}', hive_partitioning = true, "
                         "union_by_name = true) WHERE run = 'r06' ORDER BY _step").fetchall()
    assert math.isnan(nan_row[1][0]) and nan_row[0][1] == 1 and nan_row[2][1] == 3

    df = pd.read_parquet(run_dir)
    assert len(df) == len(want_r01) and df["loss"].tolist() == pytest.approx([r["loss"] for r in want_r01])
    one = pd.read_parquet(out, filters=[("run", "=", "r01")], columns=["_step", "loss"])
    assert one["_step"].tolist() == list(range(250))


def test_dataset_refresh_follows_compaction_and_refuses_foreign_dirs(store_with_live_tail: Path,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert cli("dataset", "--store", str(store_with_live_tail), "--out", str(out)).returncode == 0
    r04 = out / f"entity={ENTITY}" / f"project={PROJECT}" / "run=r04"
    before = sorted(p.name for p in r04.glob("*.parquet"))
    with Store(store_with_live_tail) as s:
        pk = s.catalog.run_pk(s.catalog.project_pk(ENTITY, PROJECT), "r04")
        s.history.append(pk, [(LIVE_TO, json.dumps({"_step": LIVE_TO, "loss": 0.0}))])
        s.catalog.conn.execute("UPDATE runs SET state = 'finished', last_step = ? WHERE pk = ?", [LIVE_TO, pk])
        s.catalog.conn.commit()
        s.history.compact_due()
    r = cli("dataset", "--store", str(store_with_live_tail), "--out", str(out))
    assert r.returncode == 0 and "removed" in r.stdout
    after = sorted(p.name for p in r04.glob("*.parquet"))
    assert "tail.parquet" in before and "tail.parquet" not in after and after != before
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{r04}/*.parquet')").fetchall()[0][0]
    assert n == LIVE_TO + 1

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = cli("dataset", "--store", str(store_with_live_tail), "--out", str(foreign))
    assert r.returncode == 2 and "is not a history dataset" in r.stderr and (foreign / "notes.txt").exists()
