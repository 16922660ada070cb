"""The sync engine against the real server over loopback, judged by the official client.

One upstream (the shared fixture document, served writable so the official client can edit it)
and one mirror per module. The tests run in file order and build on each other's passes:
first pass -> round trip -> no-change pass -> history appended -> edits at reconcile -> deletion
-> corrupt download (and tombstones withheld) -> recovery.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ENTITY, PROJECT, copy_store
from scale_support import point_aws_at

from wandb_mirror.config import Config, minimal_config
from wandb_mirror.models import Run, RunFile
from wandb_mirror.store import Store
from wandb_mirror.store.location import StoreLocation, open_store
from wandb_mirror.sync import PassResult, SyncEngine, make_client
from wandb_mirror.sync.changes import changes_feed

KEY = "k" * 40


class World:
    def __init__(self, up_path: Path, server: Any, mirror_path: Path, config: Config, catalog: str | None = None,
                 objects: str | None = None, s3_endpoint_url: str | None = None):
        self.up_path = up_path
        self.server = server
        self.mirror_path = mirror_path
        self.config = config
        # the mirror: PATH/catalog.db and PATH/objects, or a PostgreSQL database with its objects on
        # S3 (the same tests, both kinds of store)
        self.where: Any = (StoreLocation(path=mirror_path, catalog=catalog, objects=objects,
                                         s3_endpoint_url=s3_endpoint_url) if catalog else mirror_path)

    def sync(self, *, reconcile: bool = False) -> tuple[PassResult, list[tuple[str, dict[str, Any]]]]:
        store = open_store(self.where)
        client = make_client(self.config)
        client.t.trace = []
        try:
            with store.lock("test"):
                result = SyncEngine(self.config, store, client, force_reconcile=reconcile).run_pass()
        finally:
            client.close()
            store.close()
        return result, client.t.trace

    def ops(self) -> Counter:
        return Counter(e["operation"] or ("GET " + e["path"].split("/")[1]) for e in self.server.request_log())

    def mirror(self) -> Store:
        return open_store(self.where)

    def upstream(self) -> Store:
        return Store(self.up_path)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, seeded_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from wandb_mirror.server import start_server

    catalog = objects = endpoint = None
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "postgresql":
            # the scale-out store: a PostgreSQL catalog with its objects on S3 (moto)
            pytest.importorskip("psycopg")
            pytest.importorskip("boto3")
            pg = request.getfixturevalue("postgres_server")
            schema = "sync_engine_" + tmp_path_factory.mktemp("pg").name.replace("-", "_").lower()
            pg.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
            catalog = f"{pg.url}?options=-csearch_path%3D{schema}"
            s3 = point_aws_at(request.getfixturevalue("s3_server"), mp)
            objects, endpoint = f"s3://{s3.new_bucket()}/mirror", s3.url
        base = tmp_path_factory.mktemp("sync-engine")
        up = copy_store(seeded_store, base / "upstream")
        server = start_server(up, writable=True)
        cfg = minimal_config(server.url, base / "mirror", retry_wait_min=0.01, retry_wait_max=0.05, concurrency=4)
        mp.setenv("WANDB_API_KEY", KEY)
        w = World(up, server, base / "mirror", cfg, catalog, objects, endpoint)
        with w.mirror() as m:
            assert m.catalog.engine == request.param
            assert m.objects.describe().startswith("s3://") == (request.param == "postgresql")
        w.first, _ = w.sync()
        w.first_ops = w.ops()
        yield w
    server.stop()


def q(store: Store, sql: str, params: list[Any] | tuple = ()) -> list[dict[str, Any]]:
    return store.catalog.query(sql, params)


# ---------------------------------------------------------------------------------------------
# 1. the first pass
# ---------------------------------------------------------------------------------------------
def test_first_pass_mirrors_the_default_entity(world: World) -> None:
    r = world.first
    assert r.status == "ok", r.errors
    assert r.stats["projects"] == 2 and r.stats["runs_new"] == 8
    up, mi = world.upstream(), world.mirror()
    try:
        sql_runs = ("SELECT p.entity, p.name AS project, r.run_id, r.state, r.config, r.summary, r.tags, r.notes, "
                    "r.display_name, r.created_at, r.heartbeat_at, r.sweep_name, r.last_step, r.history_keys, r.host "
                    "FROM runs r JOIN projects p ON p.pk = r.project_pk WHERE p.entity = ? ORDER BY 1, 2, 3")
        a, b = q(up, sql_runs, [ENTITY]), q(mi, sql_runs, [ENTITY])
        assert [x["run_id"] for x in a] == [x["run_id"] for x in b]
        for x, y in zip(a, b):
            for k in ("config", "summary", "history_keys"):
                assert json.loads(x[k]) == json.loads(y[k]) or (x[k] == y[k]), (x["run_id"], k)
            for k in ("state", "tags", "notes", "display_name", "created_at", "heartbeat_at", "sweep_name", "last_step",
                      "host"):
                assert x[k] == y[k], (x["run_id"], k)
        sql_hist = ("SELECT r.run_id, COUNT(h.step) AS n, MAX(h.step) AS last FROM runs r JOIN projects p ON p.pk = r.project_pk "
                    "LEFT JOIN history h ON h.run_pk = r.pk WHERE p.entity = ? GROUP BY r.run_id ORDER BY r.run_id")
        assert q(up, sql_hist, [ENTITY]) == q(mi, sql_hist, [ENTITY])
        sql_files = ("SELECT r.run_id, f.name AS file, f.md5, f.size FROM files f JOIN runs r ON r.pk = f.run_pk "
                     "JOIN projects p ON p.pk = r.project_pk WHERE p.entity = ? ORDER BY 1, 2")
        files = q(mi, sql_files, [ENTITY])
        assert files == q(up, sql_files, [ENTITY]) and len(files) == 35
        assert all(mi.objects.has(f["md5"]) for f in files)
        sql_art = ("SELECT c.name, a.version_index, a.digest, a.aliases, a.size, a.file_count FROM artifacts a "
                   "JOIN artifact_collections c ON c.pk = a.collection_pk ORDER BY 1, 2")
        assert q(up, sql_art) == q(mi, sql_art)
        for row in q(mi, "SELECT manifest_md5 FROM artifacts"):
            assert mi.objects.has(row["manifest_md5"])
        refs = q(mi, "SELECT md5 FROM artifact_files WHERE md5 IS NOT NULL")
        assert refs and all(mi.objects.has(x["md5"]) for x in refs)
        # producer and consumer links
        # (ordered by artifact id: the mirror records artifacts concurrently, so its pks follow no fixed order)
        assert q(mi, "SELECT a.id, r.run_id FROM artifacts a JOIN runs r ON r.pk = a.producer_run_pk ORDER BY a.id") == \
            q(up, "SELECT a.id, r.run_id FROM artifacts a JOIN runs r ON r.pk = a.producer_run_pk ORDER BY a.id")
        assert q(mi, "SELECT COUNT(*) AS n FROM artifact_usage")[0]["n"] == 1
        assert q(mi, "SELECT name, state, best_loss, metric_name FROM sweeps") == \
            q(up, "SELECT name, state, best_loss, metric_name FROM sweeps")
        assert len(q(mi, "SELECT id FROM reports")) == 2
        # only the key's default entity: team-x/shared is not mirrored
        assert q(mi, "SELECT COUNT(*) AS n FROM runs r JOIN projects p ON p.pk = r.project_pk WHERE p.entity = 'team-x'")[0]["n"] == 0
        assert mi.catalog.get_meta("default_entity") == ENTITY
        # the pass is recorded
        row = q(mi, "SELECT status, requests, stats FROM passes WHERE id = ?", [r.pass_id])[0]
        assert row["status"] == "ok" and row["requests"] == r.requests and json.loads(row["stats"])["runs_new"] == 8
    finally:
        up.close()
        mi.close()


def test_first_pass_change_log(world: World) -> None:
    mi = world.mirror()
    try:
        feed = changes_feed(mi.catalog.conn, 0, limit=100_000)
    finally:
        mi.close()
    kinds = Counter(c["kind"] for c in feed)
    assert kinds["run_created"] == 8 and kinds["file_mirrored"] == 35 and kinds["artifact_version_mirrored"] == 3
    assert kinds["history_appended"] == 3 and kinds["sweep_updated"] == 1 and kinds["sweep_finished"] == 1
    assert kinds["tombstoned"] == 0
    r01 = [c for c in feed if c["run"] == "r01"]
    assert r01[0]["kind"] == "run_created"  # per run, in commit order
    h = [c for c in r01 if c["kind"] == "history_appended"][0]
    assert h["payload"] == {"first_step": 0, "last_step": 249, "rows": 250}
    f = [c for c in r01 if c["kind"] == "file_mirrored" and c["subject"] == "model.bin"][0]
    assert f["payload"]["size"] == 1_500_000 and f["payload"]["changed"] is False and len(f["payload"]["md5"]) == 32
    assert [c["seq"] for c in feed] == sorted(c["seq"] for c in feed)


# ---------------------------------------------------------------------------------------------
# 2. the round trip: the official client sees the same thing upstream and in the served mirror
# ---------------------------------------------------------------------------------------------
def _norm(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def _sweeps(api: Any, project: str) -> list[Any]:
    return [(s.id, s.state, s.config, getattr(s.best_run(), "id", None)) for s in api.project(project, ENTITY).sweeps()]


def test_round_trip_through_the_official_client(world: World, make_wandb_api, start_mirror_server,
                                                tmp_path: Path) -> None:
    served = start_mirror_server(world.where, read_only=True)
    A = make_wandb_api(world.server.url)
    B = make_wandb_api(served.url)
    diffs: list[str] = []

    def cmp(what: str, a: Any, b: Any) -> None:
        if _norm(a) != _norm(b):
            diffs.append(f"{what}: upstream {_norm(a)[:200]} != mirror {_norm(b)[:200]}")

    viewer = lambda api: (api.default_entity, api.viewer.username, api.viewer.name, api.viewer.email)  # noqa: E731
    cmp("viewer", viewer(A), viewer(B))
    cmp("projects", sorted(p.name for p in A.projects(ENTITY)), sorted(p.name for p in B.projects(ENTITY)))
    for p in ("vision", "nlp"):
        path = f"{ENTITY}/{p}"
        ra, rb = list(A.runs(path)), list(B.runs(path))
        cmp(f"{p} runs", [r.id for r in ra], [r.id for r in rb])
        for x, y in zip(ra, rb):
            for attr in ("storage_id", "name", "state", "tags", "notes", "group", "job_type", "created_at",
                         "heartbeat_at", "sweep_name", "lastHistoryStep"):
                cmp(f"{x.id}.{attr}", getattr(x, attr), getattr(y, attr))
            cmp(f"{x.id}.config", x.config, y.config)
            cmp(f"{x.id}.rawconfig", x.rawconfig, y.rawconfig)
            cmp(f"{x.id}.summary", dict(x.summary), dict(y.summary))
            cmp(f"{x.id}.system_metrics", x.system_metrics, y.system_metrics)
            cmp(f"{x.id}.scan_history", list(x.scan_history()), list(y.scan_history()))
            cmp(f"{x.id}.events", x.history(stream="system", pandas=False, samples=10_000),
                y.history(stream="system", pandas=False, samples=10_000))
            cmp(f"{x.id}.files", sorted((f.name, f.md5, f.size) for f in x.files()),
                sorted((f.name, f.md5, f.size) for f in y.files()))
            cmp(f"{x.id}.logged", [(a.name, a.digest, a.aliases) for a in x.logged_artifacts()],
                [(a.name, a.digest, a.aliases) for a in y.logged_artifacts()])
            cmp(f"{x.id}.used", [(a.name, a.digest) for a in x.used_artifacts()],
                [(a.name, a.digest) for a in y.used_artifacts()])
        for t in A.artifact_types(path):
            for c in t.collections():
                versions = [(v.name, v.digest, v.aliases, v.metadata, v.size) for v in A.artifacts(t.name, f"{path}/{c.name}")]
                cmp(f"{c.name} versions", versions,
                    [(v.name, v.digest, v.aliases, v.metadata, v.size) for v in B.artifacts(t.name, f"{path}/{c.name}")])
                for v in B.artifacts(t.name, f"{path}/{c.name}"):
                    root = v.download(root=str(tmp_path / c.name / v.version))
                    v.verify(root=root)  # raises on any mismatch
        cmp(f"{p} sweeps", _sweeps(A, p), _sweeps(B, p))
        cmp(f"{p} reports", [(r.id, r.name, r.spec) for r in A.reports(path)],
            [(r.id, r.name, r.spec) for r in B.reports(path)])
    assert not diffs, "\n".join(diffs)


# ---------------------------------------------------------------------------------------------
# 3. incremental: nothing changed upstream -> a constant number of requests
# ---------------------------------------------------------------------------------------------
PER_RUN_OPS = {"Run", "HistoryPage", "RunFullHistory", "RunFiles", "RunOutputArtifacts", "RunInputArtifacts",
               "FetchArtifactManifest", "GetArtifactMembershipFileUrls", "ProjectArtifacts"}


ORG_SIDE = {"FetchOrgInfoFromEntity": 1, "TeamMembers": 1, "IntegrationsByEntity": 1, "GetEntityAutomations": 1,
            "RunConsoleLogCount": 1}

def test_no_change_pass_costs_a_constant_number_of_requests(world: World) -> None:
    world.server.reset_log()
    r, _ = world.sync()
    assert r.status == "ok", r.errors
    ops = world.ops()
    assert not (set(ops) & PER_RUN_OPS), ops
    assert not any(k.startswith("GET") for k in ops), ops
    # per pass: Viewer, ServerFeaturesQuery, GetProjects; per project: Runs, ProjectArtifactTypes, GetSweeps,
    # ProjectViews, and one ArtifactTypeArtifactCollections per artifact type (vision has 2, nlp none); the
    # organization side (no organization here): members, integrations, automations, and the console line
    # count of the one unfinished run
    assert ops == Counter({"Viewer": 1, "ServerFeaturesQuery": 1, "GetProjects": 1, "Runs": 2,
                           "ProjectArtifactTypes": 2, "ArtifactTypeArtifactCollections": 2, "GetSweeps": 2,
                           "ProjectViews": 2, **ORG_SIDE})
    assert r.requests == sum(ops.values()) == 13 + sum(ORG_SIDE.values())
    assert r.first_change_seq is None  # nothing changed, nothing logged
    # more runs upstream do not make an unchanged pass dearer
    up = world.upstream()
    try:
        ppk = up.catalog.project_pk(ENTITY, "nlp")
        for i in range(120):
            up.catalog.upsert_run(ppk, Run(run_id=f"bulk{i:03d}", state="finished", created_at=f"2024-02-02T00:{i // 60:02d}:{i % 60:02d}",
                                           heartbeat_at="2024-02-03T00:00:00", updated_at="2024-02-03T00:00:00"))
    finally:
        up.close()
    r, _ = world.sync()
    assert r.status == "ok" and r.stats["runs_new"] == 120
    world.server.reset_log()
    r, _ = world.sync()
    assert r.status == "ok" and r.requests == 13 + sum(ORG_SIDE.values()) and world.ops()["Runs"] == 2


# ---------------------------------------------------------------------------------------------
# 4. history appended upstream is fetched from the last mirrored step
# ---------------------------------------------------------------------------------------------
def _append_upstream_history(world: World, run: str, steps: range, heartbeat: str) -> None:
    up = world.upstream()
    try:
        ppk = up.catalog.project_pk(ENTITY, PROJECT)
        rpk = up.catalog.run_pk(ppk, run)
        rows = [(s, json.dumps({"_step": s, "_runtime": s * 0.5, "loss": 1.0 / (s + 1)})) for s in steps]
        up.catalog.append_history(rpk, rows)
        n = up.history.count(rpk)
        keys = {"lastStep": steps[-1], "keys": {"loss": {"typeCounts": [{"type": "number", "count": n}]}}}
        with up.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET last_step = ?, history_keys = ?, history_line_count = ?, heartbeat_at = ?, "
                         "updated_at = ? WHERE pk = ?", [steps[-1], json.dumps(keys), n, heartbeat, heartbeat, rpk])
    finally:
        up.close()


def test_history_appended_upstream_is_fetched_from_the_last_step(world: World) -> None:
    _append_upstream_history(world, "r04", range(0, 100), "2024-06-01T00:00:00")
    r, _ = world.sync()
    assert r.status == "ok" and r.stats["history_rows"] == 100
    _append_upstream_history(world, "r04", range(100, 150), "2024-06-01T00:05:00")
    world.server.reset_log()
    r, trace = world.sync()
    assert r.status == "ok", r.errors
    pages = [v for op, v in trace if op == "HistoryPage"]
    # from the last mirrored step: its row is asked again, to notice a history rewritten upstream
    assert [(v["minStep"], v["maxStep"], v["pageSize"]) for v in pages] == [(99, 150, 51)]
    assert world.ops()["HistoryPage"] == 1
    assert r.stats["history_rows"] == 50
    mi = world.mirror()
    try:
        ppk = mi.catalog.project_pk(ENTITY, PROJECT)
        rpk = mi.catalog.run_pk(ppk, "r04")
        assert mi.history.count(rpk) == 150
        assert mi.catalog.get_run(ppk, "r04").last_step == 149
        ev = changes_feed(mi.catalog.conn, r.first_change_seq - 1, kinds=("history_appended",))
        assert [c["payload"] for c in ev] == [{"first_step": 100, "last_step": 149, "rows": 50}]
    finally:
        mi.close()


# ---------------------------------------------------------------------------------------------
# 5. edits made after a run finished arrive at the next reconcile
# ---------------------------------------------------------------------------------------------
def test_summary_edit_and_new_tag_arrive_at_reconcile(world: World, make_wandb_api) -> None:
    api = make_wandb_api(world.server.url)
    run = api.run(f"{ENTITY}/{PROJECT}/r02")
    run.summary["post_hoc_score"] = 0.875
    run.summary.update()
    run6 = api.run(f"{ENTITY}/{PROJECT}/r06")
    run6.tags = [*run6.tags, "reviewed"]
    run6.update()

    world.server.reset_log()
    r, _ = world.sync(reconcile=True)
    assert r.status == "ok", r.errors
    ops = world.ops()
    assert ops["Run"] == 2  # only the two edited runs are fetched in full
    assert ops["Runs"] == 2  # a light listing of every run, 1000 a page: vision and nlp (122 runs) in one each
    mi = world.mirror()
    try:
        ppk = mi.catalog.project_pk(ENTITY, PROJECT)
        assert mi.catalog.get_run(ppk, "r02").summary_values()["post_hoc_score"] == 0.875
        assert "reviewed" in mi.catalog.get_run(ppk, "r06").tag_list()
        updates = {c["run"]: c["payload"]["changes"] for c in
                   changes_feed(mi.catalog.conn, r.first_change_seq - 1, kinds=("run_updated",))}
    finally:
        mi.close()
    assert updates["r02"]["summary"] == {"before": {}, "after": {"post_hoc_score": 0.875}}
    assert updates["r06"]["tags"]["after"] == [*updates["r06"]["tags"]["before"], "reviewed"]


# ---------------------------------------------------------------------------------------------
# 6. a run deleted upstream becomes a tombstone; its data stays
# ---------------------------------------------------------------------------------------------
def test_deleted_run_becomes_a_tombstone_with_its_data(world: World, make_wandb_api) -> None:
    api = make_wandb_api(world.server.url)
    api.run(f"{ENTITY}/{PROJECT}/r01").delete()
    r, _ = world.sync()  # the next ordinary pass lists every run's markers (a small project), so it knows
    assert r.status == "ok", r.errors
    assert r.stats["tombstoned"] == 1
    mi = world.mirror()
    try:
        ppk = mi.catalog.project_pk(ENTITY, PROJECT)
        row = q(mi, "SELECT pk, tombstoned_at FROM runs WHERE project_pk = ? AND run_id = 'r01'", [ppk])[0]
        assert row["tombstoned_at"]
        assert mi.history.count(row["pk"]) == 250
        assert mi.catalog.scalar("SELECT COUNT(*) FROM files WHERE run_pk = ?", [row["pk"]]) == 5
        t = changes_feed(mi.catalog.conn, r.first_change_seq - 1, kinds=("tombstoned",))
        assert [(c["run"], c["payload"]) for c in t] == [("r01", {"kind": "run", "key": f"{ENTITY}/{PROJECT}/r01"})]
    finally:
        mi.close()


# ---------------------------------------------------------------------------------------------
# 6b. an alias moved upstream arrives with the next pass; a rewritten file keeps both versions
# ---------------------------------------------------------------------------------------------
def test_moved_alias_and_rewritten_file(world: World, make_wandb_api) -> None:
    api = make_wandb_api(world.server.url)
    art = api.artifact(f"{ENTITY}/{PROJECT}/mnist:v0")
    art.aliases.append("prod")
    art.save()
    r, _ = world.sync()  # incremental: the collection's updatedAt moved, so its versions are listed again
    assert r.status == "ok", r.errors
    mi = world.mirror()
    try:
        moved = changes_feed(mi.catalog.conn, r.first_change_seq - 1, kinds=("artifact_aliases_changed",))
        assert [(c["payload"]["version_index"], c["payload"]["added"], c["payload"]["removed"]) for c in moved] == \
            [(0, ["prod"], [])]
        assert "prod" in json.loads(q(mi, "SELECT aliases FROM artifacts WHERE version_index = 0 AND "
                                          "collection_pk = (SELECT pk FROM artifact_collections WHERE name = 'mnist')")[0]["aliases"])
    finally:
        mi.close()

    up = world.upstream()
    try:
        ppk = up.catalog.project_pk(ENTITY, PROJECT)
        rpk = up.catalog.run_pk(ppk, "r02")
        old = q(up, "SELECT id, md5 FROM files WHERE run_pk = ? AND name = 'logs/part-00.txt'", [rpk])[0]
        info = up.objects.put_bytes(b"part 0, rewritten\n")
        up.catalog.upsert_file(rpk, RunFile(name="logs/part-00.txt", size=info.size, md5=info.md5, id=old["id"],
                                            updated_at="2024-06-03T00:00:00"))
        with up.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET updated_at = '2024-06-03T00:00:00' WHERE pk = ?", [rpk])
    finally:
        up.close()
    r, _ = world.sync(reconcile=True)
    assert r.status == "ok", r.errors
    mi = world.mirror()
    try:
        rpk = mi.catalog.run_pk(mi.catalog.project_pk(ENTITY, PROJECT), "r02")
        versions = q(mi, "SELECT md5 FROM file_versions WHERE run_pk = ? AND name = 'logs/part-00.txt' ORDER BY pk", [rpk])
        assert [v["md5"] for v in versions] == [old["md5"], info.md5]
        assert all(mi.objects.has(v["md5"]) for v in versions)
        assert q(mi, "SELECT md5 FROM files WHERE run_pk = ? AND name = 'logs/part-00.txt'", [rpk])[0]["md5"] == info.md5
        ev = changes_feed(mi.catalog.conn, r.first_change_seq - 1, kinds=("file_mirrored",))
        assert [(c["run"], c["subject"], c["payload"]["changed"]) for c in ev] == [("r02", "logs/part-00.txt", True)]
    finally:
        mi.close()


# ---------------------------------------------------------------------------------------------
# 7. wrong bytes upstream are rejected and reported, never stored; that pass tombstones nothing
# ---------------------------------------------------------------------------------------------
class _CorruptOnly:
    def __init__(self, name: str):
        self.name = name

    def decide(self, method: str, path: str, body_digest: str, file_body: bool) -> str | None:
        return "corrupt" if file_body and self.name in path else None


def test_corrupt_download_is_quarantined_and_blocks_tombstones(world: World) -> None:
    good = b"fresh results\n" * 100
    up = world.upstream()
    try:
        ppk = up.catalog.project_pk(ENTITY, PROJECT)
        rpk = up.catalog.run_pk(ppk, "r05")
        info = up.objects.put_bytes(good)
        up.catalog.upsert_file(rpk, RunFile(name="results.txt", size=info.size, md5=info.md5, id="RmlsZTo5OTk=",
                                            updated_at="2024-06-02T00:00:00"))
        with up.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET updated_at = '2024-06-02T00:00:00' WHERE pk = ?", [rpk])
            # and a run disappears upstream in the same pass
            conn.execute("UPDATE runs SET tombstoned_at = '2024-06-02T00:00:00' WHERE project_pk = ? AND run_id = 'n1'",
                         [up.catalog.project_pk(ENTITY, "nlp")])
    finally:
        up.close()
    # serve refuses to send bytes that differ from their md5, so the upstream's wrong bytes come from
    # its fault injection: every download of results.txt arrives at its size with other bytes
    world.server._server.faults = _CorruptOnly("results.txt")

    r, _ = world.sync(reconcile=True)
    assert r.status == "errors"
    assert any("results.txt" in e and "verification" in e for e in r.errors), r.errors
    mi = world.mirror()
    try:
        qrows = q(mi, "SELECT kind, upstream_path, reason FROM quarantine")
        assert [(x["kind"], x["upstream_path"]) for x in qrows] == [("file", f"{ENTITY}/{PROJECT}/r05/results.txt")]
        assert "md5 mismatch" in qrows[0]["reason"]
        assert not mi.objects.has(info.md5)
        if hasattr(mi.objects, "tmp"):  # local objects: nothing half-written left behind
            assert list(mi.objects.tmp.iterdir()) == []
        assert q(mi, "SELECT COUNT(*) AS n FROM files WHERE name = 'results.txt'")[0]["n"] == 0
        # errors in the pass: the vanished run is not tombstoned
        nlp = mi.catalog.project_pk(ENTITY, "nlp")
        assert q(mi, "SELECT tombstoned_at FROM runs WHERE project_pk = ? AND run_id = 'n1'", [nlp])[0]["tombstoned_at"] is None
        assert q(mi, "SELECT status FROM passes WHERE id = ?", [r.pass_id])[0]["status"] == "errors"
    finally:
        mi.close()

    # upstream repaired: the next pass retries that run's files and applies the tombstone
    world.server._server.faults = _CorruptOnly("no such file")
    r, _ = world.sync(reconcile=True)
    assert r.status == "ok", r.errors
    mi = world.mirror()
    try:
        assert mi.objects.has(info.md5)
        assert q(mi, "SELECT md5 FROM files WHERE name = 'results.txt'")[0]["md5"] == info.md5
        nlp = mi.catalog.project_pk(ENTITY, "nlp")
        assert q(mi, "SELECT tombstoned_at FROM runs WHERE project_pk = ? AND run_id = 'n1'", [nlp])[0]["tombstoned_at"]
    finally:
        mi.close()


def test_first_pass_cost_is_per_changed_run(world: World) -> None:
    """A first pass lists each project once and then asks per run: files, events, artifacts, history windows."""
    ops = world.first_ops
    assert ops["Runs"] == 2 and ops["RunFiles"] == 8 and ops["RunFullHistory"] == 8
    assert ops["RunOutputArtifacts"] == 8 and ops["RunInputArtifacts"] == 8
    # the three runs with history are finished and exported: one RunParquetHistory and one file
    # each, no HistoryPage window (tests/test_history_exports.py checks the files and the live tail)
    assert ops["RunParquetHistory"] == 3 and ops["HistoryPage"] == 0
    assert ops["Run"] == 0  # the initial listing carries config, summary and history keys
