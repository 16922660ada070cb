"""Artifacts through the official client: by name/alias, download + verify, versions, collections, lineage."""

from __future__ import annotations

from pathlib import Path
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


def test_artifact_download_and_verify(api: Any, tmp_path: Path) -> None:
    art = api.artifact(f"{PATH}/mnist:v0")
    root = Path(art.download(str(tmp_path / "v0")))
    art.verify(str(root))
    assert (root / "a.txt").read_text() == "hello"
    assert (root / "sub" / "b.txt").read_text() == "bee"
    assert art.type == "dataset" and art.version == "v0" and art.metadata == {"rows": 2}


def test_artifact_by_alias_latest_and_xxh128(api: Any, tmp_path: Path) -> None:
    best = api.artifact(f"{PATH}/mnist:best")
    assert best.version == "v1"
    assert set(best.aliases) >= {"best", "latest"}
    assert api.artifact(f"{PATH}/mnist:latest").id == best.id
    root = Path(best.download(str(tmp_path / "v1")))
    best.verify(str(root))
    assert (root / "c.bin").stat().st_size == 70_000
    model = api.artifact(f"{PATH}/cnn:v0")
    mroot = model.download(str(tmp_path / "cnn"))
    model.verify(mroot)
    assert api.artifact_exists(f"{PATH}/mnist:v9") is False


def test_artifact_digest_matches_manifest(api: Any) -> None:
    from wandb_mirror.digests import manifest_digest

    art = api.artifact(f"{PATH}/mnist:v1")
    served = art.digest
    entries = {path: e.digest for path, e in art.manifest.entries.items()}
    assert manifest_digest(entries) == served


def test_artifact_files(api: Any) -> None:
    art = api.artifact(f"{PATH}/mnist:v1")
    files = art.files()
    assert len(files) == 3
    assert sorted(f.name for f in files) == ["a.txt", "c.bin", "sub/b.txt"]


def test_artifact_versions_and_collections(api: Any) -> None:
    versions = api.artifacts("dataset", f"{PATH}/mnist")
    assert len(versions) == 2
    assert sorted(v.version for v in versions) == ["v0", "v1"]
    collections = api.artifact_collections(PATH, "dataset")
    assert [c.name for c in collections] == ["mnist"]
    coll = api.artifact_collection("dataset", f"{PATH}/mnist")
    assert coll.name == "mnist" and coll.description == "digits"
    assert sorted(t.name for t in api.artifact_types(PATH)) == ["dataset", "model"]


def test_run_artifacts_and_lineage(api: Any) -> None:
    r01 = api.run(f"{PATH}/r01")
    logged = list(r01.logged_artifacts())
    assert sorted(a.version for a in logged) == ["v0", "v1"]
    r02 = api.run(f"{PATH}/r02")
    used = list(r02.used_artifacts())
    assert [(a.name, a.version) for a in used] == [("mnist:v1", "v1")]
    art = api.artifact(f"{PATH}/mnist:v1")
    assert [r.id for r in art.used_by()] == ["r02"]
    assert art.logged_by().id == "r01"


def test_artifact_fallback_download_path(api: Any, seeded_server: Any) -> None:
    """`{base}/artifactsV2/...` is where the official client falls back when a directUrl fails."""
    import requests

    files = {f.name: f for f in api.artifact(f"{PATH}/mnist:v0").files()}
    url = files["sub/b.txt"].url
    assert "/artifactsV2/" in url
    assert requests.get(url, auth=("api", "x" * 40), timeout=30).text == "bee"
    assert requests.get(files["a.txt"].direct_url, timeout=30).text == "hello"
