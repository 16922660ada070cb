"""History through W&B's parquet exports: a constant number of requests per exported run, the live
tail from the first live step, and bad exports rejected so that HistoryPage is used instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY, PROJECT
from test_server_parquet import LIVE_FROM, LIVE_TO, store_with_live_tail  # noqa: F401 - a fixture

from wandb_mirror.client import history_exports as X
from wandb_mirror.config import minimal_config
from wandb_mirror.store import Store
from wandb_mirror.sync import make_client
from wandb_mirror.sync.history_exports import mirror_history_exports


def _mirror(tmp_path: Path, server: Any, name: str, last_step: int) -> tuple[Any, Store, int]:
    client = make_client(minimal_config(server.url, tmp_path / "mirror", retry_wait_min=0.01, retry_wait_max=0.05),
                         api_key="k" * 40)
    store = Store(tmp_path / "mirror")
    from wandb_mirror.models import Project, Run
    pk = store.catalog.upsert_run(store.catalog.upsert_project(Project(entity=ENTITY, name=PROJECT)), Run(run_id=name))
    server.reset_log()
    return client, store, pk


def _upstream_rows(path: Path, name: str) -> list[tuple[int, dict[str, Any]]]:
    with Store(path, create=False, readonly=True) as s:
        return list(s.history.rows(s.catalog.run_pk(s.catalog.project_pk(ENTITY, PROJECT), name)))


def test_an_exported_run_costs_two_requests_and_no_history_page(
        store_with_live_tail: Path, start_mirror_server: Any, tmp_path: Path) -> None:  # noqa: F811
    server = start_mirror_server(store_with_live_tail, read_only=True)
    want = _upstream_rows(store_with_live_tail, "r01")
    client, store, pk = _mirror(tmp_path, server, "r01", 249)
    out = mirror_history_exports(client, store.history, store.objects.tmp, ENTITY, PROJECT, "r01", pk, 0, 250)
    assert (out.next_step, out.rows, out.first, out.last, out.files, out.rejected) == (250, 250, 0, 249, 1, None)
    ops = [e["operation"] or e["method"] for e in server.request_log()]
    assert ops == ["RunParquetHistory", "GET"]  # not 1 + 250/1000 HistoryPage windows
    assert list(store.history.rows(pk)) == want
    assert store.history.segments(pk) and store.catalog.scalar("SELECT COUNT(*) FROM history") == 0
    assert list(store.objects.tmp.iterdir()) == []  # the downloaded file is gone, its rows are in a segment


def test_a_running_run_stops_at_the_first_live_step(store_with_live_tail: Path, start_mirror_server: Any,  # noqa: F811
                                                     tmp_path: Path) -> None:
    server = start_mirror_server(store_with_live_tail, read_only=True)
    client, store, pk = _mirror(tmp_path, server, "r04", LIVE_TO - 1)
    out = mirror_history_exports(client, store.history, store.objects.tmp, ENTITY, PROJECT, "r04", pk, 0, LIVE_TO)
    assert (out.next_step, out.rows, out.last) == (LIVE_FROM, LIVE_FROM, LIVE_FROM - 1)
    # an incremental pass from a later step stores only what it lacks
    out = mirror_history_exports(client, store.history, store.objects.tmp, ENTITY, PROJECT, "r04", pk, 1500, LIVE_TO)
    assert (out.next_step, out.rows, out.first) == (LIVE_FROM, 500, 1500)
    assert [s for s, _ in store.history.rows(pk)] == list(range(LIVE_FROM))


def test_an_upstream_without_exports_falls_back(writable_store: Path, start_mirror_server: Any, tmp_path: Path) -> None:
    server = start_mirror_server(writable_store, read_only=True, parquet_export_delay=10 ** 9)
    client, store, pk = _mirror(tmp_path, server, "r01", 249)
    out = mirror_history_exports(client, store.history, store.objects.tmp, ENTITY, PROJECT, "r01", pk, 0, 250)
    assert (out.next_step, out.rows, out.rejected) == (0, 0, None)


@pytest.mark.parametrize("damage, reason", [
    ("garbage", "not a readable history segment"),
    ("lastStep", "the exports end at step 249, historyKeys.lastStep is 260"),
])
def test_a_bad_export_is_rejected_and_nothing_is_stored(writable_store: Path, start_mirror_server: Any, tmp_path: Path,
                                                        damage: str, reason: str) -> None:
    last = 249
    with Store(writable_store) as up:
        if damage == "garbage":  # a file that is not Parquet (its md5 is its own: the transfer was fine)
            info = up.objects.put_bytes(b"this is not a parquet file" * 100)
            up.catalog.conn.execute("UPDATE history_segments SET md5 = ?, size = ? WHERE run_pk = "
                                    "(SELECT pk FROM runs WHERE run_id = 'r01')", [info.md5, info.size])
            up.catalog.conn.commit()
        else:  # the upstream says the run has more steps than its exports hold, and none is live
            last = 260
    server = start_mirror_server(writable_store, read_only=True)
    client, store, pk = _mirror(tmp_path, server, "r01", last)
    out = mirror_history_exports(client, store.history, store.objects.tmp, ENTITY, PROJECT, "r01", pk, 0, last + 1)
    assert out.next_step == 0 and out.rows == 0 and out.rejected is not None
    assert reason in out.rejected.reason and "/_mirror/history/" in out.rejected.url
    assert store.history.count(pk) == 0 and list(store.objects.tmp.iterdir()) == []


def test_an_oversized_export_is_refused_while_streaming(store_with_live_tail: Path, start_mirror_server: Any,  # noqa: F811
                                                        tmp_path: Path) -> None:
    server = start_mirror_server(store_with_live_tail, read_only=True)
    client, store, _pk = _mirror(tmp_path, server, "r01", 249)
    listing = X.list_exports(client, ENTITY, PROJECT, "r01")
    assert listing is not None and listing.live_steps == []
    with pytest.raises(X.ExportRejected, match="larger than 100 bytes"):
        X.download(client, listing, 249, store.objects.tmp, max_bytes=100)
    assert list(store.objects.tmp.iterdir()) == []


def test_a_first_mirror_reads_exported_runs_without_history_page(store_with_live_tail: Path,  # noqa: F811
                                                                 start_mirror_server: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb_mirror.sync import SyncEngine

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    server = start_mirror_server(store_with_live_tail)
    cfg = minimal_config(server.url, tmp_path / "mirror", retry_wait_min=0.01, retry_wait_max=0.05)
    store = Store(tmp_path / "mirror")
    try:
        with store.lock("test"):
            r = SyncEngine(cfg, store, make_client(cfg)).run_pass()
        assert r.status == "ok", r.errors
        pages = [e for e in server.request_log() if e["operation"] == "HistoryPage"]
        exports = [e for e in server.request_log() if e["path"].startswith("/_mirror/history/")]
        assert len(exports) == 4  # r01, r02, r06 whole; r04 up to its live tail
        assert len(pages) == 1  # only r04's live steps, from the first live step (one 350-step window)
        with Store(store_with_live_tail, create=False, readonly=True) as up:
            ppk_up = up.catalog.project_pk(ENTITY, PROJECT)
            ppk = store.catalog.project_pk(ENTITY, PROJECT)
            for name in ("r01", "r02", "r04", "r06"):
                want = list(up.history.rows(up.catalog.run_pk(ppk_up, name)))
                got = list(store.history.rows(store.catalog.run_pk(ppk, name)))
                assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), name
        assert r.stats["history_export_files"] == 4
    finally:
        store.close()
