"""Organization metadata through the official client: organization, team members, users,
automations and integrations, as the fixture declares them, and never a secret."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ENTITY
from org_fixture import ORG, ORG_ENTITY, org_fixture_doc, seed_org_store

DOC = org_fixture_doc()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, make_wandb_api: Any) -> Any:
    from wandb_mirror.server import start_server

    handle = start_server(seed_org_store(tmp_path_factory.mktemp("orgmeta") / "store"), read_only=True)
    import wandb

    make_wandb_api(handle.url)
    yield wandb.Api(api_key="x" * 40, overrides={"base_url": handle.url, "entity": ENTITY}, timeout=60)
    handle.stop()


def test_organization_and_team(api: Any) -> None:
    org = api.organization()
    assert (org.name, org.org_entity.name) == (ORG, ORG_ENTITY)
    assert api.organization(ORG).name == ORG
    members = {m.username: m for m in api.team(ENTITY).members}
    declared = {m["username"]: m for m in DOC["organization"]["teams"][ENTITY]}
    assert set(members) == set(declared)
    assert members["ada"].admin and not members["grace"].admin and members["alan"].pending
    assert all(getattr(m, "api_key", None) is None for m in members.values())


def test_users(api: Any) -> None:
    grace = api.user("grace")
    assert (grace.username, grace.email, grace.teams) == ("grace", "grace@example.com", [ENTITY])
    assert grace.api_keys == []
    assert [u.username for u in api.users("ada@")] == ["ada"]
    assert {u.username for u in api.users("a")} >= {"ada", "alan", "grace"}
    assert api.user("nobody-at-all") is None


def test_automations(api: Any) -> None:
    autos = {a.name: a for a in api.automations(entity=ENTITY)}
    assert set(autos) == {a["name"] for a in DOC["automations"]}
    deploy = autos["deploy"]
    assert deploy.enabled and deploy.description == "deploy production"
    assert deploy.scope.name == "yolo-detector" and deploy.event.event_type.value == "ADD_ARTIFACT_ALIAS"
    assert deploy.action.request_payload == {"v": "${artifact_version}"}
    notify = autos["notify-new"]
    assert not notify.enabled and notify.scope.name == "vision" and notify.action.severity.value == "WARN"
    assert api.automation("notify-new", entity=ENTITY).id == notify.id
    with pytest.raises(ValueError):
        api.automation("missing", entity=ENTITY)


def test_integrations(api: Any) -> None:
    kinds = {type(i).__name__ for i in api.integrations(entity=ENTITY)}
    assert kinds == {"WebhookIntegration", "SlackIntegration"}
    [hook] = list(api.webhook_integrations(entity=ENTITY))
    assert (hook.name, hook.url_endpoint) == ("deploy-hook", "https://ci.example.com/hook")
    [slack] = list(api.slack_integrations(entity=ENTITY))
    assert (slack.team_name, slack.channel_name) == ("acme-slack", "#ml-alerts")
