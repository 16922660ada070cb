"""Run files through the official client: listing, patterns, paging, downloads checked by md5."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ENGINES, ENTITY, PROJECT

PATH = f"{ENTITY}/{PROJECT}"

@pytest.fixture(scope="module", params=ENGINES)
def seeded_server(request: pytest.FixtureRequest, seeded_server: Any) -> Any:
    """The seeded store served from a SQLite catalog, then from a PostgreSQL one (same answers)."""
    return seeded_server if request.param == "sqlite" else request.getfixturevalue("seeded_pg_server")



@pytest.fixture(scope="module")
def api(seeded_server: Any, make_wandb_api: Any) -> Any:
    return make_wandb_api(seeded_server.url)


def b64md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_files_listing_and_download(api: Any, tmp_path: Path) -> None:
    run = api.run(f"{PATH}/r01")
    files = run.files()
    names = [f.name for f in files]
    assert names == sorted(["config.yaml", "wandb-metadata.json", "output.log", "media/images/sample_0.png",
                            "model.bin"])
    assert len(files) == 5
    for f in files:
        f.download(root=str(tmp_path), replace=True)
        local = tmp_path / f.name
        assert local.stat().st_size == f.size
        assert b64md5(local) == f.md5
    assert (tmp_path / "config.yaml").read_text() == "lr: 0.1\nbatch: 32\n"
    assert run.metadata == {"host": "node-a"}


def test_file_by_name_and_mimetype(api: Any) -> None:
    run = api.run(f"{PATH}/r01")
    f = run.file("media/images/sample_0.png")
    assert f.size == 3000 and f.mimetype == "image/png"
    assert f.direct_url and f.url.endswith("/files/acme/vision/r01/media/images/sample_0.png")


def test_files_pattern_names_and_paging(api: Any, seeded_server: Any) -> None:
    run = api.run(f"{PATH}/r02")
    seeded_server.reset_log()
    files = run.files(per_page=7)
    assert len(files) == 30
    assert [f.name for f in files] == [f"logs/part-{i:02d}.txt" for i in range(30)]
    assert sum(1 for e in seeded_server.request_log() if e["operation"] == "RunFiles") == 5  # ceil(30/7)
    assert [f.name for f in run.files(pattern="logs/part-1_.txt")] == [f"logs/part-1{i}.txt" for i in range(10)]
    assert [f.name for f in api.run(f"{PATH}/r01").files(pattern="%.json")] == ["wandb-metadata.json"]
    assert [f.name for f in run.files(names=["logs/part-03.txt", "nope"])] == ["logs/part-03.txt"]


def test_direct_url_needs_no_auth_and_streams(api: Any) -> None:
    f = api.run(f"{PATH}/r01").file("model.bin")
    r = requests.get(f.direct_url, timeout=30)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == 1_500_000 == len(r.content)
    assert base64.b64encode(hashlib.md5(r.content).digest()).decode() == f.md5
    head = requests.head(f.direct_url, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == "1500000"


def test_missing_file_is_404(seeded_server: Any) -> None:
    r = requests.get(f"{seeded_server.url}/files/acme/vision/r01/nope.txt", auth=("api", "x" * 40), timeout=30)
    assert r.status_code == 404
