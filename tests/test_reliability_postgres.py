"""Reliability on the PostgreSQL catalog with objects on S3 (moto): `sync --once` and `run --once`
killed with SIGKILL at seeded moments of a first pass (a catalog transaction begun, about to
commit, just committed); the next cycle completes, `verify --deep` passes against the bucket, the
mirror equals the upstream store, every change event reached the recording plugin at least once,
each run and artifact version was announced exactly once, and no pass is left 'running'.

The SQLite variant with more moments is tests/test_reliability_crash.py; this one keeps two kills
(one `sync`, one `run`) so that it stays a few seconds."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    KEY,
    RECORDER,
    announced_twice,
    killed_at,
    mirror_state,
    running_passes,
    seed_store,
    state_diff,
    undelivered,
    verify_deep,
)
from test_reliability_crash import moments

from wandb_mirror.store import faults
from wandb_mirror.store.location import StoreLocation, open_store

pytest.importorskip("psycopg")
pytest.importorskip("boto3")
pytestmark = pytest.mark.postgres
SEED = 20261201


class PgWorld:
    def __init__(self, base: Path, url: str, up: Path, pg: Any, s3: Any):
        self.base, self.url, self.up, self.pg, self.s3 = base, url, up, pg, s3
        self.bucket = s3.new_bucket()
        (base / "plugins").mkdir(exist_ok=True)
        (base / "plugins" / "recorder.py").write_text(RECORDER)

    def catalog(self, name: str) -> str:
        return f"{self.pg.url}?options=-csearch_path%3D{name}"

    def new_mirror(self, name: str) -> None:
        self.pg.psql(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")

    def where(self, name: str) -> StoreLocation:
        return StoreLocation(path=self.base / name, catalog=self.catalog(name),
                             objects=f"s3://{self.bucket}/{name}", s3_endpoint_url=self.s3.url)

    def config(self, name: str) -> Path:
        p = self.base / f"{name}.toml"
        p.write_text(f'[source]\nbase_url = "{self.url}"\n\n[store]\npath = "{name}"\n'
                     f'catalog = "{self.catalog(name)}"\nobjects = "s3://{self.bucket}/{name}"\n'
                     f's3_endpoint_url = "{self.s3.url}"\n\n'
                     '[sync]\nretry_wait_min = "10ms"\nretry_wait_max = "50ms"\nmax_retries = 6\nprogress = "never"\n'
                     'concurrency = 2\n\n[daemon]\nplugins_dir = "plugins"\nhook_timeout = "20s"\n\n'
                     f'[plugins.recorder]\nenabled = true\nout = "{name}.events"\n')
        return p

    def kill(self, name: str, point: str, n: int, command: str) -> subprocess.CompletedProcess:
        return killed_at(self.config(name), point, n, command)

    def check(self, name: str) -> None:
        where = self.where(name)
        assert verify_deep(where) == []
        assert state_diff(mirror_state(self.up), mirror_state(where)) == []
        missing = undelivered(where, self.base / f"{name}.events")
        assert not missing, f"events never delivered: {missing[:5]}"
        with open_store(where, create=False) as s:
            assert s.catalog.engine == "postgresql"
        dup = announced_twice(where)
        assert dup == [], dup
        assert running_passes(where) == 0


@pytest.fixture
def world(tmp_path: Path, postgres_server, s3_env, monkeypatch: pytest.MonkeyPatch) -> Any:
    from wandb_mirror.server import start_server

    up = seed_store(tmp_path / "up")
    server = start_server(up, read_only=True)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.delenv("WANDB_MIRROR_FAULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        yield PgWorld(tmp_path, server.url, up, postgres_server, s3_env)
    finally:
        server.stop()


def test_kill_9_on_postgresql_and_s3_loses_nothing(world: PgWorld) -> None:
    from wandb_mirror.cli import main

    # calibration: how often a first pass reaches each fault point (in this process, on its own mirror)
    world.new_mirror("calib")
    faults.configure(count=True)
    try:
        assert main(["sync", "--config", str(world.config("calib")), "--once", "-q"]) == 0
        counts = faults.counts()
    finally:
        faults.configure(None)
    assert counts.get("catalog.commit", 0) > 20, counts
    rng = random.Random(SEED)
    done = []
    for k, command in enumerate(("sync", "run")):
        name = f"pgkill{k}"
        world.new_mirror(name)
        point, n = moments({p: c for p, c in counts.items() if p.startswith("catalog.")}, rng)
        p = world.kill(name, point, n, command)
        assert p.returncode == -signal.SIGKILL, (point, n, counts, p.returncode, p.stdout[-500:], p.stderr[-2000:])
        # the restart completes the pass; a daemon cycle delivers the events
        assert main(["sync", "--config", str(world.config(name)), "--once", "-q"]) == 0, (point, n)
        assert main(["run", "--config", str(world.config(name)), "--once", "--no-watch"]) == 0, (point, n)
        world.check(name)
        done.append(f"{command} {point}#{n}")
    assert len(set(done)) == 2, done
