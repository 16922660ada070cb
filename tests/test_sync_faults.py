"""A pass against an upstream that fails often (429 with Retry-After, 500, dropped connections,
truncated and corrupted bodies) completes through retries, and the mirror equals the upstream."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ENTITY

from wandb_mirror.config import minimal_config
from wandb_mirror.store import Store
from wandb_mirror.sync import SyncEngine, make_client


def test_pass_survives_an_unreliable_upstream(seeded_store: Path, start_mirror_server, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_mirror_server(seeded_store, read_only=True, fault_rate=0.12, fault_seed=7)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = minimal_config(server.url, tmp_path / "mirror", retry_wait_min=0.01, retry_wait_max=0.05, concurrency=4,
                         max_retries=8)
    store = Store(tmp_path / "mirror")
    client = make_client(cfg)
    try:
        with store.lock("test"):
            r = SyncEngine(cfg, store, client).run_pass()
        assert r.status == "ok", r.errors
        req = r.stats["requests_pass"]
        assert req["retries"] > 0 and req["server_errors"] + req["rate_limited"] > 0
        statuses = {e["status"] for e in server.request_log()}
        assert {429, 500} <= statuses  # the faults really happened
        up = Store(seeded_store, create=False, readonly=True)
        try:
            sql = ("SELECT r.run_id, r.summary, r.last_step, ((SELECT COUNT(*) FROM history h WHERE h.run_pk = r.pk) + "
               "(SELECT COALESCE(SUM(s.rows), 0) FROM history_segments s WHERE s.run_pk = r.pk)) AS n, "
                   "(SELECT group_concat(name || ':' || md5, ',') FROM (SELECT name, md5 FROM files f "
                   "WHERE f.run_pk = r.pk ORDER BY name)) AS files FROM runs r JOIN projects p ON p.pk = r.project_pk "
                   "WHERE p.entity = ? ORDER BY p.name, r.run_id")
            assert up.catalog.query(sql, [ENTITY]) == store.catalog.query(sql, [ENTITY])
            art = "SELECT a.digest, a.manifest_md5 FROM artifacts a ORDER BY a.digest"
            assert [x["digest"] for x in up.catalog.query(art)] == [x["digest"] for x in store.catalog.query(art)]
        finally:
            up.close()
        for md5, _ in store.catalog.referenced_objects():
            assert store.objects.hash_object(md5).md5 == md5
        assert store.catalog.scalar("SELECT COUNT(*) FROM quarantine") == 0
    finally:
        client.close()
        store.close()
