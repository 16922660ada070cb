"""`wandb-mirror export` as analysts read it: pandas and DuckDB with the documented types."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from wandb_mirror.cli import main
from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store

duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "store"
    store = Store(path)
    try:
        seed(store, demo_fixture())
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def exported(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "export"
    old = os.umask(0o027)
    try:
        assert main(["export", "--store", str(demo_store), "--out", str(out),
                     "--format", "csv", "--format", "parquet", "--format", "jsonl"]) == 0
    finally:
        os.umask(old)
    return out


def _types(con, sql: str) -> dict[str, str]:
    return {r[0]: str(r[1]) for r in con.execute(f"DESCRIBE {sql}").fetchall()}


def _counts(store: Path) -> dict[str, int]:
    with Store(store, create=False, readonly=True) as s:
        out = {t: s.catalog.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("runs", "events")}
        out["history"] = s.history.count()  # the table's tail and the Parquet segments
        return out


def test_parquet_types_with_duckdb_and_pandas(demo_store: Path, exported: Path) -> None:
    n = _counts(demo_store)
    con = duckdb.connect()
    types = _types(con, f"SELECT * FROM read_parquet('{exported}/parquet/runs/**/*.parquet', hive_partitioning=true, "
                        "union_by_name=true)")
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE" and types["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["tags"] == "VARCHAR[]" and types["last_step"] == "BIGINT"
    assert types["entity"] == "VARCHAR" and types["project"] == "VARCHAR"  # the partition keys
    assert "config.optimizer.name" in types  # nested config flattened
    assert con.execute(f"SELECT COUNT(*) FROM read_parquet('{exported}/parquet/runs/**/*.parquet')").fetchone()[0] == n["runs"]
    hist = f"read_parquet('{exported}/parquet/history/**/*.parquet', hive_partitioning=true, union_by_name=true)"
    total, keyed, runs_seen = con.execute(f"SELECT COUNT(*), COUNT(run_path), COUNT(DISTINCT run) FROM {hist}").fetchone()
    assert total == n["history"] and keyed == total
    assert con.execute(f"SELECT COUNT(*) FROM {hist} WHERE run_path != entity || '/' || project || '/' || run").fetchone()[0] == 0
    assert con.execute(f"SELECT COUNT(*) FROM {hist} WHERE isnan(loss)").fetchone()[0] > 0
    assert con.execute(f"SELECT COUNT(*) FROM {hist} WHERE isinf(loss)").fetchone()[0] > 0
    system = f"read_parquet('{exported}/parquet/system/**/*.parquet', hive_partitioning=true, union_by_name=true)"
    assert con.execute(f"SELECT COUNT(*) FROM {system}").fetchone()[0] == n["events"]

    df = pd.concat(pd.read_parquet(p) for p in (exported / "parquet" / "runs").rglob("*.parquet"))
    assert str(df["created_at"].dtype).startswith("datetime64") and "UTC" in str(df["created_at"].dtype)
    assert all(isinstance(list(t), list) for t in df["tags"])
    h = pd.read_parquet(exported / "parquet" / "history")  # the dataset: partition keys become columns
    assert len(h) == n["history"] and str(h["_step"].dtype) == "int64"
    assert {"run_path", "entity", "project", "run"} <= set(h.columns)
    assert (h["run_path"] == h["entity"].astype(str) + "/" + h["project"].astype(str) + "/" + h["run"].astype(str)).all()


def test_csv_and_jsonl_read_back(demo_store: Path, exported: Path) -> None:
    n = _counts(demo_store)
    runs_csv = list((exported / "csv" / "runs").rglob("runs.csv"))
    df = pd.concat(pd.read_csv(p, parse_dates=["created_at"]) for p in runs_csv)
    assert len(df) == n["runs"] and str(df["created_at"].dt.tz) == "UTC"
    assert all(isinstance(json.loads(t), list) for t in df["tags"])
    lines = [ln for p in (exported / "jsonl" / "history").rglob("history.jsonl") for ln in p.read_text().splitlines()]
    assert len(lines) == n["history"]
    bare: list[str] = []
    rows = [json.loads(ln, parse_constant=bare.append) for ln in lines]
    assert bare == []  # strict JSON: NaN and infinities are null
    with Store(demo_store, create=False, readonly=True) as s:
        nans = sum(1 for r in s.catalog.query("SELECT pk FROM runs") for _, row in s.history.rows(r["pk"])
                   if isinstance(v := row.get("loss"), float) and not math.isfinite(v))
    assert nans > 0 and sum(1 for r in rows if "loss" in r and r["loss"] is None) >= nans
    con = duckdb.connect()
    j = con.execute(f"SELECT COUNT(*) FROM read_json_auto('{exported}/jsonl/history/**/*.jsonl', union_by_name=true)")
    assert j.fetchone()[0] == n["history"]
    r = _types(con, f"SELECT created_at FROM read_json_auto('{exported}/jsonl/runs/**/*.jsonl', union_by_name=true)")
    assert r["created_at"].startswith("TIMESTAMP")
    c = _types(con, f"SELECT created_at FROM read_csv_auto('{exported}/csv/runs/**/*.csv', union_by_name=true)")
    assert c["created_at"].startswith("TIMESTAMP")


def test_files_take_the_umask_modes(exported: Path) -> None:
    files = [p for p in exported.rglob("*") if p.is_file()]
    assert files and {p.stat().st_mode & 0o777 for p in files} == {0o640}


def test_project_export_leaves_other_projects_alone(demo_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["export", "--store", str(demo_store), "--out", str(out), "--format", "csv"]) == 0
    projects = sorted(p.name for p in (out / "csv" / "runs").glob("*/*"))
    assert len(projects) >= 2
    before = {p: p.read_bytes() for p in out.rglob("*.csv")}
    with Store(demo_store, create=False, readonly=True) as s:
        entity, project = s.catalog.query("SELECT entity, name FROM projects ORDER BY name")[0].values()
    assert main(["export", "--store", str(demo_store), "--out", str(out), "--format", "csv",
                 "--project", f"{entity}/{project}", "--no-history"]) == 0
    after = {p: p.read_bytes() for p in out.rglob("*.csv")}
    assert after == before  # the same data rewrites identical bytes, and nothing else was touched
    assert sorted(p.name for p in (out / "csv" / "runs").glob("*/*")) == projects
