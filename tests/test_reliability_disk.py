"""Reliability 3: the store's disk fills up or turns read-only in the middle of a pass.

Simulated with the store's fault points (store/faults.py), in a real `wandb-mirror sync --once`
process against the real server:
- objects: from the N-th write on, `write()` / `fsync()` / the rename into place raise
  ENOSPC / EROFS, as a full or read-only filesystem does;
- catalog: from the N-th transaction on, SQLite itself refuses to grow the database
  (PRAGMA max_page_count: SQLITE_FULL, "database or disk is full") or to write at all
  (PRAGMA query_only: SQLITE_READONLY).
Each time: exit 1 with a clear message naming the store and the cause, no traceback, no temp file,
no object that fails its hash, no run recorded without its files and history; and the next pass,
with space back, completes and equals the upstream. The daemon keeps running through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    KEY,
    child_env,
    cli,
    mirror_state,
    seed_store,
    state_diff,
    store_problems,
    verify_deep,
    write_config,
)

from wandb_mirror.cli import main
from wandb_mirror.store import Store

FIGURES: dict[str, int] = {"disk_failures": 0}

CASES = [
    ("enospc", "objects.write", 6, "No space left on device"),
    ("enospc", "objects.fsync", 4, "No space left on device"),
    ("erofs", "objects.publish", 3, "Read-only file system"),
    ("dbfull", "catalog.begin", 30, "database or disk is full"),
    ("dbro", "catalog.begin", 30, "attempt to write a readonly database"),
    ("dbro", "catalog.begin", 1, "attempt to write a readonly database"),
]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    from wandb_mirror.server import start_server

    path = seed_store(tmp_path_factory.mktemp("disk") / "up")
    server = start_server(path, read_only=True)
    yield path, server
    server.stop()


def consistent_subset(up: Path, mirror: Path) -> list[str]:
    """Every run the mirror recorded as mirrored has all its files and history; every artifact
    version it recorded has all its entries: a stopped pass leaves whole units or nothing."""
    a, b = mirror_state(up), mirror_state(mirror)
    problems = []
    with Store(mirror, create=False) as s:
        done = {(r["project"], r["run_id"]) for r in s.catalog.query(
            "SELECT p.name AS project, r.run_id FROM runs r JOIN projects p ON p.pk = r.project_pk "
            "WHERE r.mirrored_at IS NOT NULL")}
    for project, data in b.items():
        for name, run in data["runs"].items():
            if (project, name) in done:
                want = a[project]["runs"][name]
                for k in ("files", "history", "summary", "config", "state"):
                    if run[k] != want[k]:
                        problems.append(f"{project}/{name}.{k} recorded but incomplete")
        for key, art in data["artifacts"].items():
            if art != a[project]["artifacts"].get(key):
                problems.append(f"{project}/{key} recorded but differs")
    return problems


@pytest.mark.parametrize("action,point,n,cause", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_disk_trouble_mid_pass_stops_cleanly_and_the_next_pass_resumes(
        upstream: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, point: str, n: int,
        cause: str) -> None:
    up, server = upstream
    cfg = write_config(tmp_path, server.url, sync="concurrency = 2\n")
    p = cli("sync", "--config", str(cfg), "--once", env=child_env(WANDB_MIRROR_FAULTS=f"{action}@{point}#{n}+"))
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    text = p.stdout + p.stderr
    assert f"store {tmp_path / 'mirror'} cannot be written: " in text and cause in text, text
    err_lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert 1 <= len(err_lines) <= 2, err_lines  # the engine's log line, and the CLI's if the pass could not be recorded
    mirror = tmp_path / "mirror"
    assert store_problems(mirror) == []
    assert verify_deep(mirror) == []
    assert consistent_subset(up, mirror) == []
    FIGURES["disk_failures"] += 1

    # space returns: the next pass completes and the mirror equals the upstream
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0
    assert state_diff(mirror_state(up), mirror_state(mirror)) == []
    assert verify_deep(mirror) == [] and store_problems(mirror) == []
    with Store(mirror, create=False) as s:
        first = s.catalog.query_one("SELECT status, errors FROM passes ORDER BY id LIMIT 1")
        if first is not None and s.catalog.scalar("SELECT COUNT(*) FROM passes") > 1:
            assert first["status"] == "failed" and cause in first["errors"] or "interrupted" in first["errors"]


def test_the_daemon_survives_a_full_disk_and_catches_up(upstream: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`run`: a cycle whose pass hits a full catalog (delivery included) is logged; the daemon goes on,
    and the next cycle with space back completes the mirror and delivers every event."""
    from wandb_mirror.daemon import Daemon
    from wandb_mirror.store import faults

    up, server = upstream
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "count.py").write_text(
        "from wandb_mirror.hooks import hookimpl\nSEEN = []\n\n@hookimpl\ndef run_created(run):\n    SEEN.append(run.run_id)\n")
    cfg = write_config(tmp_path, server.url, extra='[daemon]\nplugins_dir = "plugins"\n\n[plugins.count]\nenabled = true\n')
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    faults.configure("dbfull@catalog.begin#20+")
    try:
        d = Daemon(cfg, install_signals=False, watch=False, max_cycles=1)
        assert d.run() == 0
        assert d.last_outcome.status == "failed" and "database or disk is full" in (d.last_outcome.error or "")
    finally:
        faults.configure(None)
    d2 = Daemon(cfg, install_signals=False, watch=False, max_cycles=1)
    assert d2.run() == 0 and d2.last_outcome.status == "ok"
    assert state_diff(mirror_state(up), mirror_state(tmp_path / "mirror")) == []
    with Store(tmp_path / "mirror", create=False) as s:
        pending = s.catalog.scalar("SELECT MAX(seq) FROM changes") - s.catalog.scalar(
            "SELECT seq FROM plugin_cursors WHERE plugin = 'count'")
        assert pending == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_soak_disk_trouble_at_random_moments(upstream: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             seed: int) -> None:
    """`make soak`: a random failure kind at a random moment of the pass, once or from then on."""
    import random

    rng = random.Random(seed)
    action, point, _n, cause = rng.choice(CASES)
    n = rng.randint(1, 40 if point == "catalog.begin" else 12)
    up, server = upstream
    cfg = write_config(tmp_path, server.url, sync=f"concurrency = {rng.randint(1, 4)}\n")
    spec = f"{action}@{point}#{n}" + ("+" if rng.random() < 0.7 else "")
    p = cli("sync", "--config", str(cfg), "--once", env=child_env(WANDB_MIRROR_FAULTS=spec))
    assert "Traceback" not in p.stderr, (spec, p.stderr[-3000:])
    assert p.returncode in (0, 1), (spec, p.stderr)
    mirror = tmp_path / "mirror"
    assert store_problems(mirror) == [] and verify_deep(mirror) == []
    assert consistent_subset(up, mirror) == []
    FIGURES["disk_failures"] += 1
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0
    assert state_diff(mirror_state(up), mirror_state(mirror)) == []
