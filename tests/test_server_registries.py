"""Registries through the official client: api.registries()/registry(), collections and versions with
W&B's filters, and a registry artifact fetched by alias, downloaded and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY
from org_fixture import ORG, ORG_ENTITY, org_fixture_doc, seed_org_store

DOC = org_fixture_doc()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, make_wandb_api: Any) -> Any:
    from wandb_mirror.server import start_server

    handle = start_server(seed_org_store(tmp_path_factory.mktemp("reg") / "store"), read_only=True)
    import wandb

    make_wandb_api(handle.url)  # a fresh cache dir
    yield wandb.Api(api_key="x" * 40, overrides={"base_url": handle.url, "entity": ENTITY}, timeout=60)
    handle.stop()


def test_registries_as_the_fixture_declares(api: Any) -> None:
    regs = {r.name: r for r in api.registries()}
    assert set(regs) == {r["name"] for r in DOC["registries"]}
    model = regs["model"]
    assert model.full_name == "wandb-registry-model" and model.organization == ORG
    assert model.description == "production models" and model.visibility == "organization"
    assert sorted(model.artifact_types) == ["dataset", "model"] and not model.allow_all_artifact_types
    assert regs["datasets"].visibility == "restricted" and regs["datasets"].allow_all_artifact_types
    assert [r.name for r in api.registries(filter={"name": {"$regex": "mod"}})] == ["model"]
    assert [r.name for r in api.registries(filter={"name": "datasets"})] == ["datasets"]  # prefixed by the client
    one = api.registry("model")
    assert (one.name, one.description, one.entity) == ("model", "production models", ORG_ENTITY)
    with pytest.raises(ValueError):
        api.registry("nope")


def test_collections_with_filters(api: Any) -> None:
    colls = {c.name: c for c in api.registries().collections()}
    assert set(colls) == {"yolo-detector", "cnn-classifier"}
    assert colls["yolo-detector"].type == "dataset" and colls["yolo-detector"].tags == ["vision"]
    assert colls["yolo-detector"].description == "detector"
    assert [c.name for c in api.registries().collections(filter={"name": {"$regex": "yolo"}})] == ["yolo-detector"]
    assert [c.name for c in api.registries().collections(filter={"tag": "vision"})] == ["yolo-detector"]
    assert [c.name for c in api.registries(filter={"name": "datasets"}).collections()] == []
    assert sorted(c.name for c in api.registry("model").collections()) == ["cnn-classifier", "yolo-detector"]


def test_versions_with_filters(api: Any) -> None:
    got = {(a.name, tuple(sorted(a.aliases))) for a in api.registries().versions()}
    assert got == {("yolo-detector:v0", ("staging",)), ("yolo-detector:v1", ("latest", "production")),
                   ("cnn-classifier:v0", ("candidate", "latest"))}
    assert [a.name for a in api.registries().versions(filter={"alias": "production"})] == ["yolo-detector:v1"]
    assert [a.name for a in api.registries().versions(filter={"metadata.rows": 2})] == ["yolo-detector:v0"]
    per_coll = api.registries().collections(filter={"name": "yolo-detector"}).versions()
    assert sorted(a.version for a in per_coll) == ["v0", "v1"]


def test_registry_artifact_by_alias_downloads_and_verifies(api: Any, tmp_path: Path) -> None:
    art = api.artifact("wandb-registry-model/yolo-detector:production")
    assert (art.version, art.source_name, art.type) == ("v1", "mnist:v1", "dataset")
    assert set(art.aliases) == {"latest", "production"}
    root = Path(art.download(str(tmp_path / "prod")))
    art.verify(str(root))
    assert (root / "a.txt").read_text() == "hello again" and (root / "c.bin").stat().st_size == 70_000
    assert api.artifact(f"{ORG}/wandb-registry-model/yolo-detector:staging").source_name == "mnist:v0"
    # a link is the source version itself: same id, same bytes
    assert api.artifact("wandb-registry-model/yolo-detector:v0").id == api.artifact(f"{ENTITY}/vision/mnist:v0").id
    assert api.artifact_exists("wandb-registry-model/yolo-detector:gone") is False


def test_registry_collection_lists_link_versions(tmp_path: Path, start_mirror_server: Any, make_wandb_api: Any) -> None:
    """A link's version is its own in the registry collection, not the linked version's."""
    from wandb_mirror.fixtures import seed
    from wandb_mirror.store import Store

    doc = org_fixture_doc()
    doc["registries"][1]["collections"] = [{"name": "swapped", "type": "dataset", "versions": [
        {"artifact": f"{ENTITY}/vision/mnist:v1"}, {"artifact": f"{ENTITY}/vision/mnist:v0"}]}]
    with Store(tmp_path / "s") as store:
        seed(store, doc)
    api = make_wandb_api(start_mirror_server(tmp_path / "s", read_only=True).url)
    coll = api.artifact_collection("dataset", f"{ORG_ENTITY}/wandb-registry-datasets/swapped")
    got = {a.name: a.source_name for a in coll.artifacts()}
    assert got == {"swapped:v0": "mnist:v1", "swapped:v1": "mnist:v0"}
