"""Reliability 2: kill -9 at seeded random moments, during a first sync and during incremental passes.

A kill moment is "the N-th time the process reaches fault point P" (store/faults.py): a chunk
written to a temp object, a temp file about to be renamed into place, an object just published,
a catalog transaction begun / about to commit / just committed. The moments are drawn with a
fixed seed from a calibration pass that counts how often each point is reached, so they spread
over the whole pass (downloads, history, run rows, artifacts, change-log rows, plugin cursors).
The process is a real `wandb-mirror sync --once` or `wandb-mirror run --once` (sync + plugin
delivery), and it dies by a true SIGKILL sent to itself at that moment.

After every kill the next cycle (a clean `run --once`) must complete; then no temp file remains,
`verify --deep` passes, the mirror equals the upstream store, every change event was delivered to
a recording plugin at least once, and each run / artifact version was announced exactly once.

tests/test_sync_cli.py has the single kill of the original suite; `make soak` runs a longer
randomized variant (more kills, random points, several seeds).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    ENTITY,
    KEY,
    ROOT,
    child_env,
    mirror_state,
    seed_store,
    state_diff,
    store_problems,
    verify_deep,
    write_config,
)

from wandb_mirror.store import Store, faults

SEED = 20240611
FIGURES: dict[str, int] = {"kills": 0}

RECORDER = '''"""recorder: one line per event received (reliability tests)."""
import os

from wandb_mirror.hooks import hookimpl


def _w(config, line):
    fd = os.open(config["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@hookimpl
def run_created(run, config):
    _w(config, f"run_created {run.path}")


@hookimpl
def run_state_changed(run, old, new, config):
    _w(config, f"run_state_changed {run.path} {old}->{new}")


@hookimpl
def run_updated(run, changes, config):
    _w(config, f"run_updated {run.path} {sorted(changes)}")


@hookimpl
def history_appended(run, first_step, last_step, config):
    _w(config, f"history_appended {run.path} {first_step}-{last_step}")


@hookimpl
def file_mirrored(run, file, config):
    _w(config, f"file_mirrored {run.path}/{file.name}")


@hookimpl
def artifact_version_mirrored(artifact, config):
    _w(config, f"artifact_version_mirrored {artifact.id}")


@hookimpl
def artifact_aliases_changed(artifact, added, removed, config):
    _w(config, f"artifact_aliases_changed {artifact.id} {sorted(added)} {sorted(removed)}")


@hookimpl
def sweep_updated(sweep, config):
    _w(config, f"sweep_updated {sweep.name}")


@hookimpl
def sweep_finished(sweep, config):
    _w(config, f"sweep_finished {sweep.name}")


@hookimpl
def tombstoned(kind, key, config):
    _w(config, f"tombstoned {kind} {key}")
'''


def expected_lines(store_path: Path) -> list[str]:
    """What the recorder must have written, from the change log."""
    out = []
    with Store(store_path, create=False) as s:
        for c in s.catalog.query("SELECT * FROM changes ORDER BY seq"):
            p = json.loads(c["payload"])
            run = f"{c['entity']}/{c['project']}/{c['run']}"
            k = c["kind"]
            line = {
                "run_created": lambda: f"{k} {run}",  # noqa: B023 - used at once
                "run_state_changed": lambda: f"{k} {run} {p.get('old')}->{p.get('new')}",  # noqa: B023
                "run_updated": lambda: f"{k} {run} {sorted(p.get('changes') or {})}",  # noqa: B023
                "history_appended": lambda: f"{k} {run} {p.get('first_step')}-{p.get('last_step')}",  # noqa: B023
                "file_mirrored": lambda: f"{k} {run}/{p.get('name')}",  # noqa: B023
                "artifact_version_mirrored": lambda: f"{k} {c['subject']}",  # noqa: B023
                "artifact_aliases_changed": lambda: f"{k} {c['subject']} {sorted(p['added'])} {sorted(p['removed'])}",  # noqa: B023
                "sweep_updated": lambda: f"{k} {c['subject']}",  # noqa: B023
                "sweep_finished": lambda: f"{k} {c['subject']}",  # noqa: B023
                "tombstoned": lambda: f"{k} {p.get('kind')} {p.get('key')}",  # noqa: B023
            }[k]()
            out.append(line)
    return out


class World:
    def __init__(self, base: Path, url: str, up: Path):
        self.base = base
        self.up = up
        self.url = url
        (base / "plugins").mkdir(exist_ok=True)
        (base / "plugins" / "recorder.py").write_text(RECORDER)

    def config(self, name: str) -> Path:
        """Mirror `name` (a directory under base) with the recording plugin writing `name.events`."""
        extra = (f'[daemon]\nplugins_dir = "plugins"\nhook_timeout = "20s"\n\n'
                 f'[plugins.recorder]\nenabled = true\nout = "{name}.events"\n')
        return write_config(self.base, self.url, store=name, sync="concurrency = 2\n", extra=extra,
                            name=f"{name}.toml")

    def calibrate(self, name: str) -> dict[str, dict[str, int]]:
        """Count the fault points a clean cycle of mirror `name` reaches (in-process, on a copy):
        {"sync": hits during the pass, "run": hits during the whole cycle (pass + delivery)}."""
        scratch = f"calib-{name}"
        shutil.rmtree(self.base / scratch, ignore_errors=True)
        (self.base / f"{scratch}.events").unlink(missing_ok=True)
        if (self.base / name).exists():
            shutil.copytree(self.base / name, self.base / scratch)
            if (self.base / f"{name}.events").exists():
                shutil.copy(self.base / f"{name}.events", self.base / f"{scratch}.events")
        faults.configure(count=True)
        try:
            after_sync: dict[str, int] = {}
            assert self.cycle(scratch, after_sync) == "ok"
            return {"sync": after_sync, "run": faults.counts()}
        finally:
            faults.configure(None)
            shutil.rmtree(self.base / scratch, ignore_errors=True)

    def cycle(self, name: str, after_sync: dict[str, int] | None = None) -> str:
        """One clean daemon cycle (sync + delivery) in this process; returns the pass status.
        `after_sync` receives the fault-point counts at the end of the pass."""
        from wandb_mirror.daemon import Daemon
        from wandb_mirror.daemon.syncer import EngineRunner

        def sync_pass(config: Any, store: Store, stop: Any) -> Any:
            runner = EngineRunner(config, store)
            try:
                return runner(config, store, stop)
            finally:
                runner.close()
                if after_sync is not None:
                    after_sync.update(faults.counts())

        d = Daemon(self.config(name), install_signals=False, watch=False, max_cycles=1, sync_pass=sync_pass)
        assert d.run() == 0
        return d.last_outcome.status

    def kill(self, name: str, point: str, n: int, command: str) -> subprocess.CompletedProcess:
        env = child_env(WANDB_MIRROR_FAULTS=f"kill@{point}#{n}")
        args = [sys.executable, "-m", "wandb_mirror.cli", command, "--config", str(self.config(name)), "--once"]
        if command == "run":
            args.append("--no-watch")
        return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    def check(self, name: str, *, delivered: bool = True) -> None:
        mirror = self.base / name
        assert store_problems(mirror) == []
        assert verify_deep(mirror) == []
        assert state_diff(mirror_state(self.up), mirror_state(mirror)) == []
        if delivered:
            seen = set((self.base / f"{name}.events").read_text().splitlines())
            missing = [x for x in expected_lines(mirror) if x not in seen]
            assert not missing, f"events never delivered: {missing[:5]}"
        with Store(mirror, create=False) as s:
            dup = s.catalog.query(
                "SELECT kind, entity, project, run, subject, COUNT(*) AS n FROM changes "
                "WHERE kind IN ('run_created', 'artifact_version_mirrored') "
                "GROUP BY kind, entity, project, run, subject HAVING n > 1")
            assert dup == [], dup
            assert s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status = 'running'") == 0


def moments(counts: dict[str, int], rng: random.Random) -> tuple[str, int]:
    """A uniformly drawn hit among all the fault-point hits of a calibrated cycle (not the last 10%,
    so run-to-run variation in thread interleaving cannot make the moment fall after the end)."""
    points = sorted(p for p in counts if counts[p])
    total = sum(counts[p] for p in points)
    k = rng.randrange(max(1, int(total * 0.9)))
    for p in points:
        if k < counts[p]:
            return p, k + 1
        k -= counts[p]
    raise AssertionError("unreachable")


def grow_upstream(up: Path, i: int) -> None:
    """What a team does between two passes: the running run logs more history, a new run appears
    with a new file, and a new project with a run and an artifact version."""
    from wandb_mirror.fixtures import seed
    from wandb_mirror.ids import run_storage_id
    from wandb_mirror.models import Run

    with Store(up) as s:
        cat = s.catalog
        ppk = cat.project_pk(ENTITY, "alpha")
        run = cat.query_one("SELECT * FROM runs WHERE project_pk = ? AND name = 'a3'", [ppk])
        last = json.loads(cat.scalar("SELECT row FROM history WHERE run_pk = ? ORDER BY step DESC LIMIT 1", [run["pk"]]))
        rows = [dict(last, _step=last["_step"] + k, loss=round(1 / (k + i + 1), 6)) for k in range(1, 16)]
        cat.append_history(run["pk"], ((r["_step"], json.dumps(r)) for r in rows))
        keys = json.loads(run["history_keys"])
        keys["lastStep"] = rows[-1]["_step"]
        now = f"2024-06-01T00:{i:02d}:00"
        with cat.transaction() as conn:
            conn.execute("UPDATE runs SET summary = ?, history_keys = ?, last_step = ?, "
                         "history_line_count = history_line_count + ?, heartbeat_at = ?, updated_at = ? WHERE pk = ?",
                         [json.dumps(rows[-1]), json.dumps(keys), rows[-1]["_step"], len(rows), now, now, run["pk"]])
        new = Run.from_row(cat.query_one("SELECT * FROM runs WHERE project_pk = ? AND name = 'a2'", [ppk]))
        new.name = f"n{i:02d}"
        new.storage_id = run_storage_id(ENTITY, "alpha", new.name)
        new.created_at = new.heartbeat_at = new.updated_at = now
        npk = cat.upsert_run(ppk, new)
        info = s.objects.put_bytes(f"new file of run {new.name}\n".encode() * 50)
        from wandb_mirror.models import RunFile

        cat.upsert_file(npk, RunFile(name="notes.txt", size=info.size, md5=info.md5, updated_at=now,
                                     mimetype="text/plain"))
        seed(s, {"projects": [{"entity": ENTITY, "name": f"delta{i:02d}", "created_at": now, "runs": [
            {"id": f"d{i:02d}", "history": {"steps": 25, "metrics": ["x"], "seed": i},
             "files": [{"name": "blob.bin", "size": 5000 + i, "seed": i}]}],
            "artifacts": [{"name": "dd", "type": "dataset", "versions": [
                {"files": [{"path": "q.txt", "text": f"q{i}"}, {"path": "r.bin", "size": 3000, "seed": i}],
                 "created_by": f"d{i:02d}"}]}]}]})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from wandb_mirror.server import start_server

    base = tmp_path_factory.mktemp("crash")
    up = seed_store(base / "up")
    server = start_server(up, read_only=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_API_KEY", KEY)
        mp.delenv("WANDB_MIRROR_FAULTS", raising=False)
        yield World(base, server.url, up)
    server.stop()


def survive_kill(world: World, name: str, counts: dict[str, dict[str, int]], rng: random.Random,
                 command: str) -> str:
    point, n = moments(counts[command], rng)
    p = world.kill(name, point, n, command)
    assert p.returncode == -signal.SIGKILL, (point, n, p.returncode, p.stderr[-2000:])
    FIGURES["kills"] += 1
    # the restart, with the same command: it completes the pass (and, for `run`, delivers the events)
    if command == "sync":
        from wandb_mirror.cli import main

        assert main(["sync", "--config", str(world.config(name)), "--once", "-q"]) == 0, (point, n)
        world.check(name, delivered=False)
    status = world.cycle(name)
    assert status == "ok", (point, n)
    world.check(name)
    return f"{point}#{n}"


def test_kill_9_during_first_syncs(world: World) -> None:
    rng = random.Random(SEED)
    counts = world.calibrate("first")
    assert counts["sync"].get("objects.publish", 0) > 10 and counts["sync"].get("catalog.commit", 0) > 20, counts
    done = []
    for k in range(10):
        name = f"first{k}"
        done.append(survive_kill(world, name, counts, rng, "run" if k % 2 == 0 else "sync"))
        shutil.rmtree(world.base / name)
    assert len(set(done)) >= 8, done  # spread over the pass, not the same moment again and again


def test_kill_9_during_incremental_passes(world: World) -> None:
    rng = random.Random(SEED + 1)
    assert world.cycle("incr") == "ok"
    world.check("incr")
    counts: dict[str, dict[str, int]] = {}
    done = []
    for k in range(10):
        grow_upstream(world.up, k)
        if not counts:  # every delta has the same shape: one calibration serves them all
            counts = world.calibrate("incr")
        done.append(survive_kill(world, "incr", counts, rng, "run" if k % 2 == 0 else "sync"))
    assert len(set(done)) >= 8, done
    with Store(world.base / "incr", create=False) as s:
        assert s.catalog.scalar("SELECT COUNT(*) FROM runs WHERE name LIKE 'n%'") == 10
        assert s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status = 'failed'") >= 3  # killed mid-pass


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_soak_many_random_kills(world: World, seed: int) -> None:
    """`make soak`: 40 kills per seed at random moments, several kills before each restart."""
    rng = random.Random(seed * 7919)
    name = f"soak{seed}"
    counts = world.calibrate(name)
    t0 = time.monotonic()
    for k in range(40):
        if k % 8 == 7:
            grow_upstream(world.up, 20 + seed * 50 + k)
            counts = world.calibrate(name)
        for _ in range(rng.randint(1, 3)):  # kills in a row: each restart is killed again
            command = rng.choice(["run", "sync"])
            point, n = moments(counts[command], rng)
            p = world.kill(name, point, n, command)
            if p.returncode == -signal.SIGKILL:
                FIGURES["kills"] += 1
        assert world.cycle(name) == "ok"
        world.check(name)
    assert time.monotonic() - t0 < 600
    os.environ.pop("WANDB_MIRROR_FAULTS", None)
