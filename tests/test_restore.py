"""`wandb-mirror restore`: the demo upstream, mirrored, restored into an empty writable `serve`, must
look the same to the official client (except what docs/restore.md lists as not settable)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from restore_support import console, diff, project_view, sync_mirror

from wandb_mirror.cli import main
from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.fixtures import seed
from wandb_mirror.restore.org_target import READ_OPERATIONS
from wandb_mirror.store import Store

IMG, NLP = "acme-ml/image-classification", "acme-ml/nlp-ünïcode"
KEY = "r" * 40


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo upstream (served read-only) and a mirror of it."""
    from wandb_mirror.server import start_server

    base = tmp_path_factory.mktemp("restore-demo")
    up = Store(base / "up")
    try:
        seed(up, demo_fixture())
    finally:
        up.close()
    server = start_server(base / "up", read_only=True)
    sync_mirror(server.url, base / "mirror", KEY)
    yield {"server": server, "mirror": base / "mirror"}
    server.stop()


@pytest.fixture(scope="module")
def original_views(demo: Any, make_wandb_api: Any) -> dict[str, Any]:
    api = make_wandb_api(demo["server"].url)
    return {p: project_view(api, p, with_console=False) for p in (IMG, NLP)}


@pytest.fixture
def target(tmp_path: Path, start_mirror_server: Any) -> Any:
    Store(tmp_path / "target").close()
    return start_mirror_server(tmp_path / "target", writable=True)


def restore_args(demo: Any, target: Any, tmp_path: Path, *extra: str) -> list[str]:
    return ["restore", "--store", str(demo["mirror"]), "--to", target.url, "--journal",
            str(tmp_path / "journal.jsonl"), *extra]


def test_restore_gives_the_official_client_the_same_projects(demo: Any, target: Any, tmp_path: Path,
                                                               original_views: dict[str, Any], make_wandb_api: Any,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(restore_args(demo, target, tmp_path, "--dry-run")) == 0
    plan = capsys.readouterr().out
    assert f"{IMG} -> {IMG}: 28 runs" in plan and "6 artifact versions in 2 collections, 1 sweeps" in plan
    assert target.request_log() == []  # a dry run does not even connect

    assert main(restore_args(demo, target, tmp_path)) == 0
    api = make_wandb_api(target.url)
    for path in (IMG, NLP):
        original, restored = original_views[path], project_view(api, path, with_console=False)
        assert diff(original, restored) == []
        # the comparison is not vacuous: history, events, files, artifacts, consumers, sweeps are all there
        runs = restored["runs"].values()
        assert all(r["history"] for r in runs) and any(r["events"] for r in runs) and all(r["files"] for r in runs)
        assert restored["artifacts"]
    assert any(a["used_by"] for a in original_views[IMG]["artifacts"].values())
    assert original_views[IMG]["sweeps"] and original_views[IMG]["sweeps"][0][1]

    # a second restore finds everything done: no write is sent again
    target.reset_log()
    assert main(restore_args(demo, target, tmp_path)) == 0
    # (the organization side asks the target what it holds: reads, not writes)
    assert [e for e in target.request_log() if e["method"] != "GET" and e["operation"] not in READ_OPERATIONS] == []
    # a sweep created by a restore killed before it journaled the create is found, not created twice
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(x for x in journal.read_text().splitlines(keepends=True) if "|sweep|" not in x))
    assert main(restore_args(demo, target, tmp_path)) == 0
    assert [e["operation"] for e in target.request_log() if e["operation"] == "UpsertSweep"] == []
    assert len(make_wandb_api(target.url).project("image-classification", entity="acme-ml").sweeps()) == 1


