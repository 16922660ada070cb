"""Writable serve takes what the official client writes to registries and automations:
`api.create_registry()`, `Artifact.link()` with aliases, `api.create_automation()`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY, PROJECT, copy_store
from org_fixture import ORG, ORG_ENTITY, seed_org_store


@pytest.fixture(scope="module")
def org_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_org_store(tmp_path_factory.mktemp("regw") / "store")


@pytest.fixture
def api(org_store: Path, tmp_path: Path, start_mirror_server: Any, make_wandb_api: Any) -> Any:
    handle = start_mirror_server(copy_store(org_store, tmp_path / "store"), writable=True)
    return make_wandb_api(handle.url)


def test_official_client_creates_a_registry_links_and_moves_aliases(api: Any) -> None:
    reg = api.create_registry("staging", visibility="restricted", organization=ORG,
                              description="pre-production", artifact_types=["dataset"])
    assert (reg.full_name, reg.visibility, reg.artifact_types) == ("wandb-registry-staging", "restricted", ["dataset"])
    with pytest.raises(ValueError):  # the name is taken now
        api.create_registry("staging", visibility="organization", organization=ORG)
    again = api.registry("staging", organization=ORG)
    assert (again.description, again.allow_all_artifact_types) == ("pre-production", False)

    v0, v1 = api.artifact(f"{ENTITY}/{PROJECT}/mnist:v0"), api.artifact(f"{ENTITY}/{PROJECT}/mnist:v1")
    first = v0.link("wandb-registry-staging/candidates", aliases=["best"])
    assert (first.version, first.source_name) == ("v0", "mnist:v0")
    v1.link("wandb-registry-staging/candidates", aliases=["best"])  # `best` moves to the new member
    again = v0.link("wandb-registry-staging/candidates", aliases=["old"])  # already a member: no new version
    assert again.version == "v0"
    got = {a.version: sorted(a.aliases) for a in api.registries(filter={"name": "staging"}).versions()}
    listed = {a.version for a in api.artifact_collection(
        "dataset", f"{ORG_ENTITY}/wandb-registry-staging/candidates").artifacts()}
    assert listed == {"v0", "v1"}
    assert got == {"v0": ["old"], "v1": ["best", "latest"]}
    assert api.artifact("wandb-registry-staging/candidates:best").source_name == "mnist:v1"
    with pytest.raises(Exception, match="not allowed"):  # `model` is not an allowed type of this registry
        api.artifact(f"{ENTITY}/{PROJECT}/cnn:v0").link("wandb-registry-staging/models")
    assert [c.name for c in api.registry("staging", organization=ORG).collections()] == ["candidates"]


def test_official_client_creates_an_automation(api: Any) -> None:
    from wandb.automations import OnCreateArtifact, SendWebhook

    hook = next(api.webhook_integrations(entity=ENTITY))
    event = OnCreateArtifact(scope=api.artifact_collection("dataset", f"{ENTITY}/{PROJECT}/mnist"))
    made = api.create_automation(event >> SendWebhook.from_integration(hook, payload={"x": 1}), name="on-new",
                                 description="new artifacts")
    assert (made.name, made.description, made.enabled) == ("on-new", "new artifacts", True)
    seen = api.automation(name="on-new", entity=ENTITY)
    assert seen.id == made.id and seen.scope.name == "mnist" and seen.action.integration.id == hook.id
    assert seen.action.request_payload == {"x": 1}
    with pytest.raises(Exception, match="exists"):  # names are unique in an entity: W&B answers 409
        api.create_automation(event >> SendWebhook.from_integration(hook), name="on-new")
