"""History and system metrics through the official client: sampled, by keys, and full scans."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from conftest import ENGINES, ENTITY, PROJECT

PATH = f"{ENTITY}/{PROJECT}"

@pytest.fixture(scope="module", params=ENGINES)
def seeded_server(request: pytest.FixtureRequest, seeded_server: Any) -> Any:
    """The seeded store served from a SQLite catalog, then from a PostgreSQL one (same answers)."""
    return seeded_server if request.param == "sqlite" else request.getfixturevalue("seeded_pg_server")



@pytest.fixture(scope="module")
def api(seeded_server: Any, make_wandb_api: Any) -> Any:
    return make_wandb_api(seeded_server.url)


@pytest.fixture(scope="module")
def stored_rows(seeded_store: Any) -> dict[str, list[dict[str, Any]]]:
    """Every stored history row per run, decoded: what a full scan must return."""
    from wandb_mirror.store import Store

    store = Store(seeded_store, create=False, readonly=True)
    try:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in store.catalog.query("SELECT pk, run_id FROM runs ORDER BY run_id"):
            rows = [json.loads(t) for _, t in store.history.texts(r["pk"])]
            if rows:
                out[r["run_id"]] = rows
        return out
    finally:
        store.close()


def test_history_sampled_keeps_first_and_last(api: Any, stored_rows: Any) -> None:
    run = api.run(f"{PATH}/r01")
    rows = run.history(samples=25, pandas=False)
    assert len(rows) == 25
    steps = [r["_step"] for r in rows]
    assert steps[0] == 0 and steps[-1] == 249 and steps == sorted(set(steps))
    assert rows[0]["loss"] == stored_rows["r01"][0]["loss"]
    everything = run.history(samples=1000, pandas=False)
    assert [r["_step"] for r in everything] == list(range(250))


def test_history_deterministic(api: Any) -> None:
    run = api.run(f"{PATH}/r01")
    assert run.history(samples=40, pandas=False) == run.history(samples=40, pandas=False)


def test_history_with_keys(api: Any, stored_rows: Any) -> None:
    run = api.run(f"{PATH}/r01")
    rows = run.history(keys=["loss"], samples=10, pandas=False)
    assert len(rows) == 10
    assert all(set(r) == {"_step", "loss"} for r in rows)
    assert rows[0]["_step"] == 0 and rows[-1]["_step"] == 249
    # only rows holding every key: r06 has `nested` at two steps only
    nested = api.run(f"{PATH}/r06").history(keys=["nested"], pandas=False)
    assert [r["_step"] for r in nested] == [0, 2]


def test_history_system_stream(api: Any) -> None:
    run = api.run(f"{PATH}/r01")
    events = run.history(stream="system", pandas=False, samples=10)
    assert len(events) == 10
    assert all(any(k.startswith("system.") for k in e) for e in events)
    assert len(run.history(stream="events", pandas=False)) == 30


def test_scan_history_every_row_exactly(api: Any, stored_rows: Any, seeded_server: Any) -> None:
    run = api.run(f"{PATH}/r01")
    seeded_server.reset_log()
    rows = list(run.scan_history(page_size=100))
    assert [r["_step"] for r in rows] == list(range(250))
    for got, want in zip(rows, stored_rows["r01"]):
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k])
    log = seeded_server.request_log()
    # a finished run is exported: one file, no HistoryPage (test_server_parquet.py pages the same rows)
    assert [e["operation"] for e in log].count("HistoryPage") == 0
    assert sum(e["path"].startswith("/_mirror/history/") for e in log) <= 1  # 0: the client's cache had it


def test_scan_history_keys_and_bounds(api: Any, stored_rows: Any) -> None:
    run = api.run(f"{PATH}/r01")
    rows = list(run.scan_history(keys=["loss"], page_size=64, min_step=10, max_step=200))
    assert [r["_step"] for r in rows] == list(range(10, 200))
    assert all(set(r) == {"_step", "loss"} for r in rows)
    want = {r["_step"]: r["loss"] for r in stored_rows["r01"]}
    assert all(r["loss"] == pytest.approx(want[r["_step"]]) for r in rows)


def test_scan_history_gaps_and_non_finite(api: Any) -> None:
    run = api.run(f"{PATH}/r06")
    rows = list(run.scan_history(page_size=2))
    assert [r["_step"] for r in rows] == [0, 1, 2, 4]
    assert math.isnan(rows[1]["loss"])
    assert rows[2]["nested"] == {"a": 3} or rows[2].get("nested.a") == 3
    full = run.history(pandas=False)
    assert math.isinf(full[2]["acc"])
