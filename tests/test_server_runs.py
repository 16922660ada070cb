"""The official client (wandb 0.31.0) reading runs, projects, sweeps and reports from `serve`."""

from __future__ import annotations

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


def ids_of(runs: Any) -> list[str]:
    return [r.id for r in runs]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"state": "finished"}, {"r01", "r02", "r06"}),
        ({"config.batch": {"$eq": 32}}, {"r01", "r03"}),
        ({"state": {"$ne": "finished"}}, {"r03", "r04", "r05"}),
        ({"config.lr": {"$gt": 0.02}}, {"r01", "r04", "r05"}),
        ({"config.lr.value": {"$gte": 0.05}}, {"r01", "r04", "r05"}),
        ({"summary_metrics.loss": {"$lt": 0.25}}, {"r02", "r04"}),
        ({"summary_metrics.loss": {"$lte": 0.25}}, {"r02", "r04", "r06"}),
        ({"tags": {"$in": ["resnet"]}}, {"r04", "r06"}),
        ({"name": {"$in": ["r01", "r05"]}}, {"r01", "r05"}),
        ({"group": {"$nin": ["g1"]}}, {"r03", "r04", "r05"}),
        ({"summary_metrics.loss": {"$exists": False}}, {"r05"}),
        ({"group": {"$exists": True}}, {"r01", "r02", "r03", "r04", "r06"}),
        ({"displayName": {"$regex": "^(baseline|resnet)"}}, {"r01", "r04"}),
        ({"$and": [{"config.optimizer.name": "adam"}, {"config.batch": {"$lt": 100}}]}, {"r01", "r03"}),
        ({"$or": [{"jobType": "eval"}, {"host": "node-c"}]}, {"r03", "r04"}),
        ({"$nor": [{"state": "finished"}, {"state": "running"}]}, {"r03", "r05"}),
        ({"tags": "baseline"}, {"r01", "r04"}),
        ({"$or": [{"tags": None}, {"tags": {"$ne": "cnn"}}]}, {"r03", "r04", "r05", "r06"}),
        ({"display_name": "odd one"}, {"r05"}),
        ({"$and": [{"sweep": "sw1"}]}, {"r02", "r03", "r04", "r06"}),
        ({"config.optimizer.value.name": "sgd"}, {"r02", "r06"}),
        ({"summary_metrics.acc": {"$gt": 0.8, "$lt": 0.9}}, {"r02"}),
    ],
)
def test_runs_filters(api: Any, filters: dict[str, Any], expected: set[str]) -> None:
    runs = api.runs(PATH, filters=filters)
    assert set(ids_of(runs)) == expected
    assert len(runs) == len(expected)  # runCount(filters) agrees with the listing


def test_runs_filter_on_dates_and_username(api: Any) -> None:
    all_runs = list(api.runs(PATH))
    third = all_runs[2]
    later = api.runs(PATH, filters={"createdAt": {"$gte": third.created_at}})
    assert ids_of(later) == ["r03", "r04", "r05", "r06"]
    before = api.runs(PATH, filters={"created_at": {"$lt": third.created_at}})
    assert ids_of(before) == ["r01", "r02"]
    user = all_runs[0].user.username
    assert len(api.runs(PATH, filters={"username": user})) == 6


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("+created_at", ["r01", "r02", "r03", "r04", "r05", "r06"]),
        ("-created_at", ["r06", "r05", "r04", "r03", "r02", "r01"]),
        ("+summary_metrics.loss", ["r04", "r02", "r06", "r01", "r03", "r05"]),  # missing sorts last
        ("-summary_metrics.loss", ["r03", "r01", "r06", "r02", "r04", "r05"]),  # ... in both directions
        ("+config.batch.value", ["r05", "r06", "r01", "r03", "r02", "r04"]),
        ("-name", ["r06", "r05", "r04", "r03", "r02", "r01"]),
    ],
)
def test_runs_order(api: Any, order: str, expected: list[str]) -> None:
    assert ids_of(api.runs(PATH, order=order)) == expected


