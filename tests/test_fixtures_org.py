"""The organization sections of the fixture format: validated with paths, and the demo carries them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.fixtures import FixtureError, parse, seed
from wandb_mirror.store import Store

DOC: dict[str, Any] = {
    "viewer": {"username": "ada", "entity": "acme"},
    "projects": [{"name": "p", "runs": [{"id": "r1", "console": ["hello", {"line": "oops", "level": "error"}]}],
                  "artifacts": [{"name": "m", "type": "model", "versions": [{"files": [{"path": "w", "text": "1"}]}]}]}],
    "organization": {"name": "org", "teams": {"acme": [{"username": "ada", "role": "admin"}]}},
    "registries": [{"name": "model", "artifact_types": ["model"], "collections": [
        {"name": "c", "type": "model", "versions": [{"artifact": "acme/p/m:v0", "aliases": ["prod"]}]}]}],
    "integrations": [{"kind": "webhook", "name": "hook", "url": "https://example.com/h"}],
    "automations": [{"name": "a", "scope": {"registry_collection": "model/c"}, "event": {"type": "LINK_MODEL"},
                     "action": {"webhook": "hook"}}],
}


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["projects"][0]["runs"][0]["console"][1].update(level="warn"), "projects[0].runs[0].console[1].level"),
    (lambda d: d["organization"]["teams"]["acme"][0].update(role="owner"), "organization.teams.acme[0].role"),
    (lambda d: d["registries"][0]["collections"][0]["versions"][0].update(artifact="acme/p/m:v7"),
     "registries[0].collections[0].versions[0].artifact"),
    (lambda d: d["registries"][0]["collections"][0].update(type="dataset"), "registries[0].collections[0].type"),
    (lambda d: d["registries"][0]["collections"][0]["versions"][0].update(aliases=["latest"]),
     "registries[0].collections[0].versions[0].aliases[0]"),
    (lambda d: d["integrations"][0].update(secret="s3cr3t"), "integrations[0].secret"),
    (lambda d: d["integrations"][0].update(url="ftp://x"), "integrations[0].url"),
    (lambda d: d["automations"][0].update(scope={"project": "nope"}), "automations[0].scope.project"),
    (lambda d: d["automations"][0]["action"].update(webhook="other"), "automations[0].action.webhook"),
    (lambda d: d["automations"][0]["event"].update(type="EXPLODE"), "automations[0].event.type"),
])
def test_bad_org_sections_name_the_path(mutate: Any, path: str) -> None:
    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(FixtureError) as e:
        parse(doc)
    assert e.value.path == path


def test_org_sections_seed(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        seed(store, copy.deepcopy(DOC))
        cat = store.catalog
        assert cat.query("SELECT line, level FROM console_lines ORDER BY number") == [
            {"line": "hello", "level": ""}, {"line": "oops", "level": "error"}]
        assert cat.scalar("SELECT aliases FROM artifact_links") == '["latest", "prod"]'
        assert cat.scalar("SELECT name FROM projects WHERE entity = 'org'") == "wandb-registry-model"
        assert cat.scalar("SELECT count(*) FROM automations") == 1


def test_demo_has_the_organization_side(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store:
        seed(store, demo_fixture())
        cat = store.catalog
        assert cat.scalar("SELECT count(*) FROM team_members") == 3
        assert cat.scalar("SELECT count(*) FROM artifact_collections WHERE kind = 'PORTFOLIO'") == 2
        assert cat.scalar("SELECT count(*) FROM artifact_links") >= 3
        assert cat.scalar("SELECT count(*) FROM automations") == 2
        assert cat.scalar("SELECT count(*) FROM integrations WHERE kind = 'GenericWebhookIntegration'") == 1
        runs_with_console = cat.query("SELECT DISTINCT r.state FROM console_lines c JOIN runs r ON r.pk = c.run_pk")
        assert "running" in {r["state"] for r in runs_with_console}
        assert cat.scalar("SELECT count(DISTINCT run_pk) FROM console_lines") >= 3
