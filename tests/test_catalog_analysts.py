"""The catalog as analysts meet it: strict JSON for SQLite's JSON functions, declared foreign keys,
views for humans; and the W&B text (NaN, Infinity) still what `serve` answers."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from wandb_mirror import jsontext
from wandb_mirror.config import minimal_config
from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store, migrations
from wandb_mirror.sync import SyncEngine, make_client


@pytest.fixture(scope="module")
def demo_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace served on loopback and mirrored through the real sync."""
    from wandb_mirror.server import start_server

    base = tmp_path_factory.mktemp("analysts")
    up = Store(base / "up")
    try:
        seed(up, demo_fixture())
    finally:
        up.close()
    server = start_server(base / "up", read_only=True)
    cfg = minimal_config(server.url, base / "mirror")
    store = Store(base / "mirror")
    import os

    os.environ["WANDB_API_KEY"] = "k" * 40
    client = make_client(cfg)
    try:
        with store.lock("test"):
            result = SyncEngine(cfg, store, client).run_pass()
        assert result.status == "ok", result.errors
    finally:
        client.close()
        store.close()
        server.stop()
        os.environ.pop("WANDB_API_KEY", None)
    # finished runs' history moves into Parquet segments; a running run's tail stays in the table:
    # give one such tail the non-finite values W&B sends, through the store's own write path
    with Store(base / "mirror") as s:
        pk = s.catalog.scalar("SELECT pk FROM runs WHERE state = 'running' ORDER BY pk LIMIT 1")
        last = s.history.last_step(pk) or 0
        s.history.append(pk, [(last + 1, f'{{"_step": {last + 1}, "loss": NaN, "lr": Infinity, "s": "NaN"}}'),
                              (last + 2, f'{{"_step": {last + 2}, "loss": -Infinity, "val": {{"x": NaN}}}}')])
    return base / "mirror"


def _text_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    out = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        for col in conn.execute(f"PRAGMA table_info({table})"):
            if col[2].upper() == "TEXT":
                out.append((table, col[1]))
    return out


def test_every_json_column_of_a_demo_mirror_works_with_sqlite_json_functions(demo_mirror: Path) -> None:
    conn = sqlite3.connect(demo_mirror / "catalog.db")
    # the demo has NaN and Infinity in history: the case that used to break json_each whole
    assert conn.execute("SELECT COUNT(*) FROM history WHERE row LIKE '%\"NaN\"%'").fetchone()[0] > 0
    assert conn.execute("SELECT COUNT(*) FROM history WHERE row LIKE '%9e999%'").fetchone()[0] > 0
    for table, cols in jsontext.JSON_COLUMNS.items():
        for col in cols:
            bad = conn.execute(f"SELECT COUNT(*) FROM {table} t WHERE t.{col} IS NOT NULL AND NOT json_valid(t.{col})")
            assert bad.fetchone()[0] == 0, (table, col)
            # json_each over the whole column: one malformed value fails the whole query
            conn.execute(f"SELECT COUNT(*) FROM {table} t, json_each(t.{col}) j WHERE t.{col} IS NOT NULL").fetchone()
    # and no JSON-looking text anywhere else is invalid either (a column missing from JSON_COLUMNS)
    for table, col in _text_columns(conn):
        bad = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE (substr({col}, 1, 1) IN ('{{', '[')) "
                           f"AND NOT json_valid({col})").fetchone()[0]
        assert bad == 0, (table, col)
    inf = conn.execute("SELECT MAX(j.value) FROM history, json_each(history.row) j WHERE j.key = 'lr' AND j.type = 'real'").fetchone()[0]
    assert inf == math.inf
    assert conn.execute("SELECT MIN(j.value) FROM history, json_each(history.row) j WHERE j.key = 'loss' AND j.type = 'real'").fetchone()[0] == -math.inf
    nans = sum(1 for (row,) in conn.execute("SELECT row FROM history")
               if isinstance(v := jsontext.loads(row).get("loss"), float) and math.isnan(v))
    assert nans > 0
    assert conn.execute("SELECT COUNT(*) FROM history_long WHERE key = 'loss' AND value = 'NaN'").fetchone()[0] == nans


def test_foreign_keys_declared_and_consistent_views_readable(demo_mirror: Path) -> None:
    conn = sqlite3.connect(demo_mirror / "catalog.db")
    for table in ("history", "events", "files", "file_versions", "artifacts", "artifact_files", "artifact_usage",
                  "artifact_collections", "sweeps", "reports", "runs"):
        assert conn.execute(f"PRAGMA foreign_key_list({table})").fetchall(), table
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    plans = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM file_versions WHERE run_pk = 1"))
    assert "USING INDEX" in plans or "PRIMARY KEY" in plans
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    flat = conn.execute("SELECT entity, project, id, name, state, tags, config, summary FROM runs_flat").fetchall()
    assert len(flat) == runs
    for _e, _p, run_id, _name, _state, tags, config, summary in flat:
        assert isinstance(json.loads(tags), list)
        cfg = json.loads(config or "{}")
        # unwrapped: W&B's {"value": v, "desc": ...} becomes v
        assert all(not (isinstance(v, dict) and "desc" in v) for v in cfg.values()), run_id
        assert "_wandb" not in json.loads(summary or "{}")
    steps = conn.execute("SELECT COUNT(*) FROM history").fetchone()[0]
    assert conn.execute("SELECT COUNT(DISTINCT run_id || ':' || step) FROM history_long").fetchone()[0] == steps


