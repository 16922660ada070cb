"""Shared fixtures: a store seeded from a small fixture document and the server over it.

- `server_fixture_doc()`: the fixture document (docs/fixtures.md format) -- the single source of
  truth the server tests assert against.
- `seeded_store` (session): a store seeded once from it; treat it as read-only.
- `seeded_server` (session): `wandb-mirror serve --` (read-only, the default) over `seeded_store` on a free port.
- `writable_store` (function): a private copy of the seeded store, for tests that write.
- `start_mirror_server` (function): factory `(store_path, **options) -> ServerHandle`, stopped at teardown
  (read-only unless `writable=True`).
- `make_wandb_api` (session): factory `(url, api_key="x"*40) -> wandb.Api` with a fresh WANDB_CACHE_DIR.
  The official client starts a wandb-core helper per process; create one Api per module, not per test.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scale_support import pg_url, postgres_server, s3_env, s3_md5_server, s3_server  # noqa: F401 - fixtures for every module

ENTITY = "acme"
PROJECT = "vision"


def server_fixture_doc() -> dict[str, Any]:
    """Small but varied: filters/order need differing configs, summaries, tags, states, groups."""
    nan_rows = [
        {"_step": 0, "loss": 1.0, "acc": 0.1, "nested": {"a": 1}},
        {"_step": 1, "loss": float("nan"), "acc": 0.2},
        {"_step": 2, "loss": 0.5, "acc": float("inf"), "nested": {"a": 3}},
        {"_step": 4, "loss": 0.25, "acc": 0.4},
    ]
    return {
        "viewer": {"username": "ada", "entity": ENTITY, "email": "ada@example.com", "name": "Ada"},
        "entities": [{"name": "team-x", "is_team": True}],
        "projects": [
            {
                "name": PROJECT,
                "description": "vision experiments",
                "created_at": "2024-01-01T00:00:00",
                "sweeps": [{"name": "sw1", "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                            "parameters": {"lr": {"values": [0.01, 0.001, 0.05, 0.02]}}}],
                "runs": [
                    {"id": "r01", "display_name": "baseline-a", "state": "finished",
                     "config": {"lr": 0.1, "batch": 32, "optimizer": {"name": "adam", "beta": 0.9}},
                     "tags": ["baseline", "cnn"], "group": "g1", "job_type": "train", "host": "node-a",
                     "history": {"steps": 250, "metrics": ["loss", "acc"], "seed": 1},
                     "events": {"count": 30, "seed": 2},
                     "summary": {"loss": 0.30, "acc": 0.80},
                     "files": [
                         {"name": "config.yaml", "text": "lr: 0.1\nbatch: 32\n"},
                         {"name": "wandb-metadata.json", "text": "{\"host\": \"node-a\"}"},
                         {"name": "output.log", "text": "epoch 1\nepoch 2\n"},
                         {"name": "media/images/sample_0.png", "size": 3000, "seed": 5},
                         {"name": "model.bin", "size": 1_500_000, "seed": 7},
                     ]},
                    {"id": "r02", "display_name": "sgd-64", "state": "finished", "sweep": "sw1",
                     "config": {"lr": 0.01, "batch": 64, "optimizer": {"name": "sgd"}},
                     "tags": ["cnn"], "group": "g1", "job_type": "train", "host": "node-b",
                     "history": {"steps": 20, "metrics": ["loss"], "seed": 3},
                     "summary": {"loss": 0.20, "acc": 0.85},
                     "files": [{"name": f"logs/part-{i:02d}.txt", "text": f"part {i}\n"} for i in range(30)]},
                    {"id": "r03", "display_name": "tiny-lr", "state": "crashed", "sweep": "sw1",
                     "config": {"lr": 0.001, "batch": 32, "optimizer": {"name": "adam"}},
                     "tags": [], "group": "g2", "job_type": "eval", "host": "node-a",
                     "summary": {"loss": 0.50}},
                    {"id": "r04", "display_name": "resnet-run", "state": "running", "sweep": "sw1",
                     "config": {"lr": 0.05, "batch": 128, "optimizer": {"name": "adam"}},
                     "tags": ["baseline", "resnet"], "group": "g2", "job_type": "train", "host": "node-c",
                     "summary": {"loss": 0.10, "acc": 0.95}},
                    {"id": "r05", "display_name": "odd one", "state": "failed",
                     "config": {"lr": 0.1, "batch": 8}, "summary": {"acc": 0.5}},
                    {"id": "r06", "display_name": "nan-run", "state": "finished", "sweep": "sw1",
                     "config": {"lr": 0.02, "batch": 16, "optimizer": {"name": "sgd"}},
                     "tags": ["resnet"], "group": "g1", "job_type": "train", "host": "node-b",
                     "history": nan_rows, "summary": {"loss": 0.25, "acc": 0.4}},
                ],
                "artifacts": [
                    {"name": "mnist", "type": "dataset", "description": "digits", "tags": ["raw"], "versions": [
                        {"files": [{"path": "a.txt", "text": "hello"}, {"path": "sub/b.txt", "text": "bee"}],
                         "created_by": "r01", "metadata": {"rows": 2}},
                        {"files": [{"path": "a.txt", "text": "hello again"}, {"path": "sub/b.txt", "text": "bee"},
                                   {"path": "c.bin", "size": 70_000, "seed": 11}],
                         "created_by": "r01", "used_by": ["r02"], "aliases": ["best"]},
                    ]},
                    {"name": "cnn", "type": "model", "versions": [
                        {"files": [{"path": "weights.bin", "size": 5000, "seed": 3, "alg": "xxh128"}],
                         "created_by": "r02"},
                    ]},
                ],
                "reports": [
                    {"name": "weekly", "display_name": "Weekly report", "description": "w1",
                     "spec": {"blocks": [1, 2]}, "user": "ada", "created_at": "2024-02-01T00:00:00",
                     "updated_at": "2024-02-02T00:00:00"},
                    {"name": "final", "display_name": "Final", "spec": {"blocks": []}, "user": "ada",
                     "created_at": "2024-03-01T00:00:00", "updated_at": "2024-03-01T00:00:00"},
                ],
            },
            {"name": "nlp", "created_at": "2024-02-01T00:00:00",
             "runs": [{"id": "n1", "config": {"lr": 1}}, {"id": "n2", "config": {"lr": 2}}]},
            {"entity": "team-x", "name": "shared", "runs": [{"id": "t1"}]},
        ],
    }


def free_port() -> int:
    """A loopback port free right now (for settings that refuse 0, such as metrics_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _wandb_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The official client must not touch the user's ~/.config/wandb or caches."""
    base = tmp_path_factory.mktemp("wandb-env")
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("WANDB_DIR", str(base / "dir"))
    os.environ.setdefault("WANDB_CONFIG_DIR", str(base / "config"))
    os.environ.setdefault("WANDB_CACHE_DIR", str(base / "cache"))
    os.environ.setdefault("WANDB_DATA_DIR", str(base / "data"))
    os.environ.pop("WANDB_API_KEY", None)
    os.environ.pop("WANDB_BASE_URL", None)


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wandb_mirror.fixtures import seed
    from wandb_mirror.store import Store

    path = tmp_path_factory.mktemp("seeded") / "store"
    store = Store(path)
    try:
        seed(store, server_fixture_doc())
    finally:
        store.close()
    return path


@pytest.fixture(scope="session")
def seeded_server(seeded_store: Path) -> Iterator[Any]:
    from wandb_mirror.server import start_server

    handle = start_server(seeded_store)  # read-only: the default
    yield handle
    handle.stop()


# the catalog engines a test module can run on: SQLite always, PostgreSQL where its server exists
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def seeded_pg_server(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # noqa: F811
    """The seeded store's fixture document in a PostgreSQL catalog, served read-only (as
    seeded_server serves the SQLite one): the same data, the other engine."""
    pytest.importorskip("psycopg")
    import uuid

    from wandb_mirror.fixtures import seed
    from wandb_mirror.server import start_server
    from wandb_mirror.store import Store
    from wandb_mirror.store.location import StoreLocation

    schema = "seeded_" + uuid.uuid4().hex[:12]
    postgres_server.psql(f"CREATE SCHEMA {schema}")
    url = f"{postgres_server.url}?options=-csearch_path%3D{schema}"
    path = tmp_path_factory.mktemp("seeded-pg") / "store"
    with Store(path, catalog=url) as store:
        seed(store, server_fixture_doc())
    handle = start_server(StoreLocation(path=path, catalog=url))
    yield handle
    handle.stop()


def copy_store(src: Path, dst: Path) -> Path:
    """A private, writable copy of a store (objects are published 0400; the copy must stay deletable)."""
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        if p.is_file():
            p.chmod(0o600)
    return dst


@pytest.fixture
def writable_store(seeded_store: Path, tmp_path: Path) -> Path:
    return copy_store(seeded_store, tmp_path / "store")


@pytest.fixture
def start_mirror_server() -> Iterator[Callable[..., Any]]:
    from wandb_mirror.server import start_server

    handles: list[Any] = []

    def start(store_path: Path, **options: Any) -> Any:
        h = start_server(store_path, **options)
        handles.append(h)
        return h

    yield start
    for h in handles:
        h.stop()


@pytest.fixture(scope="session")
def make_wandb_api(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    import wandb

    counter = iter(range(1_000_000))
    made = [Path(os.environ["WANDB_CACHE_DIR"])]

    def make(url: str, api_key: str = "x" * 40, timeout: int = 60) -> Any:
        # wandb-core reads WANDB_CACHE_DIR once, when the first Api of the process starts it, and
        # caches history exports there by entity_project_run_i whatever the server: an earlier
        # test's files would be read instead of this server's. They go; a test comparing two
        # servers' scans of the same run passes use_cache=False (the second would read the first's).
        for d in made:
            for f in d.glob("*.runhistory.parquet"):
                f.unlink(missing_ok=True)
        cache = tmp_path_factory.mktemp(f"wbcache{next(counter)}")
        made.append(cache)
        os.environ["WANDB_CACHE_DIR"] = str(cache)
        return wandb.Api(api_key=api_key, overrides={"base_url": url}, timeout=timeout)

    return make
