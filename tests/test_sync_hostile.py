"""A hostile or broken upstream: refused names, malformed JSON, bad history rows, an unsafe manifest.
The pass must not crash, must store nothing refused, and must quarantine and report what it refused.
Odd names the official client reads (a backslash, a control character, `a//b`) are kept exactly
(tests/test_upstream_names.py has their round trip)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wandb_mirror import ids
from wandb_mirror.config import minimal_config
from wandb_mirror.digests import manifest_digest
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store
from wandb_mirror.sync import SyncEngine, make_client

UNSAFE = ["../evil.txt", "/etc/passwd", "n" * 2000, "C:x.txt", ""]
KEPT = ["a\\b.txt", "dir/./x.txt", "ctl\x01.txt", "a//b.txt"]


def hostile_doc() -> dict[str, Any]:
    return {
        "viewer": {"username": "mallory", "entity": "evil"},
        "projects": [{
            "name": "p",
            "runs": [
                {"id": "h1", "files": [{"name": "ok.txt", "text": "fine"}] + [{"name": n or "<EMPTY>", "text": "x"}
                                                                              for n in UNSAFE + KEPT]},
                {"id": "h2", "config": {"a": 1}, "summary": {"b": 2}},
                {"id": "h3", "history": {"steps": 10, "metrics": ["loss"], "seed": 1}},
            ],
            "artifacts": [{"name": "ds", "type": "dataset", "versions": [{"files": [{"path": "a.txt", "text": "A"}]}]}],
        }],
    }


@pytest.fixture
def hostile(tmp_path: Path, start_mirror_server) -> tuple[Path, Any]:
    up = Store(tmp_path / "up")
    try:
        seed(up, hostile_doc())
        cat = up.catalog
        ppk = cat.project_pk("evil", "p")
        with cat.transaction() as conn:
            # an empty file name (the fixture format refuses it, an upstream may not)
            for table in ("files", "file_versions"):
                conn.execute(f"UPDATE {table} SET name = '' WHERE name = '<EMPTY>'")
            # malformed JSON in summary, a config that is not an object
            conn.execute("UPDATE runs SET summary = '{\"b\": 2,', config = '[1, 2]' WHERE project_pk = ? AND run_id = 'h2'",
                         [ppk])
            # a history row that is not JSON, and one whose _step lies about where it is
            h3 = cat.run_pk(ppk, "h3")
            # (the run is finished, so its rows sit in a segment: these tail rows replace two of them)
            up.history.append(h3, [(4, "not json at all"), (6, '{"_step": 999, "loss": 1}')])
        # a manifest with an entry that climbs out of the artifact, its digest made consistent
        art = cat.query_one("SELECT pk, manifest_md5 FROM artifacts")
        manifest = json.loads(up.objects.read_bytes(art["manifest_md5"]))
        manifest["contents"]["../escape.txt"] = {"digest": ids.md5_hex_to_b64(up.objects.put_bytes(b"E").md5), "size": 1}
        minfo = up.objects.put_bytes(json.dumps(manifest).encode())
        digest = manifest_digest({k: v["digest"] for k, v in manifest["contents"].items()})
        with cat.transaction() as conn:
            conn.execute("UPDATE artifacts SET manifest_md5 = ?, digest = ? WHERE pk = ?", [minfo.md5, digest, art["pk"]])
    finally:
        up.close()
    return tmp_path, start_mirror_server(tmp_path / "up", read_only=True)


def test_hostile_upstream_is_quarantined_not_stored(hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path, server = hostile
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = minimal_config(server.url, tmp_path / "mirror", retry_wait_min=0.01, retry_wait_max=0.05)
    store = Store(tmp_path / "mirror")
    try:
        # a second pass over the same upstream: stable (runs already settled are not re-fetched; the
        # refused artifact version is tried again and refused again), nothing new stored, no crash
        for _attempt in range(2):
            client = make_client(cfg)
            with store.lock("test"):
                r = SyncEngine(cfg, store, client).run_pass()
            client.close()
            assert r.status == "errors", (_attempt, r.errors)
            rows = store.catalog.query("SELECT kind, upstream_path, reason FROM quarantine ORDER BY pk")
            kinds = [x["kind"] for x in rows]
            assert kinds.count("file") == len(UNSAFE), rows
            assert kinds.count("history_row") == 2 and kinds.count("artifact") == 1 and kinds.count("run") == 2, rows
            reasons = " | ".join(x["reason"] for x in rows)
            for needle in ("'..' component", "absolute path", "longer than", "names no file",
                           "summaryMetrics: malformed JSON", "config: expected a JSON object",
                           "outside the requested window", "refused entry path '../escape.txt'"):
                assert needle in reasons, needle
            ppk = store.catalog.project_pk("evil", "p")
            h1 = store.catalog.run_pk(ppk, "h1")
            stored = store.catalog.query("SELECT name, md5 FROM files WHERE run_pk = ?", [h1])
            assert sorted(f["name"] for f in stored) == sorted(["ok.txt", *KEPT])
            h2 = store.catalog.get_run(ppk, "h2")
            assert h2.summary == "{}" and h2.config == "{}"  # nothing malformed stored
            h3 = store.catalog.run_pk(ppk, "h3")
            steps = [step for step, _ in store.history.texts(h3)]
            assert steps == [0, 1, 2, 3, 5, 7, 8, 9]
            assert store.catalog.scalar("SELECT COUNT(*) FROM artifacts") == 0
            # every stored object is one a catalog row references or a run file: nothing unsafe slipped in
            assert store.catalog.scalar("SELECT COUNT(*) FROM file_versions") == 1 + len(KEPT)
            assert len(rows) == len(UNSAFE) + 5  # repeated findings update their row instead of piling up
    finally:
        store.close()