def test_serve_answers_nan_and_infinity_as_upstream_sent(demo_mirror: Path, start_mirror_server,
                                                         make_wandb_api) -> None:
    server = start_mirror_server(demo_mirror, read_only=True)
    api = make_wandb_api(server.url)
    def nonfinite(row: dict) -> set[str]:
        return {"nan" if v != v else "inf" for v in row.values() if isinstance(v, float) and not math.isfinite(v)}

    with Store(demo_mirror, create=False, readonly=True) as s:  # history: Parquet segments and the tail
        found = [(r["entity"], r["project"], r["run_id"]) for r in s.catalog.query(
            "SELECT p.entity, p.name AS project, r.run_id, r.pk, r.last_step FROM runs r "
            "JOIN projects p ON p.pk = r.project_pk")
            if {"nan", "inf"} <= set().union(*(nonfinite(row) for _, row in s.history.rows(
                r["pk"], max_step=r["last_step"] + 1)), set())]
    assert found
    entity, project, run_id = found[0]
    run = api.run(f"{entity}/{project}/{run_id}")
    losses = [v for r in run.scan_history() for v in r.values()]  # HistoryPage: the rows as stored text
    assert any(isinstance(v, float) and math.isnan(v) for v in losses)
    assert math.inf in losses


def test_codec_round_trips_and_leaves_strings_alone() -> None:
    cases = [
        '{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1.5}',
        '{"s": "NaN is not Infinity", "k": ["NaN", -Infinity]}',
        '{"NaN": 1, "x": "say \\"NaN\\"", "e": 9.5e3}',
        '[]',
    ]
    for text in cases:
        stored = jsontext.to_catalog(text)
        seen: list[str] = []
        json.loads(stored, parse_constant=seen.append)  # strict JSON: no bare NaN/Infinity token
        assert seen == [], stored
        back = jsontext.from_catalog(stored)
        assert json.dumps(json.loads(back), allow_nan=True) == json.dumps(json.loads(text), allow_nan=True)
    # genuine strings "NaN" stay strings, and byte-identical text comes back when none is present
    assert jsontext.loads(jsontext.to_catalog('{"a": "NaN", "b": NaN}'))["a"] == "NaN"
    assert math.isnan(jsontext.loads(jsontext.to_catalog('{"a": "NaN", "b": NaN}'))["b"])
    text = '{"_step": 5, "loss": NaN, "val": {"x": Infinity}}'
    assert jsontext.from_catalog(jsontext.to_catalog(text)) == text


def test_existing_store_is_migrated(tmp_path: Path) -> None:
    """A catalog at schema 2 with NaN tokens in history and summaries comes up strict and complete."""
    import sqlite_utils

    path = tmp_path / "catalog.db"
    db = sqlite_utils.Database(path)
    saved = list(migrations.MIGRATIONS)
    migrations.MIGRATIONS[:] = saved[:2]
    try:
        migrations.apply(db)
    finally:
        migrations.MIGRATIONS[:] = saved
    db.execute("INSERT INTO entities (name) VALUES ('e')")
    db.execute("INSERT INTO projects (pk, entity, name) VALUES (1, 'e', 'p')")
    db.execute("INSERT INTO runs (pk, project_pk, name, summary, config) VALUES "
               "(1, 1, 'r', '{\"loss\": NaN, \"s\": \"NaN\"}', '{\"lr\": {\"value\": Infinity}}')")
    db.execute("INSERT INTO history (run_pk, step, row) VALUES (1, 0, '{\"_step\": 0, \"loss\": -Infinity}')")
    db.conn.commit()
    db.conn.close()
    store = Store(tmp_path, create=False)
    try:
        run = store.catalog.get_run(1, "r")
        assert run is not None
        assert math.isnan(run.summary_values()["loss"]) and run.summary_values()["s"] == "NaN"
        assert run.config_values()["lr"] == math.inf
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT json_extract(row, '$.loss') FROM history").fetchone()[0] == -math.inf
    assert conn.execute("SELECT json_extract(summary, '$.s'), json_extract(summary, '$.loss') FROM runs").fetchone() \
        == ("NaN", "NaN")
    assert conn.execute("PRAGMA foreign_key_list(history)").fetchall()
    assert conn.execute("SELECT COUNT(*) FROM history_long").fetchone()[0] == 1
