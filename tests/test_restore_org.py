"""`restore` of the organization side: registries, their collections, links with aliases and
automations re-created on a writable `serve`, read back through the official client the same as from
the mirror; what the API cannot re-create is said, one line per kind; a second restore writes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY
from org_fixture import ORG, ORG_ENTITY, org_fixture_doc
from restore_support import sync_mirror

from wandb_mirror.cli import main
from wandb_mirror.fixtures import seed
from wandb_mirror.restore.org_target import READ_OPERATIONS
from wandb_mirror.store import Store

KEY = "o" * 40


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mirror (one sync pass) of the organization fixture served as upstream."""
    from wandb_mirror.server import start_server

    base = tmp_path_factory.mktemp("orgrestore")
    doc = org_fixture_doc()
    for run in doc["projects"][0]["runs"]:
        run.pop("console", None)  # restoring console lines is tested in test_restore.py; here it would only cost
    with Store(base / "up") as st:
        seed(st, doc)
    up = start_server(base / "up", read_only=True)
    try:
        return sync_mirror(up.url, base / "mirror", KEY)
    finally:
        up.stop()


def _target_doc(slack: bool) -> dict[str, Any]:
    """An empty organization on the target; its webhook made by hand (integrations are not restored)."""
    integrations = [{"kind": "webhook", "name": "deploy-hook", "url": "https://ci.example.com/hook", "entity": ENTITY}]
    if slack:
        integrations.append({"kind": "slack", "team": "acme-slack", "channel": "#ml-alerts", "entity": ENTITY})
    return {"viewer": {"username": "ada", "entity": ENTITY}, "projects": [],
            "organization": {"name": ORG, "entity": ORG_ENTITY, "teams": {ENTITY: []}}, "integrations": integrations}


def _view(api: Any) -> dict[str, Any]:
    """What a user reads of registries and automations through the official client."""
    return {
        "registries": sorted((r.name, r.description, r.visibility, sorted(r.artifact_types), r.allow_all_artifact_types)
                             for r in api.registries(organization=ORG)),
        "collections": sorted((c.name, c.type, c.tags, c.description) for c in api.registries(organization=ORG).collections()),
        "versions": sorted((a.name, sorted(a.aliases), a.source_name, a.digest)
                           for a in api.registries(organization=ORG).versions()),
        "production": api.artifact(f"{ORG}/wandb-registry-model/yolo-detector:production").source_name,
        "automations": sorted((a.name, a.enabled, a.description, a.scope.name, type(a.scope).__name__,
                               a.event.event_type.value, a.event.filter.model_dump_json() if a.event.filter else None,
                               type(a.action).__name__, getattr(a.action, "request_payload", None),
                               getattr(a.action, "title", None))
                              for a in api.automations(entity=ENTITY)),
    }


def test_restore_recreates_registries_links_and_automations(mirror: Path, tmp_path: Path, start_mirror_server: Any,
                                                            make_wandb_api: Any, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    with Store(tmp_path / "target") as st:
        seed(st, _target_doc(slack=False))
    target = start_mirror_server(tmp_path / "target", writable=True)
    args = ["restore", "--store", str(mirror), "--to", target.url, "--journal", str(tmp_path / "journal.jsonl")]

    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "organization side: 2 registries, 2 collections, 3 links, 2 automations" in plan
    assert "not restored: 2 integrations: a Slack integration is authorized in the browser" in plan
    assert "not restored: 3 team members" in plan
    assert target.request_log() == []

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "organization side: 2 registries, 3 links, 1 collection descriptions and tags, 1 automations written" in out
    assert ("not restored: 1 automations whose integration does not exist on the target (create it there, then "
            f"restore again): {ENTITY}/notify-new (Slack channel '#ml-alerts')") in out
    assert "not restored: 1 registry collections with no restorable version" not in out  # every collection had links

    # the Slack integration is made on the target by hand; restoring again re-creates the automation that uses it
    conn = sqlite3.connect(tmp_path / "target" / "catalog.db")
    with conn:
        conn.execute("INSERT INTO integrations (id, entity, kind, team_name, channel_name, created_at) VALUES "
                     "('SW50ZWdyYXRpb246OTk=', ?, 'SlackIntegration', 'acme-slack', '#ml-alerts', '2024-01-01T00:00:00')",
                     [ENTITY])
    conn.close()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 registries, 0 links, 0 collection descriptions and tags, 1 automations written" in out

    source = make_wandb_api(start_mirror_server(mirror, read_only=True).url)
    restored = make_wandb_api(target.url)
    want, got = _view(source), _view(restored)
    assert got == want
    assert len(want["versions"]) == 3 and len(want["automations"]) == 2 and want["production"] == "mnist:v1"

    # a third restore finds everything done: no write is sent
    target.reset_log()
    assert main(args) == 0
    assert [e for e in target.request_log() if e["method"] != "GET" and e["operation"] not in READ_OPERATIONS] == []
    assert "0 registries, 0 links, 0 collection descriptions and tags, 0 automations written" in capsys.readouterr().out

    # a restore killed after its writes reached the target but before it journaled them: sent again, they
    # find what they made (the registries and automations are looked up, a link already held is answered)
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(x for x in journal.read_text().splitlines(keepends=True) if '"org|' not in x))
    target.reset_log()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 registries, 3 links, 1 collection descriptions and tags, 0 automations written" in out
    assert "not restored: 2 registries already on the target" in out
    assert "not restored: 2 automations already on the target" in out
    assert {e["operation"] for e in target.request_log()} & {"UpsertRegistry", "CreateAutomation"} == set()
    assert _view(make_wandb_api(target.url)) == want  # no second version, no moved alias, no duplicate


def test_restore_into_a_server_without_organization_says_what_it_left(mirror: Path, tmp_path: Path,
                                                                       start_mirror_server: Any,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    Store(tmp_path / "target").close()  # an empty server: no organization, no integration
    target = start_mirror_server(tmp_path / "target", writable=True)
    args = ["restore", "--store", str(mirror), "--to", target.url, "--journal", str(tmp_path / "j.jsonl"),
            "--project", "nlp"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{ENTITY}/nlp -> {ENTITY}/nlp: 2 runs" in out  # the projects are restored regardless
    assert "organization side: 0 registries, 0 links, 0 collection descriptions and tags, 0 automations" in out
    assert f"not restored: 2 registries (the target has no organization for {ENTITY}" in out
    assert "not restored: 2 automations whose" in out
    assert main([*args, "--organization", "elsewhere"]) == 0
    assert "not restored: 2 registries (the target has no organization 'elsewhere'" in capsys.readouterr().out
    writes = [e["operation"] for e in target.request_log() if e["operation"] in
              ("UpsertRegistry", "LinkArtifact", "CreateAutomation")]
    assert writes == []
