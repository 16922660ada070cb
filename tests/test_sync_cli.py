"""`wandb-mirror sync` from the command line: one pass, the store lock, API-key errors, and a pass
killed with SIGKILL half-way that the next pass completes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY, copy_store

from wandb_mirror.cli import main
from wandb_mirror.errors import UsageError
from wandb_mirror.store import Store


def write_config(tmp_path: Path, url: str, store: str = "mirror", extra: str = "") -> Path:
    p = tmp_path / "mirror.toml"
    p.write_text(f'[source]\nbase_url = "{url}"\n\n[store]\npath = "{store}"\n\n'
                 f'[sync]\nretry_wait_min = "10ms"\nretry_wait_max = "50ms"\nmax_retries = 3\n{extra}')
    return p


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return monkeypatch


def test_sync_once_then_a_second_writer_is_refused(seeded_server: Any, tmp_path: Path, env, capsys) -> None:
    env.setenv("WANDB_API_KEY", "k" * 40)
    cfg = write_config(tmp_path, seeded_server.url, extra='progress = "never"\n')
    assert main(["sync", "--config", str(cfg), "--once"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pass 1 ok in ") and "8 new" in out
    store = Store(tmp_path / "mirror")
    try:
        with store.lock("another pass"):
            assert main(["sync", "--config", str(cfg), "--once"]) == 1
    finally:
        store.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "is in use by another wandb-mirror process" in err[0] and "only one writer" in err[0]


def test_missing_api_key_is_one_clear_line(seeded_server: Any, tmp_path: Path, env, capsys) -> None:
    cfg = write_config(tmp_path, seeded_server.url)
    assert main(["sync", "--config", str(cfg), "--once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    host = seeded_server.url.split("//")[1]
    assert len(err) == 1 and err[0].startswith(f"wandb-mirror sync: error: no API key for {host}: set WANDB_API_KEY")


def test_rejected_api_key_is_one_clear_line(seeded_store: Path, start_mirror_server, tmp_path: Path, env,
                                            capsys) -> None:
    server = start_mirror_server(seeded_store, read_only=True, api_key="s" * 40)
    env.setenv("WANDB_API_KEY", "w" * 40)
    cfg = write_config(tmp_path, server.url)
    assert main(["sync", "--config", str(cfg), "--once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    host = server.url.split("//")[1]
    assert err == [f"wandb-mirror sync: error: API key rejected by {host} (HTTP 401)"]
    assert "w" * 40 not in " ".join(err)
    # the right key from ~/.netrc (what `wandb login` writes) works
    (tmp_path / "netrc").write_text(f"machine {host}\n  login user\n  password {'s' * 40}\n")
    env.delenv("WANDB_API_KEY")
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0


def test_killed_pass_is_completed_by_the_next(seeded_store: Path, start_mirror_server, tmp_path: Path, env) -> None:
    """SIGKILL in the middle of a first pass; the next pass completes, and the store matches upstream."""
    up = copy_store(seeded_store, tmp_path / "up")
    server = start_mirror_server(up, read_only=True, latency_ms=25)
    cfg = write_config(tmp_path, server.url, extra="concurrency = 2\n")
    child_env = {**os.environ, "WANDB_API_KEY": "k" * 40}
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "sync", "--config", str(cfg), "--once", "-q"],
                            env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    # wait until the pass has written some history, then kill it without warning
    mirror = tmp_path / "mirror" / "catalog.db"
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if mirror.exists():
            # read-only: a writable open would race the child's own schema migration on a new store
            try:
                s = Store(tmp_path / "mirror", create=False, readonly=True)
            except UsageError:  # the child has created the file but not its tables yet
                continue
            try:
                if s.history.count() > 0:
                    break
            except sqlite3.Error:  # the child is still creating the catalog
                pass
            finally:
                s.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    s = Store(tmp_path / "mirror")
    try:
        first = s.catalog.query_one("SELECT status FROM passes ORDER BY id LIMIT 1")
        assert first["status"] == "running"  # the killed pass never finished
        half = s.catalog.scalar("SELECT COUNT(*) FROM runs WHERE mirrored_at IS NOT NULL")
    finally:
        s.close()
    assert half < 8

    env.setenv("WANDB_API_KEY", "k" * 40)
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0
    a, b = Store(up), Store(tmp_path / "mirror")
    try:
        sql = ("SELECT r.run_id, r.state, r.summary, r.last_step, ((SELECT COUNT(*) FROM history h WHERE h.run_pk = r.pk) + "
               "(SELECT COALESCE(SUM(s.rows), 0) FROM history_segments s WHERE s.run_pk = r.pk)) AS rows, "
               "(SELECT group_concat(name || ':' || md5, ',') FROM (SELECT name, md5 FROM files f WHERE f.run_pk = r.pk ORDER BY name)) AS files "
               "FROM runs r JOIN projects p ON p.pk = r.project_pk WHERE p.entity = ? ORDER BY p.name, r.run_id")
        assert a.catalog.query(sql, [ENTITY]) == b.catalog.query(sql, [ENTITY])
        killed = b.catalog.query_one("SELECT status, errors FROM passes ORDER BY id LIMIT 1")
        assert killed["status"] == "failed" and "interrupted" in killed["errors"]
        created = b.catalog.query("SELECT run, COUNT(*) AS n FROM changes WHERE kind = 'run_created' GROUP BY run")
        assert len(created) == 8 and all(c["n"] == 1 for c in created)  # each run announced exactly once
        for md5, _ in b.catalog.referenced_objects():
            assert b.objects.has(md5)
            assert b.objects.hash_object(md5).md5 == md5
    finally:
        a.close()
        b.close()


def test_sync_loop_runs_passes_until_terminated(seeded_server: Any, tmp_path: Path, env) -> None:
    cfg = write_config(tmp_path, seeded_server.url, extra='poll_interval = "50ms"\nprogress = "never"\n')
    child_env = {**os.environ, "WANDB_API_KEY": "k" * 40}
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "sync", "--config", str(cfg)],
                            env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (tmp_path / "mirror" / "catalog.db").exists():
                s = Store(tmp_path / "mirror")
                try:
                    if (s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status = 'ok'") or 0) >= 3:
                        break
                finally:
                    s.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out.count(" ok in ") >= 3 and "interrupted" in err, err
    s = Store(tmp_path / "mirror")
    try:
        with s.lock("after"):  # released
            pass
        assert s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status NOT IN ('ok', 'failed')") in (0, 1)
    finally:
        s.close()
