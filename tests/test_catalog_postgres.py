"""The catalog on PostgreSQL (docs/scale-out.md), against a real server started by the
`postgres_server` fixture and moto's S3 server: a store whose catalog is a database owned by an
ordinary role creates and migrates its tables there; sync, verify --deep, status, gc, repair and
export work on it; two read-only `serve` replicas answer from it; one writer at a time."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENTITY, server_fixture_doc
from scale_support import served, served_run_files

from wandb_mirror.cli import main
from wandb_mirror.errors import StoreLocked
from wandb_mirror.models import Project, Run
from wandb_mirror.store import Store
from wandb_mirror.store.migrations import MIGRATIONS

pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def config(tmp_path: Path, upstream: str, catalog: str, objects: str, endpoint: str | None = None) -> Path:
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[source]\nbase_url = "{upstream}"\n\n[store]\ncatalog = "{catalog}"\nobjects = "{objects}"\n'
                   + (f's3_endpoint_url = "{endpoint}"\n' if endpoint else "")
                   + '\n[sync]\nprogress = "never"\nretry_wait_min = "10ms"\nretry_wait_max = "50ms"\n')
    return cfg


@pytest.fixture
def api_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)


def test_an_ordinary_role_owns_the_database_and_the_catalog_migrates_in_it(postgres_server, tmp_path: Path,
                                                                           monkeypatch) -> None:
    role = "mirror_" + os.urandom(4).hex()
    postgres_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    # an ICU (natural-language) collation, as a database made with a locale gets: the catalog's
    # order must still be SQLite's, byte by byte
    postgres_server.psql(f"CREATE DATABASE {role} OWNER {role} TEMPLATE template0 LOCALE_PROVIDER icu "
                         "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    postgres_server.psql(f"ALTER DATABASE {role} SET password_encryption = 'scram-sha-256'")
    url = f"postgresql://{role}@{postgres_server.host}:{postgres_server.port}/{role}"
    monkeypatch.setenv("PGPASSWORD", f"pw-{role}")  # libpq's usual places (trust auth accepts it too)
    with Store(tmp_path / "s", catalog=url) as store:
        assert store.catalog.engine == "postgresql"
        done = [r["name"] for r in store.catalog.query("SELECT name FROM _migrations ORDER BY version")]
        assert done == [name for name, _ in MIGRATIONS]
        owners = {r["tableowner"] for r in store.catalog.query(
            "SELECT tableowner FROM pg_tables WHERE schemaname = current_schema()")}
        assert owners == {role}
        pk = store.catalog.upsert_project(Project(entity="acme", name="order"))
        for run_id in ("a", "B", "_"):
            store.catalog.conn.execute("INSERT INTO runs (project_pk, run_id) VALUES (?, ?)", [pk, run_id])
        store.catalog.conn.commit()
        got = [r["run_id"] for r in store.catalog.query("SELECT run_id FROM runs WHERE project_pk = ? ORDER BY run_id",
                                                       [pk])]
        assert got == ["B", "_", "a"]  # bytewise, as SQLite (en-US would say _, a, B)
        # a key given explicitly (as SQLite allows a rowid to be) moves the identity past it
        store.catalog.conn.execute("INSERT INTO runs (pk, project_pk, run_id) VALUES (?, ?, ?)", [10**6, pk, "given"])
        store.catalog.conn.commit()
        assert store.catalog.upsert_run(pk, Run(run_id="next")) == 10**6 + 1
        # the views read the same rows on PostgreSQL (their text is PostgreSQL's own)
        from wandb_mirror.fixtures import seed

        seed(store, server_fixture_doc())
        flat = store.catalog.query("SELECT id, config FROM runs_flat WHERE id = 'r01'")
        assert flat and json.loads(flat[0]["config"])
        store.catalog.conn.execute("INSERT INTO history (run_pk, step, row) VALUES (?, ?, ?)",
                                   [flat_pk(store), 10**10, '{"_step": 10000000000, "loss": 0.5, "ok": true}'])
        store.catalog.conn.commit()
        long = store.catalog.query("SELECT key, value, type FROM history_long WHERE step = ? ORDER BY key", [10**10])
        assert [(r["key"], r["value"]) for r in long] == [("loss", "0.5"), ("ok", "true")]  # a step beyond 2**31
    # opened again: nothing to migrate, the data is there
    with Store(tmp_path / "s", catalog=url, create=False) as again:
        assert again.catalog.scalar("SELECT COUNT(*) FROM runs") > 0
        assert again.catalog.scalar("SELECT COUNT(*) FROM _migrations") == len(MIGRATIONS)


def flat_pk(store: Store) -> int:
    return int(store.catalog.scalar("SELECT run_pk FROM runs_flat WHERE id = 'r01'"))


def test_sync_into_postgresql_and_s3_verifies_collects_serves_and_exports(seeded_server, s3_env, pg_url: str,
                                                                         tmp_path: Path, capsys, api_env) -> None:
    bucket = s3_env.new_bucket()
    cfg = config(tmp_path, seeded_server.url, pg_url, f"s3://{bucket}/mirror")
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    stored = [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert stored and all(k.startswith("mirror/md5/") for k in stored)

    assert main(["verify", "--deep", "--config", str(cfg)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith("verify --deep: ok;") and f"{len(stored)} objects re-hashed" in out

    assert main(["status", "--json", "-c", str(cfg)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["objects"] == len(stored) and status["runs"]["total"] > 0
    assert status["catalog"].startswith("postgresql://")

    # the same upstream into the default SQLite store: the same catalog, counted the same way
    lite = tmp_path / "lite"
    lite.mkdir()
    lite_cfg = config(lite, seeded_server.url, str(lite / "catalog.db"), str(lite / "objects"))
    assert main(["sync", "--config", str(lite_cfg), "--once", "-q"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["status", "--json", "-c", str(lite_cfg)]) == 0
    want = json.loads(capsys.readouterr().out)
    same = ("projects", "runs", "history_rows", "history_segments", "event_rows", "files", "artifacts", "sweeps",
            "reports", "reference_entries", "objects", "objects_referenced", "bytes", "quarantined", "changes")
    assert {k: status[k] for k in same} == {k: want[k] for k in same}

    # a second pass changes nothing and still succeeds (a no-change pass on PostgreSQL)
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0, capsys.readouterr().err

    orphan = b"nobody references me"
    s3_env.client().put_object(Bucket=bucket, Key=f"mirror/md5/{md5(orphan)[:2]}/{md5(orphan)[2:]}", Body=orphan)
    assert main(["gc", "--config", str(cfg), "--grace", "0"]) == 0
    assert f"removed {md5(orphan)}" in capsys.readouterr().out

    # two read-only replicas over one catalog, as behind a load balancer: the same answers
    with served(cfg) as a, served(cfg) as b:
        fa = served_run_files(a, ENTITY, "vision", "r01")
        fb = served_run_files(b, ENTITY, "vision", "r01")
    assert len(fa) >= 5 and [(f["name"], f["md5"]) for f in fa] == [(f["name"], f["md5"]) for f in fb]
    for f in fa:
        assert base64.b64encode(hashlib.md5(f["body"]).digest()).decode() == f["md5"], f["name"]

    # export reads the same runs from either engine
    exported = {}
    for name, c in (("pg", cfg), ("lite", lite_cfg)):
        assert main(["export", "--config", str(c), "--format", "jsonl", "--out", str(tmp_path / f"out-{name}"),
                     "--project", f"{ENTITY}/vision"]) == 0, capsys.readouterr().err
        runs = tmp_path / f"out-{name}" / "jsonl" / "runs" / f"entity={ENTITY}" / "project=vision" / "runs.jsonl"
        exported[name] = sorted(json.loads(line)["id"] for line in runs.read_text().splitlines())
    assert exported["pg"] == exported["lite"] and exported["pg"]


def test_one_writer_at_a_time_and_a_killed_writer_frees_the_store(pg_url: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "s", catalog=pg_url)
    try:
        with store.lock("sync"):
            with pytest.raises(StoreLocked, match=r"in use by another wandb-mirror process \(pid \d+ sync\)"):
                store.lock("gc").acquire()
        # workers share it; an exclusive writer and they exclude each other
        with store.lock("run", shared=True) as first, store.lock("run", shared=True) as second:
            assert first.alone and not second.alone
            with pytest.raises(StoreLocked, match="other writers need it alone|only one writer"):
                store.lock("gc").acquire()
        with store.lock("gc"), pytest.raises(StoreLocked, match="workers .* share a store"):
            store.lock("run", shared=True).acquire()
        # a process that holds the lock and is killed with -9 leaves nothing held
        code = ("import sys,time; from wandb_mirror.store import Store; "
                "s = Store(sys.argv[1], catalog=sys.argv[2]); held = s.lock('daemon').acquire(); "
                "print('held', flush=True); time.sleep(60)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s"), pg_url], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            with pytest.raises(StoreLocked):
                store.lock("gc").acquire()
        finally:
            proc.kill()
            proc.wait(10)
        import time

        deadline = time.monotonic() + 10
        while True:
            try:
                store.lock("gc").acquire().release()
                break
            except StoreLocked:
                assert time.monotonic() < deadline, "the killed writer's lock was never released"
                time.sleep(0.05)
    finally:
        store.close()


def test_a_catalog_url_that_cannot_be_opened_is_one_line(postgres_server, tmp_path: Path, capsys) -> None:
    url = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/no_such_db"
    cfg = config(tmp_path, "http://127.0.0.1:9", url, str(tmp_path / "objects"))
    assert main(["status", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_db" in err and "does not exist" in err, err


def test_serve_hides_deleted_runs_and_include_deleted_shows_them_on_postgresql(pg_url: str, tmp_path: Path,
                                                                              start_mirror_server) -> None:
    """--include-deleted shadows the tables with TEMP views; on PostgreSQL each pooled connection
    makes its own, even on a read-only connection."""
    import requests

    from wandb_mirror.fixtures import seed
    from wandb_mirror.store.location import StoreLocation

    with Store(tmp_path / "s", catalog=pg_url) as store:
        seed(store, server_fixture_doc())
        store.catalog.conn.execute("UPDATE runs SET tombstoned_at = ? WHERE run_id = 'r01'", ["2026-01-01T00:00:00Z"])
        store.catalog.conn.commit()
    loc = StoreLocation(path=tmp_path / "s", catalog=pg_url)
    q = f'{{ project(name: "vision", entityName: "{ENTITY}") {{ runs {{ edges {{ node {{ name }} }} }} }} }}'
    seen = {}
    for include in (False, True):
        h = start_mirror_server(loc, include_deleted=include)
        r = requests.post(f"{h.url}/graphql", json={"query": q}, auth=("api", "x" * 40), timeout=30)
        seen[include] = {e["node"]["name"] for e in r.json()["data"]["project"]["runs"]["edges"]}
    assert "r01" not in seen[False] and seen[True] == seen[False] | {"r01"}


def test_connections_of_threads_that_ended_do_not_pile_up(pg_url: str, tmp_path: Path) -> None:
    """The sync starts a pool of threads per project; on PostgreSQL each connection is a server
    process, so those of ended threads are closed, not kept until the catalog closes."""
    import threading

    from wandb_mirror.store.catalog import Catalog

    cat = Catalog(pg_url)
    try:
        def backends() -> int:
            return int(cat.scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = ?",
                                  [f"wandb-mirror pid {os.getpid()}"]))

        for _ in range(12):
            t = threading.Thread(target=lambda: cat.scalar("SELECT COUNT(*) FROM runs"))
            t.start()
            t.join()
        import time

        deadline = time.monotonic() + 10  # a closed connection's server process exits a moment later
        while backends() > 3 and time.monotonic() < deadline:  # this thread's, the last worker's, one spare
            time.sleep(0.05)
        assert backends() <= 3
    finally:
        cat.close()


def test_restore_plans_the_same_from_a_postgresql_catalog(seeded_store: Path, seeded_pg_server, tmp_path: Path,
                                                         capsys) -> None:
    """restore --config reads a PostgreSQL catalog: the same plan as from the SQLite store of the
    same fixture document."""
    store = seeded_pg_server._store
    cfg = tmp_path / "pg.toml"
    cfg.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n\n[store]\npath = "{store.path}"\n'
                   f'catalog = "{store.catalog_url}"\n')
    plans = []
    for args in (["--store", str(seeded_store)], ["--config", str(cfg)]):
        assert main(["restore", *args, "--to", "http://127.0.0.1:9", "--dry-run"]) == 0
        plans.append(capsys.readouterr().out)
    assert plans[0] == plans[1] and plans[0].count("\n") > 3


def test_migrate_store_into_postgresql_and_s3_killed_midway_and_back(pg_url: str, s3_env, tmp_path: Path,
                                                                     capsys) -> None:
    """migrate-store (store/migrate.py) with a PostgreSQL catalog as the target, then as the source:
    a migration killed during the catalog copy finishes when run again, the target verifies
    --deep against the bucket, and the copy back holds what the source held."""
    import signal

    from reliability_support import ROOT, child_env, mirror_state, seed_store, state_diff

    source = seed_store(tmp_path / "single")
    bucket = s3_env.new_bucket()
    src = tmp_path / "single.toml"
    src.write_text('[store]\npath = "single"\n')
    dst = tmp_path / "apart.toml"
    dst.write_text(f'[store]\ncatalog = "{pg_url}"\nobjects = "s3://{bucket}/wb"\n')
    killed = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "migrate-store", "--from", str(src), "--to",
                             str(dst)], env=child_env(WANDB_MIRROR_FAULTS="kill@catalog.commit#3"), cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert main(["migrate-store", "--from", str(src), "--to", str(dst)]) == 0, capsys.readouterr().err
    assert "migrate-store: ok" in capsys.readouterr().out
    assert main(["verify", "--config", str(dst), "--deep"]) == 0, capsys.readouterr()
    from wandb_mirror.store.location import StoreLocation

    where = StoreLocation(path=tmp_path, catalog=pg_url, objects=f"s3://{bucket}/wb")
    assert state_diff(mirror_state(source), mirror_state(where)) == []
    back = tmp_path / "back.toml"
    back.write_text('[store]\npath = "back"\n')
    assert main(["migrate-store", "--from", str(dst), "--to", str(back)]) == 0, capsys.readouterr().err
    assert state_diff(mirror_state(source), mirror_state(tmp_path / "back")) == []
