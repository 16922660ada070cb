"""The official client's write examples against a writable server, and the guards: --read-only, --api-key."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ENTITY, PROJECT, copy_store

PATH = f"{ENTITY}/{PROJECT}"
KEY = "k" * 40


@pytest.fixture(scope="module")
def store_path(seeded_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(seeded_store, tmp_path_factory.mktemp("writes") / "store")


@pytest.fixture(scope="module")
def server(store_path: Path) -> Any:
    from wandb_mirror.server import start_server

    handle = start_server(store_path, writable=True)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def api(server: Any, make_wandb_api: Any) -> Any:
    return make_wandb_api(server.url)


def catalog_row(store_path: Path, sql: str, args: list[Any]) -> dict[str, Any] | None:
    from wandb_mirror.store import Store

    store = Store(store_path, create=False, readonly=True)
    try:
        return store.catalog.query_one(sql, args)
    finally:
        store.close()


def fresh_run(api: Any, run_id: str) -> Any:
    api.flush()
    api._runs.clear()  # Api.run caches by path; re-read from the server
    return api.run(f"{PATH}/{run_id}")


def test_summary_update(api: Any, store_path: Path) -> None:
    before = catalog_row(store_path, "SELECT heartbeat_at, updated_at FROM runs WHERE run_id = 'r01'", [])
    run = api.run(f"{PATH}/r01")
    run.summary.update({"best_acc": 0.99})
    again = fresh_run(api, "r01")
    assert again.summary["best_acc"] == 0.99
    assert again.summary["loss"] == 0.30  # the whole summary is sent and kept
    after = catalog_row(store_path, "SELECT heartbeat_at, updated_at FROM runs WHERE run_id = 'r01'", [])
    assert after["heartbeat_at"] > before["heartbeat_at"]  # a mirroring client sees the run as changed
    assert after["updated_at"] != before["updated_at"]


def test_run_update_config_tags_name(api: Any) -> None:
    run = api.run(f"{PATH}/r02")
    run.config["lr"] = 0.5
    run.config["extra"] = {"x": 1}
    run.tags = ["cnn", "promoted"]
    run.name = "renamed"
    run.notes = "checked"
    run.update()
    again = fresh_run(api, "r02")
    assert again.config["lr"] == 0.5 and again.config["extra"] == {"x": 1}
    assert again.config["optimizer"] == {"name": "sgd"}
    assert "_wandb" in again.rawconfig
    assert again.tags == ["cnn", "promoted"]
    assert again.name == "renamed" and again.notes == "checked"
    assert [r.id for r in api.runs(PATH, filters={"tags": "promoted"})] == ["r02"]


def test_upload_and_delete_file(api: Any, tmp_path: Path, server: Any) -> None:
    src = tmp_path / "notes" / "result.txt"
    src.parent.mkdir()
    src.write_bytes(b"uploaded through the official client\n" * 100)
    run = api.run(f"{PATH}/r03")
    server.reset_log()
    f = run.upload_file(str(src), root=str(tmp_path))
    assert f.name == "notes/result.txt"
    ops = [e["operation"] or e["method"] for e in server.request_log()]
    assert "CreateRunFiles" in ops and "PUT" in ops and "MarkRunFilesUploaded" in ops
    run = fresh_run(api, "r03")
    listed = {x.name: x for x in run.files()}
    assert listed["notes/result.txt"].md5 == base64.b64encode(hashlib.md5(src.read_bytes()).digest()).decode()
    listed["notes/result.txt"].download(root=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "notes" / "result.txt").read_bytes() == src.read_bytes()

    listed["notes/result.txt"].delete()
    run = fresh_run(api, "r03")
    assert "notes/result.txt" not in [x.name for x in run.files()]


def test_upload_md5_is_verified(api: Any, server: Any) -> None:
    q = """mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
      createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
        runID uploadHeaders files { name uploadUrl } } }"""
    r = requests.post(f"{server.url}/graphql", json={"query": q, "operationName": "", "variables": {
        "entity": ENTITY, "project": PROJECT, "run": "r04", "files": ["x.txt"]}}, timeout=30)
    url = r.json()["data"]["createRunFiles"]["files"][0]["uploadUrl"]
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    bad = requests.put(url, data=b"payload", headers={"Content-MD5": wrong}, timeout=30)
    assert bad.status_code == 400
    good = requests.put(url, data=b"payload", headers={
        "Content-MD5": base64.b64encode(hashlib.md5(b"payload").digest()).decode()}, timeout=30)
    assert good.status_code == 200
    assert [f.name for f in fresh_run(api, "r04").files()] == ["x.txt"]


def test_artifact_alias_add_remove(api: Any) -> None:
    art = api.artifact(f"{PATH}/mnist:v0")
    art.aliases.append("prod")
    art.save()
    assert api.artifact(f"{PATH}/mnist:prod").version == "v0"
    # an alias names one version: moving `best` from v1 to v0
    art = api.artifact(f"{PATH}/mnist:v0")
    art.aliases.append("best")
    art.save()
    assert api.artifact(f"{PATH}/mnist:best").version == "v0"
    assert "best" not in api.artifact(f"{PATH}/mnist:v1").aliases
    art = api.artifact(f"{PATH}/mnist:v0")
    art.aliases.remove("prod")
    art.save()
    assert not api.artifact_exists(f"{PATH}/mnist:prod")


def test_run_delete(api: Any, store_path: Path) -> None:
    run = api.run(f"{PATH}/r05")
    run.delete()
    api.flush()
    assert "r05" not in [r.id for r in api.runs(PATH)]
    row = catalog_row(store_path, "SELECT tombstoned_at FROM runs WHERE run_id = 'r05'", [])
    assert row["tombstoned_at"]  # a tombstone, not a deleted row


def test_create_run(api: Any) -> None:
    run = api.create_run(project=PROJECT, entity=ENTITY, run_id="made1")
    assert run.id == "made1"
    assert "made1" in [r.id for r in api.runs(PATH, filters={"name": "made1"})]


def test_read_only_refuses_writes(seeded_server: Any, make_wandb_api: Any) -> None:
    ro_api = make_wandb_api(seeded_server.url)
    run = ro_api.run(f"{PATH}/r01")
    run.tags = ["changed"]
    with pytest.raises(Exception, match="read-only"):
        run.update()
    assert ro_api.run(f"{PATH}/r01").load(force=True)["tags"] == ["baseline", "cnn"]
    put = requests.put(f"{seeded_server.url}/_mirror/upload/acme/vision/r01/x.txt", data=b"x", timeout=30)
    assert put.status_code == 403


def test_api_key_required(store_path: Path, start_mirror_server: Any, make_wandb_api: Any) -> None:
    import wandb

    server = start_mirror_server(store_path, api_key=KEY, read_only=True)
    with pytest.raises(Exception):  # noqa: B017 - the client raises its own (version-specific) error
        make_wandb_api(server.url, api_key="w" * 40, timeout=20)
    good = make_wandb_api(server.url, api_key=KEY)
    f = good.run(f"{PATH}/r01").file("config.yaml")
    assert requests.get(f.url, timeout=30).status_code == 401  # no key
    assert requests.get(f.url, auth=("api", "w" * 40), timeout=30).status_code == 401
    assert requests.get(f.url, auth=("api", KEY), timeout=30).text == "lr: 0.1\nbatch: 32\n"
    assert requests.get(f.direct_url, timeout=30).status_code == 200  # presigned: no auth, signature instead
    forged = f.direct_url.split("?")[0] + "?sig=" + "0" * 32
    assert requests.get(forged, timeout=30).status_code == 403
    other = f.direct_url.replace(f.direct_url.split("/")[-2], "0" * 32)
    assert requests.get(other, timeout=30).status_code == 403
    r = requests.post(f"{server.url}/graphql", json={"query": "{ viewer { id } }"}, timeout=30)
    assert r.status_code == 401
    assert isinstance(wandb.Api, type)


def test_update_state_and_create_project(api: Any, server: Any) -> None:
    run = api.run(f"{PATH}/r04")
    assert run.update_state("failed") is True
    assert fresh_run(api, "r04").state == "failed"
    api.create_project("fresh-proj", ENTITY)
    assert "fresh-proj" in {p.name for p in api.projects(ENTITY)}


def test_external_catalog_writes_are_seen(api: Any, store_path: Path) -> None:
    """Another process (a daemon, a test seeding upstream changes) writes the served store: no stale cache."""
    from wandb_mirror.store import Store

    assert "r06" in {r.id for r in api.runs(PATH, filters={"tags": "resnet"})}
    with Store(store_path, create=False) as store:
        with store.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET tags = '[\"moved\"]', state = 'killed' WHERE run_id = 'r06'")
    api.flush()
    assert "r06" not in {r.id for r in api.runs(PATH, filters={"tags": "resnet"})}
    assert [r.id for r in api.runs(PATH, filters={"state": "killed"})] == ["r06"]
