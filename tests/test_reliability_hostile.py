"""Reliability 4: hostile or broken upstream data.

File and artifact entry names with `..`, absolute paths (POSIX and drive letters), NUL bytes and
4,000-character names (refused, as the official client refuses them); backslashes, control
characters, doubled slashes and unicode (which the official client reads, so they must mirror); malformed JSON in
config, summary, system metrics, history and system-metric rows; NaN and Infinity (valid W&B data,
kept exactly); very large rows; a 256-byte run id; duplicate runs across pages and empty pages
before the end (through a proxy that rewrites the real server's pages, the known W&B pagination
bug); manifests whose entries disagree with the files, and a manifest listing a file upstream
cannot serve.

Nothing is written outside the store directory (the whole tmp tree is compared before and after),
bad items are quarantined and reported with their upstream path, good items still mirror, and a
reconcile through a listing that repeats one run and drops another tombstones nothing.
`wandb-mirror export` of the result stays inside its output directory.

tests/test_sync_hostile.py covers the first unsafe names, malformed summary/config and history
rows; this extends it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    KEY,
    Proxy,
    mirror_state,
    seed_store,
    snapshot,
    store_problems,
    verify_deep,
)

from wandb_mirror import ids, jsontext
from wandb_mirror.cli import main
from wandb_mirror.config import minimal_config
from wandb_mirror.digests import manifest_digest
from wandb_mirror.store import Store
from wandb_mirror.sync import SyncEngine, make_client

E, P = "evil", "p"
UNSAFE_FILES = ["../evil.txt", "../../../../tmp/escape.txt", "/etc/passwd", "C:/win.txt",
                "nul\x00.txt", "l" * 4000, "dir/../../x.txt"]
GOOD_FILES = ["données/résumé 文件.txt", "emoji-🚀.txt", "x" * 200, "deep/" * 20 + "leaf.txt",
              "a\\b.txt", "ctl\x1b[2J.txt", "a//b.txt"]
UNSAFE_ENTRIES = ["../up.txt", "/abs.txt", "nul\x00.txt", "e" * 4000, "a\\..\\up.txt"]
LONG_ID = "r" * 256
FIGURES: dict[str, int] = {}


def hostile_doc() -> dict[str, Any]:
    big = "x" * 2_000_000
    runs: list[dict[str, Any]] = [
        {"id": "files", "files": [{"name": n.replace("\x00", "<NUL>"), "text": f"{i}"}  # NUL: set below
                                  for i, n in enumerate(UNSAFE_FILES + GOOD_FILES)]},
        {"id": "badjson", "config": {"a": 1}, "summary": {"b": 2}, "events": {"count": 4, "seed": 1}},
        {"id": "badhist", "history": {"steps": 12, "metrics": ["loss"], "seed": 1}},
        {"id": "nan", "history": [{"loss": float("nan")}, {"loss": float("inf")}, {"loss": -float("inf"), "ok": 1}],
         "summary": {"loss": float("nan"), "best": float("-inf"), "n": {"deep": float("inf")}},
         "config": {"eps": float("nan")}},
        {"id": "big", "history": [{"blob": big, "i": 0}, {"i": 1}], "summary": {"blob": big[:1_000_000]},
         "config": {"blob": big[:500_000]}},
        {"id": "ünïcode-rün", "tags": ["日本", "ü"], "notes": "🚀" * 100},
        {"id": LONG_ID, "history": [{"loss": 1.0}]},
    ]
    runs += [{"id": f"r{i:02d}", "created_at": f"2024-03-01T00:{i:02d}:00"} for i in range(9)]
    return {
        "viewer": {"username": "mallory", "entity": E},
        "projects": [{
            "name": P, "created_at": "2024-01-01T00:00:00", "runs": runs,
            "artifacts": [
                {"name": "good", "type": "dataset", "versions": [
                    {"files": [{"path": "données/ü 文件.txt", "text": "unicode is fine"}, {"path": "a.txt", "text": "A"}]}]},
                {"name": "unsafe", "type": "dataset", "versions": [
                    {"files": [{"path": "ok.txt", "text": f"v{i}"}]} for i in range(len(UNSAFE_ENTRIES))]},
                {"name": "liar", "type": "dataset", "versions": [
                    {"files": [{"path": "a.txt", "text": "the manifest says this"}, {"path": "b.txt", "text": "B"}]}]},
                {"name": "ghost", "type": "dataset", "versions": [{"files": [{"path": "here.txt", "text": "here"}]}]},
            ],
        }],
    }


def make_hostile(path: Path) -> Path:
    seed_store(path, hostile_doc())
    with Store(path) as up:
        cat = up.catalog
        ppk = cat.project_pk(E, P)
        with cat.transaction() as conn:
            # a NUL byte in a file name (the fixture format refuses it, an upstream may not)
            for table in ("files", "file_versions"):
                conn.execute(f"UPDATE {table} SET name = replace(name, '<NUL>', char(0))")
            # malformed JSON where W&B sends JSON strings
            conn.execute("UPDATE runs SET summary = '{\"b\": 2,', config = '[1, 2]', system_metrics = '{oops' "
                         "WHERE project_pk = ? AND run_id = 'badjson'", [ppk])
            rpk = cat.run_pk(ppk, "badjson")
            conn.execute("UPDATE events SET row = 'not json' WHERE run_pk = ? AND seq = 1", [rpk])
            hpk = cat.run_pk(ppk, "badhist")
            # (a finished run's rows sit in a segment: these tail rows replace three of them)
            up.history.append(hpk, [(3, "not json at all"), (5, "[1, 2]"), (7, '{"_step": 999, "loss": 1}')])
        # artifact manifests naming unsafe paths: one version each
        versions = cat.query("SELECT a.pk, a.manifest_md5, a.version_index FROM artifacts a JOIN artifact_collections c "
                             "ON c.pk = a.collection_pk WHERE c.name = 'unsafe' ORDER BY a.version_index")
        for v, bad in zip(versions, UNSAFE_ENTRIES):
            manifest = json.loads(up.objects.read_bytes(v["manifest_md5"]))
            manifest["contents"][bad] = {"digest": ids.md5_hex_to_b64(up.objects.put_bytes(b"evil").md5), "size": 4}
            minfo = up.objects.put_bytes(json.dumps(manifest).encode())
            digest = manifest_digest({k: e["digest"] for k, e in manifest["contents"].items()})
            with cat.transaction() as conn:
                conn.execute("UPDATE artifacts SET manifest_md5 = ?, digest = ? WHERE pk = ?", [minfo.md5, digest, v["pk"]])
        # a manifest whose entry disagrees with the bytes upstream serves for it
        liar = cat.query_one("SELECT a.pk FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
                             "WHERE c.name = 'liar'")
        other = up.objects.put_bytes(b"but the server sends this")
        with cat.transaction() as conn:
            conn.execute("UPDATE artifact_files SET md5 = ?, size = ? WHERE artifact_pk = ? AND path = 'a.txt'",
                         [other.md5, other.size, liar["pk"]])
        # a manifest listing a file upstream has no URL for
        ghost = cat.query_one("SELECT a.pk, a.manifest_md5 FROM artifacts a JOIN artifact_collections c "
                              "ON c.pk = a.collection_pk WHERE c.name = 'ghost'")
        manifest = json.loads(up.objects.read_bytes(ghost["manifest_md5"]))
        manifest["contents"]["missing.txt"] = {"digest": ids.md5_hex_to_b64("0" * 32), "size": 7}
        minfo = up.objects.put_bytes(json.dumps(manifest).encode())
        digest = manifest_digest({k: e["digest"] for k, e in manifest["contents"].items()})
        with cat.transaction() as conn:
            conn.execute("UPDATE artifacts SET manifest_md5 = ?, digest = ? WHERE pk = ?", [minfo.md5, digest, ghost["pk"]])
    return path


class Pages:
    """Rewrites the real server's Runs pages: an empty page before every real one, and the previous
    page's last run repeated at the top of the next (W&B's pagination bug). `drop` removes runs."""

    def __init__(self) -> None:
        self.last_edge: dict[str, Any] | None = None
        self.drop: set[str] = set()
        self.empties = 0
        self.repeats = 0

    def intercept(self, req: dict[str, Any]) -> Any:
        if req["op"] == "Runs":
            doc = json.loads(req["body"])
            cursor = (doc.get("variables") or {}).get("cursor")
            if isinstance(cursor, str) and cursor.startswith("empty:"):
                doc["variables"]["cursor"] = cursor[len("empty:"):] or None
                req["body"] = json.dumps(doc).encode()
                req["real"] = True
        return None

    def rewrite(self, req: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        runs = ((doc.get("data") or {}).get("project") or {}).get("runs")
        if req["op"] != "Runs" or not isinstance(runs, dict):
            return doc
        cursor = req["variables"].get("cursor")
        if not req.get("real"):  # first an empty page that still says "more to come"
            self.empties += 1
            runs["edges"] = []
            runs["pageInfo"] = {"hasNextPage": True, "endCursor": f"empty:{cursor or ''}"}
            return doc
        edges = [e for e in runs["edges"] if e["node"]["name"] not in self.drop]
        if cursor and self.last_edge is not None and self.last_edge["node"]["name"] not in self.drop:
            edges.insert(0, self.last_edge)
            self.repeats += 1
        if runs["edges"]:
            self.last_edge = runs["edges"][-1]
        runs["edges"] = edges
        return doc


def one_pass(url: str, mirror: Path, *, reconcile: bool = False) -> Any:
    cfg = minimal_config(url, mirror, retry_wait_min=0.01, retry_wait_max=0.05)
    cfg.source.page_size = 3
    store = Store(mirror)
    client = make_client(cfg)
    try:
        with store.lock("test"):
            return SyncEngine(cfg, store, client, force_reconcile=reconcile).run_pass()
    finally:
        client.close()
        store.close()


def test_hostile_upstream(tmp_path: Path, start_mirror_server, monkeypatch: pytest.MonkeyPatch) -> None:
    up = make_hostile(tmp_path / "up")
    server = start_mirror_server(up, read_only=True)
    pages = Pages()
    proxy = Proxy(server.url, intercept=pages.intercept, rewrite=pages.rewrite)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    mirror = tmp_path / "store" / "mirror"
    mirror.parent.mkdir()
    before = snapshot(tmp_path, skip=(tmp_path / "store", up))
    try:
        r = one_pass(proxy.url, mirror)
    finally:
        proxy.stop()
    assert r.status == "errors", r.errors  # quarantines are reported as errors of the pass
    assert pages.empties >= 6 and pages.repeats >= 5  # the listing really was hostile

    # nothing outside the store directory; inside it, only the store's own files
    assert snapshot(tmp_path, skip=(tmp_path / "store", up)) == before
    top = sorted(p.name for p in mirror.iterdir())
    assert set(top) <= {"catalog.db", "catalog.db-wal", "catalog.db-shm", "catalog.db.migrate-lock", "lock", "objects"}, top
    assert {p.name for p in (mirror / "objects").iterdir()} <= {"md5", "tmp"}
    assert all(len(p.name) in (2, 30) for p in (mirror / "objects" / "md5").rglob("*"))
    assert store_problems(mirror) == [] and verify_deep(mirror) == []

    with Store(mirror, create=False) as s:
        q = s.catalog.query
        quarantine = q("SELECT kind, upstream_path, reason FROM quarantine ORDER BY pk")
        FIGURES["quarantined"] = len(quarantine)
        paths = [x["upstream_path"] for x in quarantine]
        reasons = " | ".join(f"{x['kind']} {x['upstream_path'][:80]!r}: {x['reason']}" for x in quarantine)
        # every refused file name: quarantined with its upstream path, never stored
        for name in UNSAFE_FILES:
            assert any(p.startswith(f"{E}/{P}/files/") and name[:100] in p for p in paths), (name, reasons)
        stored_files = {x["name"] for x in q("SELECT f.name FROM files f JOIN runs r ON r.pk = f.run_pk "
                                              "WHERE r.run_id = 'files'")}
        assert stored_files == set(GOOD_FILES)
        # every refused artifact entry: its version quarantined, with the path and the entry named
        for i, bad in enumerate(UNSAFE_ENTRIES):
            hit = [x for x in quarantine if x["upstream_path"] == f"{E}/{P}/unsafe:v{i}"]
            assert hit and "refused entry path" in hit[0]["reason"], (bad, reasons)
        # the lying manifest: the file is quarantined with its path; the ghost file likewise
        assert any(x["upstream_path"] == f"{E}/{P}/liar:v0/a.txt" and "failed verification" in x["reason"]
                   for x in quarantine), reasons
        assert any(x["upstream_path"] == f"{E}/{P}/ghost:v0/missing.txt" for x in quarantine), reasons
        # malformed JSON: quarantined by field, nothing malformed stored
        for needle in ("summaryMetrics: malformed JSON", "config: expected a JSON object", "systemMetrics",
                       "malformed system-metrics row", "outside the requested window"):
            assert needle in reasons, (needle, reasons)
        bj = q("SELECT config, summary, system_metrics FROM runs WHERE run_id = 'badjson'")[0]
        for v in bj.values():
            assert v is None or isinstance(json.loads(v), dict)
        def texts(name: str) -> list[tuple[int, str]]:
            return list(s.history.texts(q("SELECT pk FROM runs WHERE run_id = ?", [name])[0]["pk"]))

        steps = [step for step, _ in texts("badhist")]
        assert steps == [0, 1, 2, 4, 6, 8, 9, 10, 11]
        # good items mirrored: the unicode artifact, NaN/Infinity exactly, large rows whole, odd ids
        arts = {x["name"]: x["n"] for x in q("SELECT c.name, COUNT(a.pk) AS n FROM artifact_collections c "
                                             "LEFT JOIN artifacts a ON a.collection_pk = c.pk GROUP BY c.name")}
        assert arts.get("good") == 1 and arts.get("unsafe", 0) == 0 and arts.get("liar", 0) == 0
        nan = q("SELECT summary, config FROM runs WHERE run_id = 'nan'")[0]
        s_ = jsontext.loads(nan["summary"])
        assert math.isnan(s_["loss"]) and s_["best"] == -math.inf and s_["n"]["deep"] == math.inf
        rows = [json.loads(t) for _, t in texts("nan")]
        assert math.isnan(rows[0]["loss"]) and rows[1]["loss"] == math.inf and rows[2]["loss"] == -math.inf
        big = q("SELECT length(summary) AS s, length(config) AS c FROM runs WHERE run_id = 'big'")[0]
        assert big["s"] > 1_000_000 and big["c"] > 500_000
        assert len(texts("big")[0][1]) > 2_000_000
        names = {x["run_id"] for x in q("SELECT run_id FROM runs WHERE mirrored_at IS NOT NULL")}
        assert {"ünïcode-rün", LONG_ID, "nan", "big", "files"} <= names and {f"r{i:02d}" for i in range(9)} <= names
        created = q("SELECT run, COUNT(*) AS n FROM changes WHERE kind = 'run_created' GROUP BY run")
        assert all(x["n"] == 1 for x in created) and len(created) == 16  # duplicates announced once
        FIGURES["hostile_inputs"] = (
            len(UNSAFE_FILES) + len(GOOD_FILES) + len(UNSAFE_ENTRIES) + 1  # names (+ a unicode entry)
            + 3 + 1 + 3  # malformed config/summary/systemMetrics, a bad event row, 3 bad history rows
            + 1 + 3 + 2  # NaN/Infinity values, 3 very large values, a 256-byte and a unicode run id
            + pages.empties + pages.repeats  # empty pages and repeated runs
            + 2 + 1)  # a lying and a ghost manifest, a run dropped from a listing

    # a reconcile through a listing that repeats runs and silently drops r03: r03 is not "deleted"
    pages2 = Pages()
    pages2.drop = {"r03"}
    proxy = Proxy(server.url, intercept=pages2.intercept, rewrite=pages2.rewrite)
    try:
        r2 = one_pass(proxy.url, mirror, reconcile=True)
    finally:
        proxy.stop()
    assert r2.stats.get("incomplete_listings") == 1
    with Store(mirror, create=False) as s:
        assert s.catalog.scalar("SELECT tombstoned_at FROM runs WHERE run_id = 'r03'") is None
        assert s.catalog.scalar("SELECT COUNT(*) FROM changes WHERE kind = 'tombstoned'") == 0

    # the mirror serves exactly what it accepted; an export stays in its directory
    out = tmp_path / "store" / "export"
    before = snapshot(tmp_path, skip=(tmp_path / "store", up))
    assert main(["export", "--store", str(mirror), "--format", "jsonl", "--out", str(out)]) == 0
    assert snapshot(tmp_path, skip=(tmp_path / "store", up)) == before
    assert sum(1 for p in out.rglob("*.jsonl")) >= 3
    state = mirror_state(mirror, E)
    assert state[P]["runs"]["nan"]["history"][0] == 3
