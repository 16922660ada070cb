"""The built-in demo workspace as upstream: what a first pass and an unchanged pass cost."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from wandb_mirror.config import minimal_config
from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store
from wandb_mirror.sync import SyncEngine, make_client


def test_demo_upstream_request_counts(tmp_path: Path, start_mirror_server, monkeypatch: pytest.MonkeyPatch) -> None:
    up = Store(tmp_path / "up")
    try:
        seed(up, demo_fixture())
        # registries are projects of the organization's entity, mirrored by their own unit
        projects = up.catalog.query("SELECT pk FROM projects WHERE name NOT LIKE 'wandb-registry-%'")
        runs = up.catalog.query("SELECT last_step, state FROM runs")
        n_files = up.catalog.scalar("SELECT COUNT(*) FROM files")
        n_types = up.catalog.scalar("SELECT COUNT(*) FROM artifact_types WHERE project_pk IN "
                                    f"({','.join(str(p['pk']) for p in projects)})")
        n_versions = up.catalog.scalar("SELECT COUNT(*) FROM artifacts WHERE state = 'COMMITTED'")
        n_art_objects = up.catalog.scalar("SELECT COUNT(DISTINCT md5) FROM artifact_files WHERE md5 IS NOT NULL")
    finally:
        up.close()
    server = start_mirror_server(tmp_path / "up", read_only=True)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = minimal_config(server.url, tmp_path / "mirror")
    store = Store(tmp_path / "mirror")
    client = make_client(cfg)
    try:
        with store.lock("test"):
            engine = SyncEngine(cfg, store, client)
            first = engine.run_pass()
            ops1 = Counter(e["operation"] for e in server.request_log() if e["operation"])
            gets1 = sum(1 for e in server.request_log() if not e["operation"])
            server.reset_log()
            second = engine.run_pass()
            ops2 = Counter(e["operation"] for e in server.request_log())
    finally:
        client.close()
        store.close()
    assert first.status == "ok" and second.status == "ok", first.errors + second.errors
    n_runs, n_projects = len(runs), len(projects)
    # first pass: per run one RunFiles, one RunFullHistory (events), the run's logged and used artifacts,
    # and per run with history one RunParquetHistory: a finished run's history is one exported file,
    # a running one's (not exported) one HistoryPage per 1000 steps; no per-run Run query
    for op in ("RunFiles", "RunFullHistory", "RunOutputArtifacts", "RunInputArtifacts"):
        assert ops1[op] == n_runs, op
    live = [r for r in runs if r["last_step"] >= 0 and r["state"] not in ("finished", "crashed", "failed", "killed")]
    exported = sum(1 for r in runs if r["last_step"] >= 0) - len(live)
    assert ops1["RunParquetHistory"] == exported + len(live)
    assert ops1["HistoryPage"] == sum(math.ceil((r["last_step"] + 1) / 1000) for r in live)
    assert ops1["Run"] == 0 and ops1["Runs"] == n_projects
    # GETs: run files (identical bytes fetched once), one manifest per version, each distinct artifact
    # file once, one history export per finished run
    assert gets1 <= n_files + n_versions + n_art_objects + exported
    assert first.stats["artifacts"] == n_versions
    # an unchanged pass: a constant per project, and the client's features are asked once per client; the
    # organization side: a constant (the org, members, integrations, automations, registries, collections,
    # links) and one console line count per unfinished run
    unfinished = sum(1 for r in runs if r["state"] not in ("finished", "crashed", "failed", "killed"))
    org = {"FetchOrgInfoFromEntity": 1, "FetchOrganization": 1, "TeamMembers": 1, "IntegrationsByEntity": 1,
           "GetEntityAutomations": 1, "FetchRegistries": 1, "RegistryCollections": 1, "RegistryLinks": 1,
           "RunConsoleLogCount": unfinished}
    assert ops2 == Counter({"Viewer": 1, "GetProjects": 1, "Runs": n_projects, "ProjectArtifactTypes": n_projects,
                            "ArtifactTypeArtifactCollections": n_types, "GetSweeps": n_projects,
                            "ProjectViews": n_projects, **org})
    assert second.requests == 2 + 4 * n_projects + n_types + sum(org.values())
