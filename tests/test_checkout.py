"""`wandb-mirror checkout`: a run's and an artifact's files out of the store, byte-identical to what the
official client downloads from `serve`; deleted items included; unsafe names mapped; damage refused."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import ENGINES, ENTITY, PROJECT, copy_store

from wandb_mirror.cli import main


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def api(seeded_server: Any, make_wandb_api: Any) -> Any:
    return make_wandb_api(seeded_server.url)


@pytest.fixture(params=ENGINES)
def store_args(request: pytest.FixtureRequest, seeded_store: Path, tmp_path: Path) -> list[str]:
    """The seeded store as checkout is told it: --store DIR, or --config naming the same data in
    a PostgreSQL catalog (and its own objects directory)."""
    if request.param == "sqlite":
        return ["--store", str(seeded_store)]
    store = request.getfixturevalue("seeded_pg_server")._store
    cfg = tmp_path / "pg.toml"
    cfg.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n\n[store]\npath = "{store.path}"\n'
                   f'catalog = "{store.catalog_url}"\n')
    return ["--config", str(cfg)]


def test_checkout_run_is_byte_identical_to_the_official_download(store_args: list[str], api: Any, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    dest = tmp_path / "r01"
    assert main(["checkout", *store_args, f"{ENTITY}/{PROJECT}/r01", str(dest)]) == 0
    assert "checked out 5 files" in capsys.readouterr().out
    run = api.run(f"{ENTITY}/{PROJECT}/r01")
    official = tmp_path / "official"
    for f in run.files():
        f.download(root=str(official), replace=True).close()
    got = tree(dest)
    for name, data in tree(official).items():
        assert got[name] == data, name
    assert (dest / "model.bin").stat().st_nlink >= 2  # a hard link to the store's object
    history = pq.read_table(dest / "history.parquet").to_pylist()
    expected = list(run.scan_history())
    assert [r["_step"] for r in history] == [r["_step"] for r in expected]
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in expected])
    assert pq.read_table(dest / "events.parquet").num_rows == 30
    import json

    doc = json.loads((dest / "run.json").read_text())
    assert doc["config"]["lr"] == 0.1 and doc["summary"]["loss"] == 0.30 and doc["display_name"] == "baseline-a"


def test_checkout_artifact_by_alias_and_version(store_args: list[str], api: Any, tmp_path: Path) -> None:
    dest = tmp_path / "mnist"
    assert main(["checkout", *store_args, "--copy", f"{ENTITY}/{PROJECT}/mnist:best", str(dest)]) == 0
    official = Path(api.artifact(f"{ENTITY}/{PROJECT}/mnist:best").download(root=str(tmp_path / "official")))
    assert tree(dest) == tree(official) and set(tree(dest)) == {"a.txt", "sub/b.txt", "c.bin"}
    assert all(p.stat().st_nlink == 1 for p in dest.rglob("*") if p.is_file())  # --copy
    v0 = tmp_path / "v0"
    assert main(["checkout", *store_args, f"{ENTITY}/{PROJECT}/mnist:v0", str(v0)]) == 0
    assert tree(v0) == {"a.txt": b"hello", "sub/b.txt": b"bee"}


def test_checkout_includes_deleted_items_and_maps_unsafe_names(seeded_store: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    store = copy_store(seeded_store, tmp_path / "store")
    db = sqlite3.connect(store / "catalog.db")
    with db:
        pk, md5, size = db.execute("SELECT f.run_pk, f.md5, f.size FROM files f JOIN runs r ON r.pk = f.run_pk "
                                   "WHERE r.run_id = 'r01' AND f.name = 'config.yaml'").fetchone()
        db.execute("UPDATE files SET tombstoned_at = '2025-01-01T00:00:00' WHERE run_pk = ? AND name = 'output.log'",
                   [pk])
        db.execute("UPDATE runs SET tombstoned_at = '2025-01-01T00:00:00' WHERE pk = ?", [pk])
        # names a store may hold (an older store, or a catalog edited by hand), the official client's
        # refused ones included: checkout still writes nothing outside DEST
        for name in ("../../escape.txt", "%2E%2E/%2E%2E/escape.txt", "/abs/olute.txt", "ctl\x01name.txt", "run.json",
                     "files/run.json", "a\\b.txt", "a//b.txt", "x" * 300, "d", "d/x", "e/x", "e"):
            db.execute("INSERT INTO files (run_pk, name, size, md5) VALUES (?, ?, ?, ?)", [pk, name, size, md5])
    db.close()
    dest = tmp_path / "out"
    assert main(["checkout", "--store", str(store), f"{ENTITY}/{PROJECT}/r01", str(dest)]) == 0
    out = capsys.readouterr().out
    files = tree(dest)
    assert "output.log" in files  # deleted upstream, kept, given back
    # one to one: percent-encoding, so a name that looks like another's mapping stays distinct
    assert files["%2E%2E/%2E%2E/escape.txt"] == files["config.yaml"] == files["%252E%252E/%252E%252E/escape.txt"]
    assert "%2Fabs/olute.txt" in files and "ctl%01name.txt" in files and "a%5Cb.txt" in files
    assert "a%2F%2Fb.txt" in files
    assert "files/run.json" in files and ("files%2Frun.json" in files or "files%2Frun.json~1" in files)
    # a file `d` beside a file `d/x`: whichever comes second goes flat (e.g. `d%2Fx`), both are there
    for d in ("d", "e"):
        assert {d, f"{d}%2Fx"} <= set(files) or {f"{d}/x", f"{d}~1"} <= set(files), sorted(files)
    assert any(len(n) < 300 and n.startswith("x" * 100) for n in files)
    for line in ("mapped '../../escape.txt' -> '%2E%2E/%2E%2E/escape.txt'", "mapped 'run.json' -> 'files",
                 "mapped 'a\\\\b.txt' -> 'a%5Cb.txt'", "mapped 'ctl\\x01name.txt' -> 'ctl%01name.txt'"):
        assert line in out, (line, out)
    assert not (tmp_path / "escape.txt").exists()
    for p in dest.rglob("*"):
        assert p.resolve().is_relative_to(dest.resolve())


def test_checkout_refuses_damage_and_bad_input(seeded_store: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    store = copy_store(seeded_store, tmp_path / "store")
    md5 = hashlib.md5(b"hello").hexdigest()
    obj = next(p for p in (store / "objects").rglob(md5[2:] + "*"))
    obj.write_bytes(b"jello")
    for extra in ([], ["--copy"]):
        dest = tmp_path / f"bad{len(extra)}"
        assert main(["checkout", "--store", str(store), *extra, f"{ENTITY}/{PROJECT}/mnist:v0", str(dest)]) == 1
        assert "damaged" in capsys.readouterr().err
        assert "a.txt" not in {p.name for p in dest.rglob("*")}
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    for args, message in [
        ([f"{ENTITY}/{PROJECT}/r01", str(full)], "not an empty directory"),
        ([f"{ENTITY}/{PROJECT}/nope", str(tmp_path / "x")], "no run"),
        ([f"{ENTITY}/{PROJECT}/mnist:v9", str(tmp_path / "x")], "no artifact version"),
        (["just-a-name", str(tmp_path / "x")], "PATH must be"),
    ]:
        assert main(["checkout", "--store", str(seeded_store), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert (full / "mine.txt").read_text() == "keep" and os.listdir(full) == ["mine.txt"]
