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

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    KEY,
    RECORDER,
    announced_twice,
    grow_upstream,
    killed_at,
    mirror_state,
    running_passes,
    seed_store,
    state_diff,
    store_problems,
    undelivered,
    verify_deep,
    write_config,
)

from wandb_mirror.store import Store, faults

SEED = 20240611
FIGURES: dict[str, int] = {"kills": 0}

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
        """Count the fault points mirror `name` reaches (in-process, on copies): {"sync": hits of a
        `sync --once` (no plugin delivery), "run": hits of a whole daemon cycle (pass + delivery)}.
        Counted separately: the daemon may deliver while its pass runs, so hits "after the pass" of
        a cycle include delivery's, which a `sync` never reaches."""
        from wandb_mirror.cli import main

        out: dict[str, dict[str, int]] = {}
        for command in ("run", "sync"):
            scratch = f"calib-{name}"
            shutil.rmtree(self.base / scratch, ignore_errors=True)
            (self.base / f"{scratch}.events").unlink(missing_ok=True)
            if (self.base / name).exists():
                shutil.copytree(self.base / name, self.base / scratch)
                if (self.base / f"{name}.events").exists():
                    shutil.copy(self.base / f"{name}.events", self.base / f"{scratch}.events")
            faults.configure(count=True)
            try:
                if command == "run":
                    assert self.cycle(scratch) == "ok"
                else:
                    assert main(["sync", "--config", str(self.config(scratch)), "--once", "-q"]) == 0
                out[command] = faults.counts()
            finally:
                faults.configure(None)
                shutil.rmtree(self.base / scratch, ignore_errors=True)
        return out

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
        return killed_at(self.config(name), point, n, command)

    def check(self, name: str, *, delivered: bool = True) -> None:
        mirror = self.base / name
        assert store_problems(mirror) == []
        assert verify_deep(mirror) == []
        assert state_diff(mirror_state(self.up), mirror_state(mirror)) == []
        if delivered:
            missing = undelivered(mirror, self.base / f"{name}.events")
            assert not missing, f"events never delivered: {missing[:5]}"
        dup = announced_twice(mirror)
        assert dup == [], dup
        assert running_passes(mirror) == 0


def moments(counts: dict[str, int], rng: random.Random) -> tuple[str, int]:
    """A uniformly drawn hit among all the fault-point hits of a calibrated cycle (not the last 10%,
    so run-to-run variation in thread interleaving cannot make the moment fall after the end)."""
    # the 10% kept back is per point: the last commit of a pass is not a moment every command reaches
    usable = {p: max(1, int(counts[p] * 0.9)) for p in sorted(counts) if counts[p]}
    k = rng.randrange(sum(usable.values()))
    for p, n in usable.items():
        if k < n:
            return p, k + 1
        k -= n
    raise AssertionError("unreachable")


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
        assert s.catalog.scalar("SELECT COUNT(*) FROM runs WHERE run_id LIKE 'n%'") == 10
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
