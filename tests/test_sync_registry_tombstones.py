"""Registries and registry collections deleted upstream: tombstoned in the mirror (never deleted),
an `artifact_unlinked` for each link that goes with them, a `tombstoned` event for each; `serve`
over the mirror stops listing them, as it does for deleted runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY
from org_fixture import ORG, ORG_ENTITY, org_fixture_doc

from wandb_mirror.config import minimal_config
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store
from wandb_mirror.sync import SyncEngine, make_client


def _delete_upstream(path: Path, registry: str, collection: str | None = None) -> None:
    """What W&B does when a registry (or one of its collections) is deleted: it is gone from every listing."""
    conn = sqlite3.connect(path / "catalog.db")
    with conn:
        pk = conn.execute("SELECT pk FROM projects WHERE entity = ? AND name = ?", [ORG_ENTITY, registry]).fetchone()[0]
        colls = [r[0] for r in conn.execute("SELECT pk FROM artifact_collections WHERE project_pk = ?"
                                            + (" AND name = ?" if collection else ""),
                                            [pk, collection] if collection else [pk])]
        conn.executemany("DELETE FROM artifact_links WHERE collection_pk = ?", [(c,) for c in colls])
        conn.executemany("DELETE FROM artifact_collections WHERE pk = ?", [(c,) for c in colls])
        if collection is None:
            conn.execute("DELETE FROM registries WHERE project_pk = ?", [pk])
            conn.execute("DELETE FROM projects WHERE pk = ?", [pk])
    conn.close()


def _new_events(store: Store, after: int) -> list[tuple[str, str | None, dict[str, Any]]]:
    rows = store.catalog.conn.execute("SELECT kind, subject, payload FROM changes WHERE seq > ? AND kind IN "
                                      "('artifact_unlinked', 'tombstoned', 'artifact_linked') ORDER BY seq",
                                      [after]).fetchall()
    return [(k, s, json.loads(p)) for k, s, p in rows]


def _last_seq(store: Store) -> int:
    return store.catalog.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]


def test_deleted_registry_and_collection_are_tombstoned_with_their_links(tmp_path: Path, start_mirror_server: Any,
                                                                          make_wandb_api: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    doc = org_fixture_doc()
    for run in doc["projects"][0]["runs"]:
        run.pop("console", None)  # not what this test is about, and the costliest part of a pass
    up_path = tmp_path / "up"
    with Store(up_path) as st:
        seed(st, doc)
    up = start_mirror_server(up_path, read_only=True)
    monkeypatch.setenv("WANDB_API_KEY", "t" * 40)
    cfg = minimal_config(up.url, tmp_path / "mirror")
    store, client = Store(tmp_path / "mirror"), make_client(cfg)

    def sync() -> dict[str, int]:
        with store.lock("test"):
            result = SyncEngine(cfg, store, client).run_pass()
        assert result.status == "ok", result.errors
        return result.stats

    try:
        sync()
        # one collection of `model` deleted upstream: its link goes, the collection is tombstoned
        seq = _last_seq(store)
        _delete_upstream(up_path, "wandb-registry-model", "cnn-classifier")
        stats = sync()
        assert stats.get("registry_collections_deleted") == 1 and stats.get("links_removed") == 1
        events = _new_events(store, seq)
        assert [(k, p.get("collection"), p.get("kind")) for k, _, p in events] == [
            ("artifact_unlinked", "cnn-classifier", None), ("tombstoned", None, "collection")]
        assert events[1][1] == f"{ORG_ENTITY}/wandb-registry-model/cnn-classifier"

        # the whole registry deleted upstream: its remaining links go, it and its collection are tombstoned
        seq = _last_seq(store)
        _delete_upstream(up_path, "wandb-registry-model")
        stats = sync()
        assert stats.get("registries_deleted") == 1 and stats.get("links_removed") == 2
        kinds = [(k, s) for k, s, _ in _new_events(store, seq)]
        assert kinds.count(("tombstoned", f"{ORG_ENTITY}/wandb-registry-model")) == 1
        assert [k for k, _ in kinds].count("artifact_unlinked") == 2
        # kept, not deleted: the rows are there with their tombstones
        conn = store.catalog.conn
        row = conn.execute("SELECT tombstoned_at FROM projects WHERE name = 'wandb-registry-model'").fetchone()
        assert row is not None and row[0] is not None
        assert conn.execute("SELECT COUNT(*) FROM artifact_links WHERE tombstoned_at IS NOT NULL").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM artifact_collections WHERE kind = 'PORTFOLIO' AND "
                            "tombstoned_at IS NOT NULL").fetchone()[0] == 2
        # a pass with nothing new changes nothing more
        seq = _last_seq(store)
        sync()
        assert _new_events(store, seq) == []
    finally:
        client.close()
        store.close()

    api = make_wandb_api(start_mirror_server(tmp_path / "mirror", read_only=True).url)
    assert [r.name for r in api.registries(organization=ORG)] == ["datasets"]
    assert list(api.registries(organization=ORG).versions()) == []
    assert api.artifact_exists(f"{ORG}/wandb-registry-model/yolo-detector:production") is False
    assert api.artifact_exists(f"{ENTITY}/vision/mnist:v1") is True  # the linked versions themselves stay
