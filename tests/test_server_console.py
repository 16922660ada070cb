"""`run.console_logs()` and `run.console_logs(last=N)` through the official client."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY, PROJECT
from org_fixture import CONSOLE, org_fixture_doc, seed_org_store

from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store


@pytest.fixture(scope="module")
def org_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from wandb_mirror.server import start_server

    handle = start_server(seed_org_store(tmp_path_factory.mktemp("org") / "store"), read_only=True)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def api(org_server: Any, make_wandb_api: Any) -> Any:
    return make_wandb_api(org_server.url)


def test_console_logs_whole_and_tail(api: Any) -> None:
    lines = list(api.run(f"{ENTITY}/{PROJECT}/r01").console_logs())
    assert [ln.content for ln in lines] == [c["line"] for c in CONSOLE]
    assert [ln.number for ln in lines] == [0, 1, 2]
    assert [ln.level for ln in lines] == ["", "error", ""]
    assert lines[0].timestamp == datetime(2024, 3, 1, 0, 0, 1, 250000, tzinfo=timezone.utc)
    tail = list(api.run(f"{ENTITY}/{PROJECT}/r01").console_logs(last=2))
    assert [ln.number for ln in tail] == [1, 2]


def test_console_logs_of_a_running_run_page_through(api: Any, org_server: Any) -> None:
    org_server.reset_log()
    lines = list(api.run(f"{ENTITY}/{PROJECT}/r04").console_logs(per_page=1000))
    assert [ln.number for ln in lines] == list(range(2500))
    pages = [e for e in org_server.request_log() if e["operation"] == "RunConsoleLogPage"]
    assert len(pages) == 3
    assert [ln.number for ln in api.run(f"{ENTITY}/{PROJECT}/r04").console_logs(last=5)] == list(range(2495, 2500))
    assert list(api.run(f"{ENTITY}/{PROJECT}/r02").console_logs()) == []


def test_console_logs_in_the_seeded_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    try:
        seed(store, org_fixture_doc())
        assert store.catalog.scalar("SELECT count(*) FROM console_lines") == 2503
    finally:
        store.close()
