"""The built-in plugins end to end: seeded upstream server -> daemon cycle (real sync engine) ->
plugins -> write-back through the real server; effects asserted upstream and on disk, in dry-run
and for real, and a second cycle changes nothing."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_plugins_support import ENTITY, PROJECT, seed_store, serve_writable_copy

from wandb_mirror.daemon import Daemon
from wandb_mirror.daemon.syncer import skipped_pass
from wandb_mirror.store import Store


@pytest.fixture(scope="module")
def seeded_upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("builtin") / "upstream")


@pytest.fixture
def upstream(seeded_upstream: Path, tmp_path: Path, start_mirror_server, monkeypatch: pytest.MonkeyPatch):
    return serve_writable_copy(seeded_upstream, tmp_path, start_mirror_server, monkeypatch)


def write_config(tmp_path: Path, url: str, plugins: str, extra: str = "") -> Path:
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(
        f'[source]\nbase_url = "{url}"\nprojects = ["{ENTITY}/{PROJECT}"]\nreports = false\n'
        f'[store]\npath = "{tmp_path / "mirror"}"\n'
        f'[sync]\nreconcile_interval = "1ms"\n[daemon]\npoll_interval = "1s"\n{extra}\n{plugins}\n')
    return cfg


def cycle(cfg: Path, **kw: Any) -> Daemon:
    d = Daemon(cfg, install_signals=False, max_cycles=1, watch=False, **kw)
    assert d.run() == 0
    return d


def up_run(upstream_path: Path, name: str) -> dict[str, Any]:
    with Store(upstream_path, create=False, readonly=True) as s:
        return s.catalog.query_one("SELECT * FROM runs WHERE run_id = ?", [name])


def journal(cfg_tmp: Path, plugin: str | None = None) -> list[dict[str, Any]]:
    with Store(cfg_tmp / "mirror", create=False, readonly=True) as s:
        if plugin:
            return s.catalog.query("SELECT * FROM journal WHERE plugin = ? ORDER BY pk", [plugin])
        return s.catalog.query("SELECT * FROM journal ORDER BY pk")


# -- summary_backfill ---------------------------------------------------------------------------
BACKFILL = """
[plugins.summary_backfill]
enabled = true
dry_run = {dry}
[plugins.summary_backfill.rules]
loss = "min"
"""


def test_summary_backfill_dry_run_then_real_then_idempotent(upstream, tmp_path: Path) -> None:
    server, up = upstream
    before_a1 = json.loads(up_run(up, "a1")["summary"])
    cfg = write_config(tmp_path, server.url, BACKFILL.format(dry="true"))
    cycle(cfg)
    j = journal(tmp_path, "summary_backfill")
    # a1: loss summary 0.3 but history min 0.05, and acc is missing; a2: loss 0.2 is the min already
    # (and nothing missing); b1 fine; crashed/running runs are not touched
    assert [r["target"] for r in j] == [f"{ENTITY}/{PROJECT}/a1"]
    assert j[0]["dry_run"] == 1 and j[0]["result"] == "dry-run" and j[0]["action"] == "summary"
    after = json.loads(j[0]["after"])
    assert after["loss"] == 0.05 and after["acc"] == 0.7 and json.loads(j[0]["before"]) == before_a1
    assert json.loads(up_run(up, "a1")["summary"]) == before_a1  # dry-run: nothing sent
    # second dry-run cycle journals nothing new
    cycle(cfg)
    assert len(journal(tmp_path, "summary_backfill")) == 1

    # for real: the whole summary goes upstream, exactly as the official client sends it
    write_config(tmp_path, server.url, BACKFILL.format(dry="false"))
    server.reset_log()
    cycle(cfg)
    j = journal(tmp_path, "summary_backfill")
    assert len(j) == 2 and j[1]["dry_run"] == 0 and j[1]["result"] == "ok"
    new = json.loads(up_run(up, "a1")["summary"])
    assert new == {**before_a1, "loss": 0.05, "acc": 0.7}
    ops = [e["operation"] for e in server.request_log() if e["path"] == "/graphql"]
    assert ops.count("UpsertBucket") == 1, ops
    assert up_run(up, "a1")["summary"] == json.dumps(new, separators=(",", ":"))  # whole summary, compact
    # the next cycle mirrors the new summary and finds nothing to do
    cycle(cfg)
    assert len(journal(tmp_path, "summary_backfill")) == 2
    with Store(tmp_path / "mirror", create=False, readonly=True) as s:
        mirrored = json.loads(s.catalog.scalar("SELECT summary FROM runs WHERE run_id = 'a1'"))
    assert mirrored == new


# -- best_run -------------------------------------------------------------------------------------
BEST = """
[plugins.best_run]
enabled = true
dry_run = {dry}
tag = "best"
artifact_collection = "weights"
artifact_alias = "champion"
materialize_dir = "{mat}"
"""


def test_best_run_tags_aliases_and_materializes(upstream, tmp_path: Path) -> None:
    server, up = upstream
    mat = tmp_path / "best"
    cfg = write_config(tmp_path, server.url, BEST.format(dry="true", mat=mat))
    cycle(cfg)
    with Store(tmp_path / "mirror", create=False, readonly=True) as s:
        best = s.catalog.query("SELECT * FROM best_runs")
    # a2 (summary loss 0.2) beats a1 (0.3); crashed a3 (0.01) and running a4 (0.02) never count
    assert [(b["sweep"], b["run"], b["value"], b["goal"]) for b in best] == [("sw", "a2", 0.2, "minimize")]
    j = journal(tmp_path, "best_run")
    assert [(r["action"], r["target"], r["result"]) for r in j] == [
        ("tags", f"{ENTITY}/{PROJECT}/a2", "dry-run"),
        ("alias_add", f"{ENTITY}/{PROJECT}/weights:v1", "dry-run"),
    ]
    assert "best" not in json.loads(up_run(up, "a2")["tags"])
    # materialized with hard links into the mirror's objects
    files = sorted(p.relative_to(mat / ENTITY / PROJECT / "sw").as_posix()
                   for p in (mat / ENTITY / PROJECT / "sw").rglob("*") if p.is_file())
    assert files == [".wandb-run", "model.ckpt", "plot.png"]
    ckpt = mat / ENTITY / PROJECT / "sw" / "model.ckpt"
    assert ckpt.stat().st_nlink >= 2

    # for real
    write_config(tmp_path, server.url, BEST.format(dry="false", mat=mat))
    cycle(cfg)
    assert "best" in json.loads(up_run(up, "a2")["tags"])
    with Store(up, create=False, readonly=True) as s:
        aliases = {r["version_index"]: json.loads(r["aliases"]) for r in s.catalog.query(
            "SELECT a.version_index, a.aliases FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
            "WHERE c.name = 'weights'")}
    assert "champion" in aliases[1] and "champion" not in aliases[0]

    # the best changes: a1's summary improves upstream -> a1 tagged, a2 untagged
    with Store(up) as s:
        s.catalog.conn.execute("UPDATE runs SET summary = ?, updated_at = '2030-01-01T00:00:00' WHERE run_id = 'a1'",
                               [json.dumps({"loss": 0.1})])
        s.catalog.conn.commit()
    n_before = len(journal(tmp_path, "best_run"))
    cycle(cfg)
    assert "best" in json.loads(up_run(up, "a1")["tags"]) and "keep" in json.loads(up_run(up, "a1")["tags"])
    assert "best" not in json.loads(up_run(up, "a2")["tags"])
    with Store(tmp_path / "mirror", create=False, readonly=True) as s:
        b = s.catalog.query_one("SELECT * FROM best_runs")
    assert (b["run"], b["previous_run"], b["value"]) == ("a1", "a2", 0.1)
    assert (mat / ENTITY / PROJECT / "sw" / ".wandb-run").read_text().strip() == f"{ENTITY}/{PROJECT}/a1"
    assert len(journal(tmp_path, "best_run")) > n_before
    # nothing new -> nothing written
    n = len(journal(tmp_path, "best_run"))
    cycle(cfg)
    assert len(journal(tmp_path, "best_run")) == n


def test_best_run_from_history(upstream, tmp_path: Path) -> None:
    server, _ = upstream
    cfg = write_config(tmp_path, server.url, '[plugins.best_run]\nenabled = true\nsource = "history"\n')
    cycle(cfg)
    with Store(tmp_path / "mirror", create=False, readonly=True) as s:
        b = s.catalog.query_one("SELECT * FROM best_runs")
    assert (b["run"], b["value"], b["source"]) == ("a1", 0.05, "history")  # history min of a1 beats a2's 0.2


# -- cleanup --------------------------------------------------------------------------------------
CLEANUP = """
[plugins.cleanup]
enabled = true
dry_run = {dry}
extensions = [".png"]
max_per_pass = 2
"""


def test_cleanup_deletes_verified_files_of_finished_runs(upstream, tmp_path: Path) -> None:
    server, up = upstream
    cfg = write_config(tmp_path, server.url, CLEANUP.format(dry="true"))
    cycle(cfg)
    j = journal(tmp_path, "cleanup")
    assert len(j) == 2 and all(r["result"] == "dry-run" for r in j)  # at most 2 per pass
    cycle(cfg)
    j = journal(tmp_path, "cleanup")
    targets = sorted(r["target"] for r in j)
    # finished runs only (a4's live.png is running), .png case-insensitively, never notes.txt/model.ckpt
    assert targets == sorted(f"{ENTITY}/{PROJECT}/{p}" for p in ("a1/plot.png", "a1/media/x.PNG", "a2/plot.png"))
    with Store(up, create=False, readonly=True) as s:
        assert s.catalog.scalar("SELECT COUNT(*) FROM files WHERE tombstoned_at IS NOT NULL") == 0

    # a corrupted local copy is never deleted upstream
    with Store(tmp_path / "mirror") as s:
        md5 = s.catalog.scalar("SELECT f.md5 FROM files f JOIN runs r ON r.pk = f.run_pk "
                               "WHERE r.run_id = 'a2' AND f.name = 'plot.png'")
        p = s.objects.path(md5)
        p.chmod(0o600)
        p.write_bytes(b"rotten")
    write_config(tmp_path, server.url, CLEANUP.format(dry="false"))
    cycle(cfg)
    cycle(cfg)
    with Store(up, create=False, readonly=True) as s:
        gone = {r["name"] for r in s.catalog.query(
            "SELECT r.run_id || '/' || f.name AS name FROM files f JOIN runs r ON r.pk = f.run_pk "
            "WHERE f.tombstoned_at IS NOT NULL")}
    assert gone == {"a1/plot.png", "a1/media/x.PNG"}
    real = [r for r in journal(tmp_path, "cleanup") if not r["dry_run"]]
    assert sorted(r["target"] for r in real if r["result"] == "ok") == sorted(
        f"{ENTITY}/{PROJECT}/{p}" for p in ("a1/plot.png", "a1/media/x.PNG"))
    # the mirror keeps the files (catalog rows and verified bytes), tombstoned after the next pass
    with Store(tmp_path / "mirror", create=False, readonly=True) as s:
        rows = s.catalog.query("SELECT f.name, f.md5, f.tombstoned_at FROM files f JOIN runs r ON r.pk = f.run_pk "
                               "WHERE r.run_id = 'a1' AND f.name LIKE '%png' COLLATE NOCASE")
        assert len(rows) == 2 and all(r["tombstoned_at"] for r in rows)
        assert all(s.objects.has(r["md5"]) for r in rows)


# -- export ---------------------------------------------------------------------------------------
def test_export_writes_runs_and_changed_histories(upstream, tmp_path: Path) -> None:
    server, up = upstream
    out = tmp_path / "export"
    cfg = write_config(tmp_path, server.url,
                       f'[plugins.export]\nenabled = true\nout = "{out}"\nformats = ["csv", "parquet", "jsonl"]\n')
    cycle(cfg)
    def part(fmt: str, dataset: str) -> Path:
        return out / fmt / dataset / f"entity={ENTITY}" / f"project={PROJECT}"

    with open(part("csv", "runs") / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["id"] for r in rows) == ["a1", "a2", "a3", "a4", "b1"]
    a1 = next(r for r in rows if r["id"] == "a1")
    assert a1["state"] == "finished" and a1["sweep"] == "sw" and float(a1["summary.loss"]) == 0.3
    import pyarrow.parquet as pq

    t = pq.read_table(part("parquet", "runs") / "runs.parquet")
    assert t.num_rows == 5 and "summary.loss" in t.column_names
    with open(part("csv", "history") / "run=a1" / "history.csv", newline="") as f:
        h = list(csv.DictReader(f))
    assert [float(r["loss"]) for r in h] == [0.9, 0.05, 0.3] and list(h[0])[:2] == ["run_path", "_step"]
    assert pq.read_table(part("parquet", "history") / "run=a1" / "history.parquet").num_rows == 3
    assert len((part("jsonl", "history") / "run=a1" / "history.jsonl").read_text().splitlines()) == 3
    assert not list(out.rglob(".*.tmp"))
    # only runs that changed are rewritten
    mtimes = {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("history.*")}
    with Store(up) as s:
        s.catalog.conn.execute("UPDATE runs SET summary = ?, updated_at = '2030-01-01T00:00:00' WHERE run_id = 'b1'",
                               [json.dumps({"loss": 0.5})])
        s.catalog.conn.commit()
    cycle(cfg)
    after = {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("history.*")}
    changed = {n for n in after if after[n] != mtimes[n]}
    assert changed == {str((part(f, "history") / "run=b1" / f"history.{f}").relative_to(out))
                       for f in ("csv", "parquet", "jsonl")}
    with open(part("csv", "runs") / "runs.csv", newline="") as f:
        assert next(r for r in csv.DictReader(f) if r["id"] == "b1")["summary.loss"] == "0.5"


def test_export_command(upstream, tmp_path: Path, capsys) -> None:
    from wandb_mirror.cli import main

    _, up = upstream
    assert main(["export", "--store", str(up), "--format", "jsonl", "--format", "csv", "--out", str(tmp_path / "o")]) == 0
    proj = f"entity={ENTITY}/project={PROJECT}"
    assert (tmp_path / "o" / "jsonl" / "runs" / proj / "runs.jsonl").exists()
    assert (tmp_path / "o" / "csv" / "history" / proj / "run=a2" / "history.csv").exists()
    assert main(["export", "--store", str(tmp_path / "nope"), "--format", "csv", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plugins_only_daemon_cycle_without_engine(tmp_path: Path) -> None:
    """The daemon runs plugins over a store even with no sync engine pass (skipped)."""
    store = seed_store(tmp_path / "mirror")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n[store]\npath = "{store}"\n'
                   f'[plugins.export]\nenabled = true\nout = "{tmp_path / "x"}"\nformats = ["csv"]\n')
    os.environ.pop("NOTIFY_SOCKET", None)
    cycle(cfg, sync_pass=skipped_pass)
    assert list((tmp_path / "x" / "csv" / "runs").rglob("runs.csv"))
