"""Stores, output and demo directories that cannot be used: one line, exit 2 for bad input and 1 for
a disk that fails the work, never a traceback, never a half-made store; read-only commands work on
a read-only disk; a plugin whose disk is full backs off and is never disabled for it.

Full and read-only disks are real: small or read-only tmpfs mounts (the tests run as root; skipped
where mounting is not allowed). A non-root user's "permission denied" is simulated honestly with an
immutable directory (chattr +i): the kernel refuses even root, as it refuses a user without rights."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import cli, seed_store, write_config

from wandb_mirror.store import Store


def _or_skip(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{what} is not allowed here: {r.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _or_skip(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], "mounting a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _or_skip(["chattr", "+i", str(path)], "chattr +i")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.fixture
def fixture_file(tmp_path: Path) -> str:
    """A small fixture document on disk (seeding --demo would spend seconds generating data first)."""
    import json

    from reliability_support import small_doc

    p = tmp_path / "fixture.json"
    p.write_text(json.dumps(small_doc()))
    return str(p)


def each_one_line(cases: list[tuple[tuple[str, ...], int, tuple[str, ...]]]) -> None:
    """Run independent CLI cases side by side (each is a process start), then check each."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda c: cli(*c[0]), cases))
    for (_, code, words), p in zip(cases, done):
        one_line(p, code, *words)


def one_line(p: subprocess.CompletedProcess, code: int, *words: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code and len(lines) == 1 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_full_or_read_only_disk_when_a_store_is_created(tmp_path: Path, fixture_file: str) -> None:
    with tmpfs(tmp_path / "full", "size=12k") as full:
        one_line(cli("seed", "--store", str(full / "store"), fixture_file), 1, "cannot be created", "half-made")
        assert list(full.iterdir()) == []  # nothing half-made
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        one_line(cli("seed", "--store", str(ro / "store"), fixture_file), 1, "Read-only file system")
        assert list(ro.iterdir()) == []


def test_read_only_commands_open_nothing_for_writing(tmp_path: Path, start_mirror_server: Any) -> None:
    with tmpfs(tmp_path / "disk", "size=64m") as disk:
        store = seed_store(disk / "store")
        with Store(store) as s:  # leave no WAL behind: the mount turns read-only next
            s.catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _or_skip(["mount", "-o", "remount,ro", str(disk)], "remounting read-only")
        assert cli("verify", "--store", str(store), "--deep").returncode == 0
        assert cli("status", "--store", str(store), "--json").returncode == 0
        p = cli("export", "--store", str(store), "--format", "csv", "--out", str(tmp_path / "out"))
        assert p.returncode == 0, p.stderr
        server = start_mirror_server(store)  # serve is read-only by default
        assert server.url


def test_half_made_or_foreign_catalogs_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "half"
    empty.mkdir()
    (empty / "catalog.db").write_bytes(b"")  # what an interrupted creation used to leave
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "catalog.db").write_text("this is not SQLite\n" * 10)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    import sqlite3

    sqlite3.connect(foreign / "catalog.db").execute("CREATE TABLE x (a)").connection.commit()
    export = ("export", "--format", "csv", "--out", str(tmp_path / "o"))
    not_ours = ("not a wandb-mirror catalog",)
    each_one_line([((args[0], "--store", str(store), *args[1:]), 2, not_ours) for store, commands in (
        (empty, [("status",), ("gc",)]), (garbage, [("verify", "--deep"), export]),
        (foreign, [("serve", "--port", "0"), ("gc",)])) for args in commands]
        + [(("status", "--store", str(garbage / "catalog.db")), 2, ("not a directory",))])
    assert (empty / "catalog.db").read_bytes() == b""  # gc (a writer) did not turn it into a store


