"""The run columns renamed to the SDK's names (`runs.name` -> `run_id`, `runs.user_name` ->
`user_display_name`): a store made before the rename migrates in place, keeps every run, and
serves the official client what it served before; the hook objects keep the old names one release."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from conftest import ENTITY, PROJECT, copy_store

from wandb_mirror.hooks.types import Run
from wandb_mirror.store import Store, migrations

RENAMED = {"name": "run_id", "user_name": "user_display_name"}  # runs: old column -> new


def old_store(seeded: Path, dst: Path) -> Path:
    """`seeded`'s content in a catalog at the schema before the rename: the migrations up to it
    run on an empty catalog, then every row is copied in under the old column names."""
    copy_store(seeded, dst)
    for side in ("", "-wal", "-shm"):
        Path(f"{dst / 'catalog.db'}{side}").unlink(missing_ok=True)
    names = [n for n, _ in migrations.MIGRATIONS]
    at = next(i for i, n in enumerate(names) if n.endswith("_run_id_columns"))
    conn = sqlite3.connect(dst / "catalog.db")
    saved = list(migrations.MIGRATIONS)
    migrations.MIGRATIONS[:] = saved[:at]
    try:
        migrations.apply(sqlite_utils.Database(conn))
    finally:
        migrations.MIGRATIONS[:] = saved
    src = sqlite3.connect(f"file:{seeded / 'catalog.db'}?mode=ro", uri=True)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' AND name != '_migrations'")]
    for table in tables:
        have = {r[1] for r in src.execute(f'PRAGMA table_info("{table}")')}
        cols = [(old, RENAMED.get(old, old) if table == "runs" else old)
                for (_, old, *_) in conn.execute(f'PRAGMA table_info("{table}")')]
        cols = [(old, new) for old, new in cols if new in have]
        rows = src.execute(f"SELECT {', '.join(new for _, new in cols)} FROM {table}").fetchall()
        conn.executemany(f"INSERT INTO {table} ({', '.join(old for old, _ in cols)}) "
                         f"VALUES ({', '.join('?' * len(cols))})", rows)
    src.close()
    conn.commit()
    conn.close()
    return dst


def runs_as_the_client_reads_them(api: Any) -> list[tuple[Any, ...]]:
    return [(r.id, r.name, r.state, r.user.username, dict(r.config), dict(r.summary._json_dict), r.tags,
             sorted((f.name, f.md5) for f in r.files()))
            for r in api.runs(f"{ENTITY}/{PROJECT}", per_page=100)]


def test_a_store_made_before_the_rename_migrates_in_place_and_serves_the_same_runs(
        seeded_store: Path, seeded_server: Any, tmp_path: Path, start_mirror_server: Any,
        make_wandb_api: Any) -> None:
    path = old_store(seeded_store, tmp_path / "old")
    conn = sqlite3.connect(path / "catalog.db")
    assert {"name", "user_name"} <= {r[1] for r in conn.execute("PRAGMA table_info(runs)")}  # the old schema
    conn.execute("UPDATE runs SET user_name = 'Ada Lovelace' WHERE name = 'r01'")  # display name != login
    conn.commit()
    before = conn.execute("SELECT pk, project_pk, name, display_name, username, user_name, state, config, summary, "
                          "tags, tombstoned_at FROM runs ORDER BY pk").fetchall()
    conn.close()
    with sqlite3.connect(seeded_store / "catalog.db") as src:
        history_rows = src.execute("SELECT COUNT(*) FROM history_long").fetchone()[0]
    want = runs_as_the_client_reads_them(make_wandb_api(seeded_server.url))
    assert len(before) >= 5 and len(want) >= 5

    # `serve` is read-only, yet it opens an old store: the schema is brought up to date first
    api = make_wandb_api(start_mirror_server(path).url)
    assert runs_as_the_client_reads_them(api) == want
    r01 = api.run(f"{ENTITY}/{PROJECT}/r01")
    assert (r01.id, r01.name, r01.user.username, r01.user.name) == ("r01", "baseline-a", "ada", "Ada Lovelace")

    conn = sqlite3.connect(path / "catalog.db")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert "name" not in cols and "user_name" not in cols and {"run_id", "user_display_name", "username"} <= cols
    assert conn.execute("SELECT pk, project_pk, run_id, display_name, username, user_display_name, state, config, "
                        "summary, tags, tombstoned_at FROM runs ORDER BY pk").fetchall() == before
    unique = [conn.execute(f"PRAGMA index_info('{name}')").fetchall() for _, name, is_unique, *_ in
              conn.execute("PRAGMA index_list(runs)") if is_unique]
    assert [c[2] for c in unique[0]] == ["project_pk", "run_id"]
    assert conn.execute("SELECT id, name FROM runs_flat WHERE id = 'r01'").fetchone() == ("r01", "baseline-a")
    assert conn.execute("SELECT COUNT(*) FROM history_long").fetchone()[0] == history_rows
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(migrations.MIGRATIONS)
    conn.close()
    with Store(path, create=False) as s:  # a writer finds nothing left to do
        assert migrations.pending(s.catalog.conn) == 0 and s.catalog.get_run(before[0][1], "r01") is not None


def test_the_old_hook_names_still_work_with_a_deprecation_warning(seeded_store: Path) -> None:
    from wandb_mirror.hooks.store_view import StoreView

    with Store(seeded_store, create=False, readonly=True) as s:
        view = StoreView(s, "legacy")
        run = view.run(ENTITY, PROJECT, "r01")
        assert run is not None and run.run_id == "r01" and run.path == f"{ENTITY}/{PROJECT}/r01"
        with pytest.warns(DeprecationWarning, match="run_id"):
            assert run.name == "r01"
        with pytest.warns(DeprecationWarning, match="user_display_name"):
            assert run.user_name == run.user_display_name
        with pytest.warns(DeprecationWarning, match="run_id"):
            legacy = view.run(ENTITY, PROJECT, name="r01")
        assert legacy == run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Run(run_id="x").run_id == "x"  # the new names warn about nothing