def test_runs_order_ties_and_heartbeat(api: Any) -> None:
    got = ids_of(api.runs(PATH, order="-config.lr.value"))
    assert set(got[:2]) == {"r01", "r05"} and got[2:] == ["r04", "r06", "r02", "r03"]
    by_hb = list(api.runs(PATH, order="-heartbeat_at"))
    beats = [r.heartbeat_at for r in by_hb]
    assert beats == sorted(beats, reverse=True)


def test_runs_paging_and_len(api: Any, seeded_server: Any) -> None:
    api.flush()  # Api.runs caches by path+filters+order
    seeded_server.reset_log()
    runs = api.runs(PATH, per_page=2, order="+created_at")
    assert len(runs) == 6
    assert ids_of(runs) == ["r01", "r02", "r03", "r04", "r05", "r06"]
    pages = [e for e in seeded_server.request_log() if e["operation"] == "Runs"]
    assert len(pages) == 3


def test_run_config_summary_and_metadata(api: Any, seeded_store: Any) -> None:
    run = api.run(f"{PATH}/r01")
    assert run.id == "r01" and run.name == "baseline-a"
    assert run.config == {"lr": 0.1, "batch": 32, "optimizer": {"name": "adam", "beta": 0.9}}
    assert "_wandb" in run.rawconfig
    assert run.summary["loss"] == 0.30 and run.summary["acc"] == 0.80
    assert run.tags == ["baseline", "cnn"]
    assert (run.state, run.group, run.job_type) == ("finished", "g1", "train")
    assert run.lastHistoryStep == 249
    assert run.system_metrics  # events' last values

    from wandb_mirror.store import Store

    store = Store(seeded_store, create=False, readonly=True)
    try:
        row = store.catalog.query_one("SELECT r.storage_id, p.internal_id FROM runs r JOIN projects p "
                                      "ON p.pk = r.project_pk WHERE r.run_id = 'r01'")
    finally:
        store.close()
    assert run.storage_id == row["storage_id"]  # upstream ids are served verbatim
    assert str(run._attrs["projectId"]) == str(row["internal_id"])


def test_lazy_runs_upgrade_to_full(api: Any) -> None:
    runs = api.runs(PATH, filters={"name": "r02"})
    run = runs[0]
    assert run.config["optimizer"] == {"name": "sgd"}
    assert run.summary["loss"] == 0.20


def test_missing_run_and_project(api: Any) -> None:
    with pytest.raises(Exception, match="nope|not found|Could not find"):
        api.run(f"{PATH}/nope")
    with pytest.raises(Exception, match="Could not find project|not found"):
        list(api.runs(f"{ENTITY}/no-such-project"))


def test_projects(api: Any) -> None:
    assert {p.name for p in api.projects(ENTITY)} == {"vision", "nlp"}
    assert {p.name for p in api.projects()} == {"vision", "nlp"}  # the viewer's default entity
    assert [p.name for p in api.projects("team-x")] == ["shared"]
    assert api.default_entity == ENTITY
    assert api.viewer.username == "ada"
    project = api.project(PROJECT, ENTITY)
    assert project.id  # lazy GetProject


def test_sweep_and_best_run(api: Any) -> None:
    sweep = api.sweep(f"{PATH}/sw1")
    assert sweep.config["metric"] == {"name": "loss", "goal": "minimize"}
    assert {r.id for r in sweep.runs} == {"r02", "r03", "r04", "r06"}
    assert sweep.best_run().id == "r04"  # lowest summary loss, chosen server-side
    assert [s.name for s in api.project(PROJECT, ENTITY).sweeps()] == ["sw1"]


def test_reports(api: Any) -> None:
    reports = list(api.reports(PATH))
    assert {r.name for r in reports} == {"weekly", "final"}
    weekly = next(r for r in reports if r.name == "weekly")
    assert weekly.spec == {"blocks": [1, 2]}
