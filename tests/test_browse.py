"""`wandb-mirror browse`: datasette on the catalog, every table described."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from wandb_mirror.cli import main
from wandb_mirror.commands.browse import TABLES


def test_every_table_and_view_is_described(seeded_store: Path) -> None:
    conn = sqlite3.connect(seeded_store / "catalog.db")
    names = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")}
    assert names - set(TABLES) == set()


def test_browse_serves_the_catalog_with_descriptions(seeded_store: Path) -> None:
    pytest.importorskip("datasette")
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "browse", "--store", str(seeded_store),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            seen.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
        assert url, "".join(seen)
        with urllib.request.urlopen(f"{url}/catalog/runs_flat.json?_shape=array", timeout=30) as r:
            rows = json.loads(r.read())
        runs = sqlite3.connect(seeded_store / "catalog.db").execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        assert len(rows) == runs and {"entity", "project", "id", "name", "config"} <= set(rows[0])
        with urllib.request.urlopen(f"{url}/catalog/history", timeout=30) as r:
            page = r.read().decode()
        assert "unsampled" in page  # the table's description
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_browse_refuses_a_directory_that_is_not_a_store(tmp_path: Path, capsys) -> None:
    assert main(["browse", "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a store" in err[0]
    assert os.listdir(tmp_path) == []
