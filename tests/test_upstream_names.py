"""Every name the official client reads, the mirror keeps exactly (issue 11, item 7).

An upstream (`serve` over a store seeded from a fixture) holds a run called `..`, run files named
with a backslash, a control character and unicode, `a//b` and `dir/./x` (names the official client
reads and downloads), and an artifact whose entries are named likewise. The mirror keeps every one
byte for byte, a reconcile over them exits 0, and the official client reads the same names and
bytes from `serve` over the mirror as from the upstream. `../escape.txt`, which the official
client itself refuses, stays refused and is reported. The commands that write names to disk
(checkout, export, `dataset`, best_run's materialize) write only inside their target and print
each name they mapped.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from reliability_support import KEY, seed_store, snapshot, write_config

from wandb_mirror.cli import main
from wandb_mirror.fsnames import hive_part, safe_relpath
from wandb_mirror.name_rules import file_path_problem, run_id_problem
from wandb_mirror.store import Store

E, P = "acme", "names"
KEPT_FILES = ["a\\b.txt", "ctl\x01é 文件.txt", "a//b.txt", "dir/./x.txt", "100%.txt"]
KEPT_ENTRIES = ["a\\b.txt", "ctl\x07ü.txt", "sub/ok.txt"]
REFUSED = "../escape.txt"


def names_doc() -> dict[str, Any]:
    files = [{"name": n, "text": f"file {i}: {n!r}\n"} for i, n in enumerate(KEPT_FILES)]
    return {
        "viewer": {"username": "ada", "entity": E},
        "projects": [{
            "name": P, "created_at": "2024-01-01T00:00:00",
            "runs": [
                {"id": "..", "state": "finished", "files": files, "history": {"steps": 5, "metrics": ["loss"], "seed": 1},
                 "config": {"lr": 0.1}},
                {"id": "plain", "state": "finished", "files": [{"name": "ok.txt", "text": "ok\n"}]},
                {"id": "sp ace%", "state": "finished", "history": {"steps": 3, "metrics": ["loss"], "seed": 2}},
                {"id": "ckpt:1", "state": "finished", "files": [{"name": "w.txt", "text": "w\n"}]},
            ],
            "artifacts": [{"name": "ds", "type": "dataset", "versions": [
                {"files": [{"path": n, "text": f"entry {n!r}"} for n in KEPT_ENTRIES], "created_by": ".."}]}],
        }],
    }


def test_name_rules_follow_the_official_client() -> None:
    from wandb.sdk.lib.paths import validate_relpath

    for name in [*KEPT_FILES, *KEPT_ENTRIES, REFUSED, "/etc/passwd", "C:/x", "c:x", "a\\..\\b", "\\\\srv\\share\\x",
                 "..", ".", "", "./", "a/..", "a/...", "...", "//x", "x/", "ünï/文件"]:
        try:
            validate_relpath(name)
            official = True
        except ValueError:
            official = False
        assert (file_path_problem(name) is None) == official, name
    assert file_path_problem("nul\x00.txt") and file_path_problem("l" * 1025) and not file_path_problem("l" * 1024)
    for run_id in ("..", ".", "a\\b", "ctl\x01", "r" * 256):
        assert run_id_problem(run_id) is None, run_id
    for run_id in ("", "a/b", "nul\x00", "r" * 257):
        assert run_id_problem(run_id), run_id


def test_fsnames_map_one_to_one_and_stay_inside(tmp_path: Path) -> None:
    from urllib.parse import unquote

    names = [*KEPT_FILES, REFUSED, "..", ".", "/abs", "a/", "%2E%2E", "a%5Cb.txt", "x" * 300, "d/" * 30 + "f"]
    mapped = [safe_relpath(n) for n in names]
    assert len(set(mapped)) == len(names)
    for i, (name, rel) in enumerate(zip(names, mapped)):
        if len(name) < 200:
            assert unquote(rel) == name
        root = tmp_path / str(i)  # (a file `..` and a file `../x` cannot both exist: a tree's limit)
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(name)
        assert out.resolve().is_relative_to(root.resolve()), rel
    assert safe_relpath("a/b.txt") == "a/b.txt" and hive_part("run", "..") == "run=.."
    assert hive_part("run", "a/b c") == "run=a%2Fb%20c" and len(hive_part("run", "é" * 256).encode()) < 255


@pytest.fixture
def world(tmp_path: Path, start_mirror_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    up = seed_store(tmp_path / "up", names_doc())
    server = start_mirror_server(up, api_key=KEY)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, server.url)
    return {"tmp": tmp_path, "up": up, "server": server, "cfg": cfg, "mirror": tmp_path / "mirror"}


def _files(store_path: Path, run_id: str) -> dict[str, bytes]:
    with Store(store_path, create=False, readonly=True) as s:
        rows = s.catalog.query("SELECT f.name, f.md5 FROM files f JOIN runs r ON r.pk = f.run_pk WHERE r.run_id = ?",
                               [run_id])
        return {r["name"]: s.objects.read_bytes(r["md5"]) for r in rows}


def _official_view(api: Any, root: Path) -> dict[str, Any]:
    """What the official client reads: run `..`, its files' names and bytes, the artifact's entries."""
    run = api.run(f"{E}/{P}/..")
    files = {}
    for i, f in enumerate(run.files()):
        d = root / f"f{i}"
        with f.download(root=str(d)) as fh:
            files[f.name] = (fh.name[len(str(d)) + 1:], Path(fh.name).read_bytes())
    art = api.artifact(f"{E}/{P}/ds:v0")
    entries = {}
    for i, path in enumerate(sorted(art.manifest.entries)):
        entries[path] = Path(art.get_entry(path).download(root=str(root / f"e{i}"))).read_bytes()
    whole = Path(art.download(root=str(root / "whole")))
    entries["(whole)"] = sorted(str(p.relative_to(whole)) for p in whole.rglob("*") if p.is_file())
    return {"id": run.id, "name": run.name, "config": dict(run.config), "files": files, "entries": entries,
            "history": [r["loss"] for r in run.scan_history(keys=["loss"])]}


def test_names_the_official_client_reads_are_kept_exactly(world: dict[str, Any], make_wandb_api,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tmp, cfg, mirror = world["tmp"], world["cfg"], world["mirror"]
    before = snapshot(tmp, skip=(mirror, world["up"]))
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0, capsys.readouterr()
    assert main(["sync", "--config", str(cfg), "--once", "--reconcile", "-q"]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert snapshot(tmp, skip=(mirror, world["up"])) - before == {"mirror"}  # the store is all that was written

    # byte for byte: the same names and bytes in the mirror's catalog as upstream's
    assert _files(mirror, "..") == _files(world["up"], "..")
    assert set(_files(mirror, "..")) == set(KEPT_FILES)
    with Store(mirror, create=False, readonly=True) as s:
        assert s.catalog.query("SELECT kind, upstream_path FROM quarantine") == []
        entries = [r["path"] for r in s.catalog.query("SELECT path FROM artifact_files ORDER BY path")]
    assert entries == sorted(KEPT_ENTRIES)

    # the official client reads the same from serve over the mirror as from the upstream
    from wandb_mirror.server import start_server

    served = world["server"]
    ms = start_server(mirror, api_key=KEY)
    try:
        up_view = _official_view(make_wandb_api(served.url, api_key=KEY), tmp / "dl-up")
        mirror_view = _official_view(make_wandb_api(ms.url, api_key=KEY), tmp / "dl-mirror")
    finally:
        ms.stop()
    assert mirror_view == up_view
    assert up_view["id"] == ".." and set(up_view["files"]) == set(KEPT_FILES)
    assert up_view["files"]["a\\b.txt"][0] == "a\\b.txt"  # the official client writes the name as is
    assert set(up_view["entries"]) == {*KEPT_ENTRIES, "(whole)"} and len(up_view["history"]) == 5


def test_a_name_the_official_client_refuses_stays_refused(world: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tmp, cfg, mirror = world["tmp"], world["cfg"], world["mirror"]
    with Store(world["up"]) as up:
        rpk = up.catalog.run_pk(up.catalog.project_pk(E, P), "plain")
        info = up.objects.put_bytes(b"climbs out")
    db = sqlite3.connect(world["up"] / "catalog.db")
    with db:
        db.execute("INSERT INTO files (run_pk, name, size, md5) VALUES (?, ?, ?, ?)", [rpk, REFUSED, info.size, info.md5])
    db.close()
    before = snapshot(tmp, skip=(mirror, world["up"]))
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 1
    err = capsys.readouterr()
    assert "../escape.txt" in err.out + err.err and "'..' component" in err.out + err.err
    assert snapshot(tmp, skip=(mirror, world["up"])) - before == {"mirror"} and not (tmp / "escape.txt").exists()
    with Store(mirror, create=False, readonly=True) as s:
        rows = s.catalog.query("SELECT kind, upstream_path, reason FROM quarantine")
    assert [(r["kind"], r["upstream_path"]) for r in rows] == [("file", f"{E}/{P}/plain/{REFUSED}")], rows
    assert "'..' component" in rows[0]["reason"]
    assert set(_files(mirror, "plain")) == {"ok.txt"} and set(_files(mirror, "..")) == set(KEPT_FILES)


def caplog_lines(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    return sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix))


def test_commands_that_write_names_map_them_and_say_so(world: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    tmp, cfg, mirror = world["tmp"], world["cfg"], world["mirror"]
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0
    capsys.readouterr()
    targets = ("co", "co2", "art", "ex", "ds", "best")
    before = snapshot(tmp, skip=(mirror, world["up"]))

    def inside(root: Path) -> list[str]:
        paths = [p for p in root.rglob("*")]
        assert all(p.resolve().is_relative_to(root.resolve()) for p in paths)
        return sorted(str(p.relative_to(root)) for p in paths if p.is_file())

    # checkout of run `..`: every file under its one-to-one safe name, each mapping printed
    assert main(["checkout", "--store", str(mirror), f"{E}/{P}/..", str(tmp / "co")]) == 0
    out = capsys.readouterr().out
    got = inside(tmp / "co")
    for name in KEPT_FILES:
        rel = safe_relpath(name)
        assert rel in got and (tmp / "co" / rel).read_text() == f"file {KEPT_FILES.index(name)}: {name!r}\n"
        if rel != name:
            assert f"mapped {name!r} -> {rel!r}" in out, (name, out)
    assert "mapped 'a\\\\b.txt' -> 'a%5Cb.txt'" in out and "a%2F%2Fb.txt" in got and "dir/%2E/x.txt" in got
    # a run id with ':' is still a run (not artifact `ckpt`, version `1`)
    assert main(["checkout", "--store", str(mirror), f"{E}/{P}/ckpt:1", str(tmp / "co2")]) == 0
    assert (tmp / "co2" / "w.txt").read_text() == "w\n"
    # an artifact version's entries likewise
    assert main(["checkout", "--store", str(mirror), f"{E}/{P}/ds:v0", str(tmp / "art")]) == 0
    out = capsys.readouterr().out
    assert inside(tmp / "art") == sorted(safe_relpath(n) for n in KEPT_ENTRIES)
    assert "mapped 'ctl\\x07ü.txt' -> 'ctl%07ü.txt'" in out

    # export and dataset: run `..` is one hive partition `run=..`, inside the output
    # (a run id with a space and a `%` is URI-encoded, and the command says so)
    assert main(["export", "--store", str(mirror), "--format", "jsonl", "--out", str(tmp / "ex")]) == 0
    out = capsys.readouterr().out
    got = inside(tmp / "ex")
    assert f"jsonl/history/entity={E}/project={P}/run=../history.jsonl" in got
    assert f"jsonl/history/entity={E}/project={P}/run=sp%20ace%25/history.jsonl" in got
    assert "mapped 'sp ace%' -> 'run=sp%20ace%25'" in out and "'..'" not in out
    assert main(["dataset", "--store", str(mirror), "--out", str(tmp / "ds")]) == 0
    out = capsys.readouterr().out
    got = inside(tmp / "ds")
    assert any(p.startswith(f"entity={E}/project={P}/run=../") for p in got)
    assert any(p.startswith(f"entity={E}/project={P}/run=sp%20ace%25/") for p in got)
    assert "mapped 'sp ace%' -> 'run=sp%20ace%25'" in out
    import pyarrow.dataset as pads

    table = pads.dataset(str(tmp / "ds"), format="parquet", partitioning="hive").to_table()
    assert set(table.column("run").to_pylist()) == {"..", "sp ace%"}  # a hive reader gets the names back

    # best_run's materialize: the run's files under their safe names, nothing outside
    import logging

    import wandb_mirror_plugins.best_run as best_run

    from wandb_mirror.hooks import StoreView

    caplog.set_level(logging.INFO, logger="wandb_mirror.plugins.best_run")
    with Store(mirror, create=False, readonly=True) as s:
        view = StoreView(s, "best_run")
        best_run.materialize(view, view.run(E, P, ".."), tmp / "best" / "sweep")
    got = inside(tmp / "best" / "sweep")
    assert set(got) == {safe_relpath(n) for n in KEPT_FILES} | {".wandb-run"}
    assert caplog_lines(caplog, "best_run: mapped") == sorted(
        f"best_run: mapped {n!r} -> {safe_relpath(n)!r}" for n in KEPT_FILES if safe_relpath(n) != n)
    assert hashlib.md5((tmp / "best" / "sweep" / "a%5Cb.txt").read_bytes()).hexdigest() == \
        hashlib.md5(b"file 0: 'a\\\\b.txt'\n").hexdigest()
    assert snapshot(tmp, skip=(mirror, world["up"], *(tmp / t for t in targets))) - before == set(targets)


def test_a_store_that_refused_them_under_the_old_rules_gets_them_next_pass(world: dict[str, Any],
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg, mirror = world["cfg"], world["mirror"]
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0
    # what a mirror older than name_rules recorded: the files quarantined, not stored
    db = sqlite3.connect(mirror / "catalog.db")
    with db:
        for name in ("a\\b.txt", "ctl\x01é 文件.txt"):
            for table in ("files", "file_versions"):
                db.execute(f"DELETE FROM {table} WHERE name = ?", [name])
            db.execute("INSERT INTO quarantine (at, kind, upstream_path, reason) VALUES (?, 'file', ?, ?)",
                       ["2026-01-01T00:00:00Z", f"{E}/{P}/../{name}", "unsafe file name: contains a backslash"])
        db.execute("INSERT INTO quarantine (at, kind, upstream_path, reason) VALUES (?, 'run', ?, ?)",
                   ["2026-01-01T00:00:00Z", f"{E}/{P}/'..'", "unsafe run id: is '.' or '..'"])
        db.execute("INSERT INTO quarantine (at, kind, upstream_path, reason) VALUES (?, 'artifact', ?, ?)",
                   ["2026-01-01T00:00:00Z", f"{E}/{P}/ds:v0", "unsafe entry path 'a\\b.txt': contains a backslash"])
    db.close()
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0  # an incremental pass, not a reconcile
    assert "1 updated" in capsys.readouterr().out
    assert _files(mirror, "..") == _files(world["up"], "..")
    with Store(mirror, create=False, readonly=True) as s:
        assert s.catalog.query("SELECT kind FROM quarantine") == []
        assert s.catalog.sync_states(s.catalog.project_pk(E, P), "retry:") == {}


def test_restore_gives_the_names_back(world: dict[str, Any], start_mirror_server, make_wandb_api) -> None:
    """A mirror restored to a W&B server (here a writable `serve`) re-creates run `..` and its files
    under their exact names: restore escapes the run in the file_stream URLs it builds."""
    tmp, cfg, mirror = world["tmp"], world["cfg"], world["mirror"]
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0
    Store(tmp / "target").close()
    target = start_mirror_server(tmp / "target", writable=True, api_key=KEY)
    assert main(["restore", "--store", str(mirror), "--to", target.url, "--journal", str(tmp / "j.jsonl")]) == 0
    original, restored = make_wandb_api(world["server"].url, api_key=KEY), make_wandb_api(target.url, api_key=KEY)
    for api in (original, restored):
        run = api.run(f"{E}/{P}/..")
        assert run.id == ".." and run.config == {"lr": 0.1}
    a, b = original.run(f"{E}/{P}/.."), restored.run(f"{E}/{P}/..")
    assert sorted(f.name for f in a.files()) == sorted(f.name for f in b.files())
    assert [r["loss"] for r in a.scan_history(keys=["loss"])] == [r["loss"] for r in b.scan_history(keys=["loss"])]
