"""`wandb-mirror migrate-store --from CONFIG --to CONFIG` (docs/scale-out.md): a single-directory
store copied to a SQLite catalog with its objects on S3 (moto's server) and back, killed midway
and resumed, the target checked as `verify --deep` checks it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import ROOT, child_env, mirror_state, seed_store, state_diff

from wandb_mirror.store import Store
from wandb_mirror.store.migrate import NOT_COPIED, catalog_tables


def store_config(path: Path, body: str) -> Path:
    path.write_text(f"[store]\n{body}")
    return path


def migrate(src: Path, dst: Path, *, faults: str | None = None) -> subprocess.CompletedProcess[str]:
    """A real process (a kill must kill a process)."""
    env = child_env(**({"WANDB_MIRROR_FAULTS": faults} if faults else {}))
    return subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "migrate-store", "--from", str(src), "--to", str(dst)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The command in this process (faster than a process; the same code)."""
    from wandb_mirror.cli import main

    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("kill_at", ["migrate.copied#3", "catalog.commit#3"], ids=["objects", "catalog"])
def test_to_s3_and_back_killed_midway_resumes_and_verifies(tmp_path: Path, s3_env, kill_at: str, capsys) -> None:
    source = seed_store(tmp_path / "single")
    bucket = s3_env.new_bucket()
    src = store_config(tmp_path / "single.toml", 'path = "single"\n')
    dst = store_config(tmp_path / "apart.toml", f'catalog = "apart/catalog.db"\nobjects = "s3://{bucket}/wb"\n')

    killed = migrate(src, dst, faults=f"kill@{kill_at}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with sqlite3.connect(tmp_path / "apart" / "catalog.db") as db:  # a partial migration, marked as such
        assert db.execute("SELECT value FROM meta WHERE key = 'migration_state'").fetchone() == ("partial",)

    rc, out, err = run(capsys, "migrate-store", "--from", str(src), "--to", str(dst))
    assert rc == 0, err
    assert "migrate-store: ok" in out and "already there" in out
    rc, out, err = run(capsys, "verify", "--config", str(dst), "--deep")
    assert rc == 0, out + err
    keys = [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket, Prefix="wb/")["Contents"]]
    assert keys and all(k.startswith("wb/md5/") for k in keys)
    # the target is a copy, not the source: it has no identity of its own to collide with
    with sqlite3.connect(tmp_path / "apart" / "catalog.db") as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    with sqlite3.connect(source / "catalog.db") as db:
        assert meta["migrated_from"] == db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]
    assert meta["migration_state"] == "done" and "store_id" not in meta
    if kill_at.startswith("catalog"):
        return

    rc, out, err = run(capsys, "migrate-store", "--from", str(src), "--to", str(dst))  # again: nothing to copy
    assert rc == 0 and "0 objects copied" in out, out + err

    back = store_config(tmp_path / "back.toml", 'path = "back"\n')
    rc, out, err = run(capsys, "migrate-store", "--from", str(dst), "--to", str(back))
    assert rc == 0, err
    assert state_diff(mirror_state(source), mirror_state(tmp_path / "back")) == []
    assert run(capsys, "verify", "--store", str(tmp_path / "back"), "--deep")[0] == 0


def test_target_holding_anything_else_is_refused(tmp_path: Path) -> None:
    seed_store(tmp_path / "a")
    seed_store(tmp_path / "b")
    src = store_config(tmp_path / "a.toml", 'path = "a"\n')
    dst = store_config(tmp_path / "b.toml", 'path = "b"\n')
    p = migrate(src, dst)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "is not empty" in p.stderr and "Traceback" not in p.stderr
    same = migrate(src, src)
    assert same.returncode == 2 and "same catalog" in same.stderr
    missing = migrate(store_config(tmp_path / "none.toml", 'path = "none"\n'), tmp_path / "c.toml")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_every_table_of_the_catalog_is_copied(tmp_path: Path) -> None:
    """The table list comes from the migrations; nothing the schema has may be left out."""
    with Store(tmp_path / "s") as s:
        actual = {r["name"] for r in s.catalog.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert actual - {"_migrations", "sqlite_sequence", *NOT_COPIED} == set(catalog_tables())
