"""`wandb-mirror run` as a real process: SIGTERM during a pass, SIGHUP and SIGTERM while idle."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port
from test_plugins_support import seed_store

from wandb_mirror.cli import main

ROOT = Path(__file__).resolve().parents[1]


def big_doc() -> dict:
    runs = [{"id": f"r{i:03d}", "state": "finished", "history": {"steps": 200, "metrics": ["loss"], "seed": i},
             "files": [{"name": f"f{j}.bin", "size": 20_000, "seed": i * 10 + j} for j in range(3)]}
            for i in range(40)]
    return {"viewer": {"username": "ada", "entity": "acme"},
            "projects": [{"name": "big", "created_at": "2024-01-01T00:00:00", "runs": runs}]}


@pytest.fixture(scope="module")
def upstream_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("sig") / "up", big_doc())


@pytest.fixture(scope="module")
def upstream(upstream_path: Path):
    """A slow server (25 ms per request), so a pass lasts long enough to be interrupted."""
    from wandb_mirror.server import start_server

    handle = start_server(upstream_path, read_only=True, latency_ms=25)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def fast_upstream(upstream_path: Path):
    from wandb_mirror.server import start_server

    handle = start_server(upstream_path, read_only=True)
    yield handle
    handle.stop()


def start(cfg: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, WANDB_API_KEY="k" * 40, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "run", "--config", str(cfg), *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def catalog_query(store: Path, sql: str):
    try:
        con = sqlite3.connect(f"file:{store / 'catalog.db'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def write_cfg(tmp_path: Path, url: str) -> tuple[Path, Path]:
    store = tmp_path / "mirror"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[source]\nbase_url = "{url}"\nprojects = ["acme/big"]\n[store]\npath = "{store}"\n'
                   '[sync]\nconcurrency = 2\n[daemon]\npoll_interval = "1h"\n')
    return cfg, store


def test_sigterm_during_a_pass_stops_within_seconds_and_leaves_a_store_that_verifies(upstream, fast_upstream,
                                                                                     tmp_path: Path, capsys) -> None:
    cfg, store = write_cfg(tmp_path, upstream.url)
    p = start(cfg)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            rows = catalog_query(store, "SELECT (SELECT COUNT(*) FROM passes WHERE status = 'running'), "
                                        "(SELECT COUNT(*) FROM files)")
            if rows and rows[0][0] == 1 and rows[0][1] >= 6:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the pass never got going")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=15)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert took < 5, f"took {took:.1f}s to stop"
    assert "received SIGTERM" in err and "daemon stopped" in err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if " ERROR " in ln]
    assert errors == [] and "stopped by the daemon's shutdown" in err, err  # asked to stop: not an error
    # the pass stopped part-way and says so; nothing half-written remains
    files = catalog_query(store, "SELECT COUNT(*) FROM files")[0][0]
    assert 0 < files < 120
    assert catalog_query(store, "SELECT status FROM passes ORDER BY id DESC LIMIT 1")[0][0] == "stopped"
    assert list((store / "objects" / "tmp").iterdir()) == []
    assert main(["verify", "--store", str(store)]) == 0
    capsys.readouterr()
    # a restart finishes the job (same upstream store, served without the artificial latency)
    cfg, _ = write_cfg(tmp_path, fast_upstream.url)
    p2 = start(cfg, "--once")
    out, err = p2.communicate(timeout=60)
    assert p2.returncode == 0, err
    assert catalog_query(store, "SELECT COUNT(*) FROM files")[0][0] == 120
    assert catalog_query(store, "SELECT COUNT(*) FROM runs")[0][0] == 40
    assert main(["verify", "--store", str(store)]) == 0


def test_sighup_reloads_and_sigterm_stops_when_idle(fast_upstream, tmp_path: Path) -> None:
    cfg, store = write_cfg(tmp_path, fast_upstream.url)
    p = start(cfg, "--no-watch")
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:  # wait for the first pass to finish: then it sleeps for an hour
            rows = catalog_query(store, "SELECT status FROM passes")
            if rows and rows[-1][0] != "running":
                break
            time.sleep(0.1)
        time.sleep(0.2)
        p.send_signal(signal.SIGHUP)
        time.sleep(0.4)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=15)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert took < 3
    assert "received SIGHUP" in err and "configuration reloaded" in err
    assert catalog_query(store, "SELECT status FROM passes")[-1][0] == "ok"


def test_metrics_count_requests_retries_and_429s_of_real_passes(tmp_path: Path, monkeypatch) -> None:
    from wandb_mirror.daemon import Daemon
    from wandb_mirror.server import start_server

    up = seed_store(tmp_path / "up")
    handle = start_server(up, read_only=True, fault_rate=0.1, fault_seed=3)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[source]\nbase_url = "{handle.url}"\n[store]\npath = "{tmp_path / "m"}"\n'
                   f'[sync]\nretry_wait_min = "10ms"\nretry_wait_max = "20ms"\n[daemon]\nmetrics_port = {free_port()}\n')
    try:
        d = Daemon(cfg, install_signals=False, watch=False, max_cycles=1)
        assert d.run() == 0
    finally:
        handle.stop()
    log = handle.request_log()
    faults = [e for e in log if e["status"] in (429, 500)]
    limited = [e for e in faults if e["status"] == 429]
    m = d.metrics
    assert m.get("http_requests_total") >= len(log) - len(faults)
    assert m.get("http_retries_total") >= len(faults) > 0
    assert m.get("rate_limited_total") == len(limited)
    assert m.get("sync_passes_total", result=d.last_outcome.status) == 1
