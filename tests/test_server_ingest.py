"""The official client's writing API (wandb.init / log / log_artifact / use_artifact / finish) against
`serve` on an empty store, read back with `wandb.Api`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ENTITY, PROJECT = "writer", "fresh"


def client_settings(url: str, **extra: Any) -> Any:
    """This server (the client keeps settings process-wide, so the environment alone may be stale),
    and bounded retries: a refused request fails the test in seconds, not minutes."""
    import wandb

    return wandb.Settings(base_url=url, api_key="w" * 40, mode="online", x_graphql_retry_max=2, x_file_stream_retry_max=2, x_file_transfer_retry_max=2,
                          x_graphql_retry_wait_max_seconds=1, x_file_stream_retry_wait_max_seconds=1,
                          x_file_transfer_retry_wait_max_seconds=1, init_timeout=60, **extra)


@pytest.fixture
def client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import wandb

    def point_at(url: str) -> None:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        monkeypatch.setenv("WANDB_API_KEY", "w" * 40)
        monkeypatch.setenv("WANDB_MODE", "online")
        monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
        (tmp_path / "wandb-dir").mkdir(exist_ok=True)

    wandb.teardown()  # settings left process-wide by earlier tests
    yield point_at
    wandb.teardown()


@pytest.fixture
def empty_server(tmp_path: Path, start_mirror_server: Any) -> Any:
    from wandb_mirror.store import Store

    Store(tmp_path / "store").close()
    return start_mirror_server(tmp_path / "store", writable=True)


@pytest.mark.parametrize(("key", "engine"), [(None, "sqlite"), ("w" * 40, "sqlite"),
                                             pytest.param(None, "postgresql", marks=pytest.mark.postgres)],
                         ids=["any-key", "api-key", "any-key-postgresql"])
def test_official_client_writes_a_run_and_artifacts(request: pytest.FixtureRequest, tmp_path: Path, client_env: Any,
                                                     make_wandb_api: Any, start_mirror_server: Any, key: str | None,
                                                     engine: str) -> None:
    import wandb

    from wandb_mirror.store import Store
    from wandb_mirror.store.location import StoreLocation

    # the store the writes land in: SQLite, or a PostgreSQL catalog (the same server code)
    catalog = str(request.getfixturevalue("pg_url")) if engine == "postgresql" else None
    Store(tmp_path / "store", catalog=catalog).close()
    empty_server = start_mirror_server(StoreLocation(path=tmp_path / "store", catalog=catalog), writable=True,
                                       api_key=key)
    client_env(empty_server.url)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3000))
    (tmp_path / "notes.txt").write_text("a run file\n")

    run = wandb.init(entity=ENTITY, project=PROJECT, id="w1", name="first writer", config={"lr": 0.1, "opt": "adam"},
                     tags=["t1"], notes="from the test", group="g", job_type="train", settings=client_settings(empty_server.url))
    for i in range(30):
        run.log({"loss": 1.0 / (i + 1), "acc": i / 30})
    print("hello console")
    print("to stderr", file=sys.stderr)
    run.save(str(tmp_path / "notes.txt"), base_path=str(tmp_path), policy="now")
    art = wandb.Artifact("dataset", type="data", metadata={"rows": 3})
    art.add_file(str(payload), name="blobs/payload.bin")
    art.add_file(str(tmp_path / "notes.txt"))
    run.log_artifact(art, aliases=["best"])
    run.summary["best_loss"] = 0.01
    run.finish()

    run2 = wandb.init(entity=ENTITY, project=PROJECT, id="w2", settings=client_settings(empty_server.url))
    used = run2.use_artifact(f"{ENTITY}/{PROJECT}/dataset:best")
    assert used.digest
    art2 = wandb.Artifact("dataset", type="data")
    art2.add_file(str(tmp_path / "notes.txt"))
    run2.log_artifact(art2)
    run2.finish()

    api = make_wandb_api(empty_server.url, api_key="w" * 40)
    got = api.run(f"{ENTITY}/{PROJECT}/w1")
    assert got.state == "finished"
    assert got.name == "first writer" and got.tags == ["t1"] and got.notes == "from the test"
    assert got.group == "g" and got.job_type == "train"
    assert got.config["lr"] == 0.1 and got.config["opt"] == "adam"
    assert got.summary["best_loss"] == 0.01 and got.summary["loss"] == pytest.approx(1 / 30)
    rows = list(got.scan_history())
    assert [r["_step"] for r in rows] == list(range(30))
    assert rows[29]["acc"] == pytest.approx(29 / 30) and "_timestamp" in rows[0] and "_runtime" in rows[0]
    assert len(got.history(stream="system", pandas=False)) >= 1
    files = {f.name: f for f in got.files()}
    assert "notes.txt" in files and "wandb-metadata.json" in files and "config.yaml" in files
    console = list(got.console_logs())
    hello = next(ln for ln in console if "hello console" in ln.content)
    assert next(ln for ln in console if "to stderr" in ln.content).level == "error"
    assert hello.level != "error" and hello.timestamp and [ln.number for ln in console] == list(range(len(console)))
    down = files["notes.txt"].download(root=str(tmp_path / "down"), replace=True)
    down.close()
    assert (tmp_path / "down" / "notes.txt").read_text() == "a run file\n"

    v0 = api.artifact(f"{ENTITY}/{PROJECT}/dataset:v0")
    assert set(v0.aliases) == {"best"} and v0.metadata == {"rows": 3}
    assert v0.logged_by().id == "w1" and [r.id for r in v0.used_by()] == ["w2"]
    out = Path(v0.download(root=str(tmp_path / "art")))
    assert (out / "blobs/payload.bin").read_bytes() == payload.read_bytes()
    manifest = v0.manifest.to_manifest_json()
    from wandb_mirror.digests import manifest_digest

    assert v0.digest == manifest_digest({p: e["digest"] for p, e in manifest["contents"].items()})
    v1 = api.artifact(f"{ENTITY}/{PROJECT}/dataset:latest")
    assert v1.version == "v1" and "latest" in v1.aliases and "latest" not in api.artifact(
        f"{ENTITY}/{PROJECT}/dataset:v0").aliases
    assert [a.name for a in api.run(f"{ENTITY}/{PROJECT}/w2").logged_artifacts()] == ["dataset:v1"]


def test_file_stream_is_idempotent_and_bounded(tmp_path: Path, start_mirror_server: Any) -> None:
    import gzip

    import requests

    from wandb_mirror.server.guard import Limits
    from wandb_mirror.store import Store

    Store(tmp_path / "store").close()
    empty_server = start_mirror_server(tmp_path / "store", writable=True, limits=Limits(max_body=1 << 20))

    gql = {"query": "mutation U($e: String, $p: String, $n: String) { upsertBucket(input: {entityName: $e, "
                    "modelName: $p, name: $n}) { bucket { id } } }", "variables": {"e": "x", "p": "y", "n": "r"}}
    assert "errors" not in requests.post(empty_server.url + "/graphql", json=gql, timeout=10).json()
    url = empty_server.url + "/files/x/y/r/file_stream"
    rows = [json.dumps({"_step": i, "v": i}) for i in range(5)]
    body = {"files": {"wandb-history.jsonl": {"offset": 0, "content": rows},
                      "output.log": {"offset": 0, "content": ["one", "two"]}}}
    for _ in range(2):  # the client resends a request it did not see answered
        r = requests.post(url, data=gzip.compress(json.dumps(body).encode()), headers={"Content-Encoding": "gzip"},
                          timeout=10)
        assert r.status_code == 200, r.text
    bad = requests.post(url, json={"files": {"wandb-history.jsonl": {"offset": 0, "content": ["{\"v\": 1}"]}}},
                        timeout=10)
    assert bad.status_code == 400 and "_step" in bad.text
    bomb = gzip.compress(b'{"files": {}, "pad": "' + b" " * (5 << 20) + b'"}')  # 5 MiB > 4 x the 1 MiB cap
    assert len(bomb) < 1 << 20
    r = requests.post(url, data=bomb, headers={"Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 400 and "unpacks to more than" in r.text
    done = requests.post(url, json={"complete": True, "exitcode": 1}, timeout=10)
    assert done.status_code == 200
    assert requests.post(empty_server.url + "/files/x/y/nope/file_stream", json={}, timeout=10).status_code == 404
    with Store(Path(empty_server._store.path), create=False, readonly=True) as store:
        run = store.catalog.query_one("SELECT pk, state, last_step, history_line_count FROM runs WHERE run_id = 'r'")
        assert (run["state"], run["last_step"], run["history_line_count"]) == ("failed", 4, 5)
        f = store.catalog.query_one("SELECT md5 FROM files WHERE name = 'output.log'")
        assert store.objects.read_bytes(f["md5"]) == b"one\ntwo\n"
        assert f["md5"] == hashlib.md5(b"one\ntwo\n").hexdigest()


def test_read_only_server_refuses_file_stream_and_artifact_uploads(writable_store: Path,
                                                                  start_mirror_server: Any) -> None:
    import requests

    server = start_mirror_server(writable_store, read_only=True)
    r = requests.post(server.url + "/files/e/p/r/file_stream", json={}, timeout=10)
    assert r.status_code == 403 and "read-only" in r.text
    r = requests.put(server.url + "/_mirror/upload-object/" + "0" * 32, data=b"x", timeout=10)
    assert r.status_code == 403


def test_upload_of_an_object_already_held_keeps_the_connection_usable(empty_server: Any) -> None:
    """The store does not re-read bytes it holds; the body must still be consumed, or the next request
    on the same keep-alive connection starts inside it."""
    import requests

    body = os.urandom(70_000)
    md5 = hashlib.md5(body).hexdigest()
    gql = {"query": "mutation U($e: String, $p: String, $n: String) { upsertBucket(input: {entityName: $e, "
                    "modelName: $p, name: $n}) { bucket { id } } }", "variables": {"e": "x", "p": "y", "n": "r"}}
    with requests.Session() as s:
        assert s.post(empty_server.url + "/graphql", json=gql, timeout=10).status_code == 200
        for url in (f"/_mirror/upload-object/{md5}", f"/_mirror/upload-object/{md5}",
                    "/_mirror/upload/x/y/r/a.bin", "/_mirror/upload/x/y/r/b.bin"):
            r = s.put(empty_server.url + url, data=body, timeout=10)
            assert r.status_code == 200, r.text
        bad = s.put(empty_server.url + "/_mirror/upload-object/" + "0" * 32, data=body, timeout=10)
        assert bad.status_code == 400 and "md5 mismatch" in bad.text
        viewer = s.post(empty_server.url + "/graphql", json={"query": "query Viewer { viewer { username } }"},
                        timeout=10)
        assert viewer.status_code == 200 and "errors" not in viewer.json()
    assert len({e["path"] for e in empty_server.request_log()}) >= 4


def test_resume_from_an_earlier_step_rewrites_the_history(tmp_path: Path, client_env: Any, make_wandb_api: Any,
                                                          start_mirror_server: Any) -> None:
    """`wandb.init(resume_from="RUN?_step=N")` (wandb-core's RewindRun): rows after N go, the run
    logs on from N + 1, and the readers (scan, sampled history, lastHistoryStep) agree."""
    import wandb

    from wandb_mirror.fixtures import seed
    from wandb_mirror.store import Store

    with Store(tmp_path / "store") as s:  # seeded rows live in parquet segments, not only in the tail
        seed(s, {"viewer": {"username": "ada", "entity": ENTITY}, "projects": [{"name": PROJECT, "runs": [
            {"id": "h", "state": "finished", "history": {"steps": 100, "metrics": ["loss"], "seed": 1}}]}]})
    server = start_mirror_server(tmp_path / "store", writable=True)
    client_env(server.url)
    run = wandb.init(entity=ENTITY, project=PROJECT, resume_from="h?_step=40", settings=client_settings(server.url))
    for _ in range(10):
        run.log({"loss": 7.0})
    run.finish()

    h = make_wandb_api(server.url, api_key="w" * 40).run(f"{ENTITY}/{PROJECT}/h")
    rows = list(h.scan_history(use_cache=False))
    assert [r["_step"] for r in rows] == list(range(51))
    assert [r["loss"] for r in rows[41:]] == [7.0] * 10 and rows[40]["loss"] != 7.0
    assert h.lastHistoryStep == 50 and h.state == "finished"
    assert len(h.history(samples=1000, pandas=False)) == 51