def test_paths_that_cannot_be_created(tmp_path: Path, start_mirror_server: Any, fixture_file: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    store = seed_store(tmp_path / "store")
    up = seed_store(tmp_path / "up")
    server = start_mirror_server(up)
    # a directory this user may not write to (the README's /var/lib/wandb-mirror for a non-root user)
    with immutable(tmp_path / "locked") as locked:
        cfg = write_config(tmp_path, server.url, store=str(locked / "mirror"))
        each_one_line(
            [(("seed", "--store", bad, fixture_file), 2, ("cannot be",))
             for bad in ("/proc/wandb-mirror-test", "/sys/wandb-mirror-test", str(afile / "store"))]
            + [(("export", "--store", str(store), "--format", "csv", "--out", out), 2, ("--out",))
               for out in (str(afile), "/proc/wandb-mirror-out")]
            + [(("demo", "--dir", "/proc/wandb-mirror-demo"), 2, ("--dir",)),
               (("seed", "--store", str(locked / "store"), fixture_file), 2, ("cannot be created",)),
               (("export", "--store", str(store), "--format", "csv", "--out", str(locked)), 2, ("not writable",)),
               (("demo", "--dir", str(locked / "demo")), 2, ("--dir",)),
               (("check-config", str(cfg)), 2, ("store.path", "not writable")),
               (("sync", "--config", str(cfg), "--once"), 2, ("cannot be created",))])
        assert list(locked.iterdir()) == []


def test_seed_into_an_existing_store_refuses_cleanly(tmp_path: Path, fixture_file: str) -> None:
    store = tmp_path / "store"
    assert cli("seed", "--store", str(store), fixture_file).returncode == 0
    before = sorted(p.name for p in (store / "objects").rglob("*"))
    one_line(cli("seed", "--store", str(store), fixture_file), 2, "already holds project")
    assert sorted(p.name for p in (store / "objects").rglob("*")) == before  # no orphan objects
    assert cli("verify", "--store", str(store), "--deep").returncode == 0


def test_a_full_disk_never_disables_a_plugin(tmp_path: Path, start_mirror_server: Any, monkeypatch) -> None:
    from test_plugins_support import ENTITY, PROJECT
    from test_plugins_support import seed_store as plugin_store

    from wandb_mirror.daemon import Daemon

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    server = start_mirror_server(plugin_store(tmp_path / "up"))
    with tmpfs(tmp_path / "out", "size=256k") as out:
        filler = out / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # fill the disk the export plugin writes to
                f.write(b"\0" * 4096)
        cfg = tmp_path / "mirror.toml"
        cfg.write_text(f'[source]\nbase_url = "{server.url}"\nprojects = ["{ENTITY}/{PROJECT}"]\nreports = false\n'
                       f'[store]\npath = "{tmp_path / "mirror"}"\n[daemon]\npoll_interval = "1s"\n'
                       f'retry_backoff = "0s"\nmax_failures = 2\n'
                       f'[plugins.export]\nenabled = true\nout = "{out}"\nformats = ["csv"]\n')
        for _ in range(4):  # twice max_failures: a bug would have disabled it by now
            assert Daemon(cfg, install_signals=False, max_cycles=1, watch=False).run() == 0
        with Store(tmp_path / "mirror", create=False, readonly=True) as s:
            row = s.catalog.query_one("SELECT failures, disabled_at, last_error FROM plugin_cursors "
                                      "WHERE plugin = 'export'")
        assert row["disabled_at"] is None and row["failures"] == 0
        assert "No space left on device" in row["last_error"] and "not the plugin" in row["last_error"]
        tables = list(out.rglob("runs.csv"))  # the export layout: out/csv/runs/entity=E/project=P/runs.csv
        assert all(t.stat().st_size == 0 for t in tables)
        filler.unlink()  # space is back: the next cycle catches up
        assert Daemon(cfg, install_signals=False, max_cycles=1, watch=False).run() == 0
        tables = list(out.rglob("runs.csv"))
        assert tables and all(t.stat().st_size > 0 for t in tables)