def test_restore_resumes_after_kill_9_without_duplicates(demo: Any, tmp_path: Path, start_mirror_server: Any,
                                                         original_views: dict[str, Any], make_wandb_api: Any) -> None:
    Store(tmp_path / "target").close()
    target = start_mirror_server(tmp_path / "target", writable=True, latency_ms=15)  # slow enough to kill mid-way
    journal = tmp_path / "journal.jsonl"
    env = {**os.environ, "WANDB_API_KEY": KEY}
    cmd = [sys.executable, "-m", "wandb_mirror.cli", *restore_args(demo, target, tmp_path, "--project", IMG)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once it has done part of the work, in the middle of a run
        if journal.exists() and journal.read_text().count('"done"') >= 40:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done_before = journal.read_text().count('"done"')
    assert done_before >= 40 and "restore finished" not in journal.read_text()

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "steps already done" in r.stdout
    restored = project_view(make_wandb_api(target.url), IMG, with_console=False)
    assert diff(original_views[IMG], restored) == []
    ops = Counter(e["operation"] for e in target.request_log() if e["operation"])
    assert ops["UpsertSweep"] == 1  # not created twice
    with Store(tmp_path / "target", create=False, readonly=True) as store:
        assert store.catalog.scalar("SELECT COUNT(*) FROM artifacts") == 6
        assert store.catalog.scalar("SELECT COUNT(*) FROM sweeps") == 1


def test_restore_moves_a_project_to_another_name_and_entity(demo: Any, target: Any, tmp_path: Path,
                                                            original_views: dict[str, Any], make_wandb_api: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(restore_args(demo, target, tmp_path, "--project", "image-classification=moved",
                             "--entity", "other-team")) == 0
    api = make_wandb_api(target.url)
    assert diff(original_views[IMG], project_view(api, "other-team/moved", with_console=False)) == []
    assert [p.name for p in api.projects("acme-ml")] == []  # nothing else was restored
    # ENTITY/PROJECT on both sides
    assert main(restore_args(demo, target, tmp_path, "--project", f"{NLP}=third/nlp")) == 0
    assert diff(original_views[NLP], project_view(api, "third/nlp", with_console=False)) == []


@pytest.mark.slow
def test_restore_honours_retry_after_and_survives_faults(demo: Any, tmp_path: Path, start_mirror_server: Any,
                                                          original_views: dict[str, Any], make_wandb_api: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "target").close()
    target = start_mirror_server(tmp_path / "target", writable=True, fault_rate=0.05, fault_seed=3)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(restore_args(demo, target, tmp_path, "--project", NLP)) == 0
    log = target.request_log()
    assert any(e["status"] == 429 for e in log)
    target._server.faults.rate = 0.0
    assert diff(original_views[NLP], project_view(make_wandb_api(target.url), NLP, with_console=False)) == []


@pytest.mark.parametrize("args, message", [
    (["--project", "nope"], "holds no project 'nope'"),
    (["--project", "a/b/c"], "is not PROJECT or ENTITY/PROJECT"),
    (["--project", "image-classification=x", "--project", "nlp-ünïcode=x"], "two projects would be restored"),
    (["--entity", ""], "--entity must not be empty"),
])
def test_restore_bad_input_is_one_line_and_exit_2(demo: Any, tmp_path: Path, args: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["restore", "--store", str(demo["mirror"]), "--to", "http://127.0.0.1:9", "--dry-run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_restore_without_a_key_says_where_it_looked(demo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert main(["restore", "--store", str(demo["mirror"]), "--to", "http://127.0.0.1:9"]) == 2
    assert "WANDB_API_KEY" in capsys.readouterr().err


def test_journal_lines_are_json(demo: Any, target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(restore_args(demo, target, tmp_path, "--project", NLP)) == 0
    lines = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert {x["state"] for x in lines} == {"intent", "done"}
    assert KEY not in (tmp_path / "journal.jsonl").read_text()


def test_restore_of_odd_runs_and_an_xxh128_artifact(seeded_store: Path, seeded_server: Any, tmp_path: Path,
                                                    start_mirror_server: Any, make_wandb_api: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Crashed, running and failed runs, NaN/Infinity history, an artifact whose entries are XXH128-digested."""
    Store(tmp_path / "target").close()
    target = start_mirror_server(tmp_path / "target", writable=True)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert main(["restore", "--store", str(seeded_store), "--to", target.url, "--journal",
                 str(tmp_path / "j.jsonl")]) == 0
    original, restored = make_wandb_api(seeded_server.url), make_wandb_api(target.url)
    for path in ("acme/vision", "acme/nlp", "team-x/shared"):
        assert diff(project_view(original, path), project_view(restored, path)) == []
    a = Path(original.artifact("acme/vision/cnn:v0").download(root=str(tmp_path / "a")))
    b = Path(restored.artifact("acme/vision/cnn:v0").download(root=str(tmp_path / "b")))
    assert (a / "weights.bin").read_bytes() == (b / "weights.bin").read_bytes()
    assert restored.run("acme/vision/r03").state == "failed"  # crashed cannot be set (docs/restore.md)


def test_restore_gives_console_lines_back(demo: Any, target: Any, tmp_path: Path, make_wandb_api: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Console lines (`run.console_logs()`) from a store that holds them: the demo upstream's own store."""
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    up = demo["mirror"].parent / "up"
    assert main(["restore", "--store", str(up), "--to", target.url, "--project", IMG, "--journal",
                 str(tmp_path / "j.jsonl")]) == 0
    original, restored = make_wandb_api(demo["server"].url), make_wandb_api(target.url)
    seen = 0
    for run in original.runs(IMG):
        lines = console(run)
        seen += len(lines)
        assert console(restored.run(f"{IMG}/{run.id}")) == lines, run.id
    assert seen > 0 and any(level == "error" for r in original.runs(IMG) for _, level, _, _ in console(r))
