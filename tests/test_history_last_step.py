"""No reader of a mirror serves history rows beyond the run's lastStep (issue 11, item 2).

A pass writes a run's new rows before it moves the run's lastStep, and a crash between the two
leaves them there: in the tail (HistoryPage appends) or in segments (parquet exports). Every
reader kind must stop at lastStep: serve's HistoryPage, RunFullHistory, sampledHistory and
parquetHistory (its files and its liveData), the official client's scan, the plugins' store view
(the export plugin), the restore reader and the history dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests

from wandb_mirror.cli import main
from wandb_mirror.fixtures import seed
from wandb_mirror.history_dataset import build
from wandb_mirror.hooks.store_view import StoreView
from wandb_mirror.store import Store
from wandb_mirror.store.reader import StoreReader

KEY = "k" * 40
LAST = 29
RUNS = ("tail", "segment")  # where the rows beyond lastStep sit


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs at lastStep 29 holding rows 30..39 too: `tail` in its tail, `segment` in a segment."""
    path = tmp_path_factory.mktemp("beyond") / "store"
    doc = {"viewer": {"username": "ada", "entity": "acme", "name": "Ada"},
           "projects": [{"name": "p", "runs": [
               {"id": name, "state": "running", "history": {"steps": LAST + 1, "metrics": ["loss"], "seed": 1}}
               for name in RUNS]}]}
    with Store(path) as s:
        seed(s, doc)
        ppk = s.catalog.project_pk("acme", "p")
        beyond = [(i, {"_step": i, "loss": -1.0}) for i in range(LAST + 1, LAST + 11)]
        s.history.append(s.catalog.run_pk(ppk, "tail"), ((i, json.dumps(r)) for i, r in beyond))
        seg_pk = s.catalog.run_pk(ppk, "segment")
        s.history.compact(seg_pk)
        s.history.put_rows(seg_pk, beyond)
        assert s.history.segments(seg_pk)[-1].last_step == LAST + 10  # the premise: a segment beyond
        for name in RUNS:
            pk = s.catalog.run_pk(ppk, name)
            assert s.catalog.scalar("SELECT last_step FROM runs WHERE pk = ?", [pk]) == LAST
            assert s.history.last_step(pk) == LAST + 10  # what the store holds
    return path


@pytest.fixture(scope="module")
def served(store: Path) -> Any:
    from wandb_mirror.server import start_server

    handle = start_server(store)
    yield handle
    handle.stop()


def _graphql(url: str, run: str, field: str) -> Any:
    q = f'query Q($r: String!) {{ project(name: "p", entityName: "acme") {{ run(name: $r) {{ {field} }} }} }}'
    answer = requests.post(f"{url}/graphql", auth=("api", KEY), timeout=30, json={"query": q, "variables": {"r": run}})
    assert answer.status_code == 200 and "errors" not in answer.json(), answer.text
    return answer.json()["data"]["project"]["run"]


@pytest.mark.parametrize("run", RUNS)
def test_serve_history_queries_stop_at_last_step(served: Any, run: str) -> None:
    page = _graphql(served.url, run, "history(minStep: 0, maxStep: 1000, samples: 1000)")["history"]
    assert max(json.loads(r)["_step"] for r in page) == LAST and len(page) == LAST + 1
    full = _graphql(served.url, run, "history(samples: 1000)")["history"]
    assert max(json.loads(r)["_step"] for r in full) == LAST
    spec = json.dumps({"keys": ["_step", "loss"], "minStep": 0, "maxStep": 1000, "samples": 1000})
    (sampled,) = _graphql(served.url, run, f"sampledHistory(specs: [{json.dumps(spec)}])")["sampledHistory"]
    assert max(r["_step"] for r in sampled) == LAST


@pytest.mark.parametrize("run", RUNS)
def test_parquet_history_files_and_live_data_stop_at_last_step(served: Any, run: str, tmp_path: Path) -> None:
    ph = _graphql(served.url, run, 'parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData }')["parquetHistory"]
    steps = [int(r["_step"]) for r in ph["liveData"]]
    for i, url in enumerate(ph["parquetUrls"]):
        (tmp_path / f"{i}.parquet").write_bytes(requests.get(url, timeout=30).content)
        steps += pq.read_table(tmp_path / f"{i}.parquet").column("_step").to_pylist()
    assert sorted(steps) == list(range(LAST + 1))


@pytest.mark.parametrize("run", RUNS)
def test_official_client_reads_no_row_beyond_last_step(served: Any, make_wandb_api: Any, run: str,
                                                       tmp_path: Path) -> None:
    r = make_wandb_api(served.url, api_key=KEY).run(f"acme/p/{run}")
    assert r.lastHistoryStep == LAST
    assert [row["_step"] for row in r.scan_history(use_cache=False)] == list(range(LAST + 1))
    assert max(row["_step"] for row in r.history(samples=1000, pandas=False)) == LAST
    assert max(row["_step"] for row in r.history(keys=["loss"], samples=1000, pandas=False)) == LAST
    got = r.download_history_exports(tmp_path, require_complete_history=False)
    assert all(max(pq.read_table(p).column("_step").to_pylist()) <= LAST for p in got.paths)


def test_store_readers_stop_at_last_step(store: Path, tmp_path: Path) -> None:
    with Store(store, create=False, readonly=True) as s:
        view, reader = StoreView(s), StoreReader(s)
        ppk = s.catalog.project_pk("acme", "p")
        for run in view.runs():
            assert max(r["_step"] for r in view.history(run)) == LAST, run.run_id
            assert max(r["_step"] for r in view.history(run, keys=["loss"])) == LAST, run.run_id
            assert max(st for st, _ in view.history_rows(run)) == LAST, run.run_id
            assert max(st for st, _ in reader.history(s.catalog.run_pk(ppk, run.run_id))) == LAST, run.run_id
    # the export plugin's datasets and the history dataset
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "export"), "--format", "jsonl"]) == 0
    files = sorted((tmp_path / "export").rglob("history.jsonl"))
    assert len(files) == 2
    for f in files:
        assert max(json.loads(line)["_step"] for line in f.read_text().splitlines()) == LAST, f
    with Store(store, create=False, readonly=True) as s:
        build(s, tmp_path / "dataset")
    for run in RUNS:
        parts = sorted((tmp_path / "dataset").rglob(f"run={run}/*.parquet"))
        steps = [st for p in parts for st in pq.read_table(p).column("_step").to_pylist()]
        assert sorted(steps) == list(range(LAST + 1)), run
