"""Several workers: `wandb-mirror run` processes sharing one store (docs/scale-out.md).

Three real worker processes mirror a served upstream that keeps changing; one of them is killed
with SIGKILL while it holds a project's lease; the others take its work over once the lease runs
out, and SIGTERM stops them with exit 0 and their leases given back. The mirror then verifies,
the official client sees it equal to the upstream, every change event reached the recording
plugin at least once, and `status --json` names the workers that ran each project's last pass.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ENGINES
from reliability_support import (
    ENTITY,
    KEY,
    RECORDER,
    ROOT,
    Proxy,
    child_env,
    expected_lines,
    grow_upstream,
    json_answer,
    mirror_state,
    official_diff,
    seed_store,
    state_diff,
    store_problems,
    verify_deep,
    write_config,
)

from wandb_mirror.store import Store
from wandb_mirror.store.location import StoreLocation, open_store
from wandb_mirror.times import stamp

LEASE = 2.0


class Workers:
    """Worker processes of one config, and what the store says about them."""

    def __init__(self, base: Path, url: str, catalog: str | None = None, objects: str | None = None,
                 s3_endpoint_url: str | None = None):
        self.base = base
        self.mirror = base / "mirror"
        # the store: PATH/catalog.db and PATH/objects, or a PostgreSQL catalog and S3 objects
        self.where: Any = (StoreLocation(path=self.mirror, catalog=catalog, objects=objects,
                                         s3_endpoint_url=s3_endpoint_url) if catalog else self.mirror)
        (base / "plugins").mkdir(exist_ok=True)
        (base / "plugins" / "recorder.py").write_text(RECORDER)
        extra = (f'[daemon]\npoll_interval = "1s"\nlease = "{LEASE:g}s"\nstop_grace = "2s"\n'
                 'plugins_dir = "plugins"\nhook_timeout = "20s"\n\n'
                 '[plugins.recorder]\nenabled = true\nout = "mirror.events"\n')
        # one request at a time per worker: a project's pass lasts long enough for the others to
        # find it leased and take the next one
        self.config = write_config(base, url, sync="concurrency = 1\n", extra=extra)
        if catalog:
            self.config.write_text(self.config.read_text().replace(
                '[store]\npath = "mirror"\n', f'[store]\npath = "mirror"\ncatalog = "{catalog}"\n'
                + (f'objects = "{objects}"\ns3_endpoint_url = "{s3_endpoint_url}"\n' if objects else "")))
        self.procs: list[subprocess.Popen[str]] = []
        self.url = url

    def start(self) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "run", "--config", str(self.config),
                              "--no-watch"], env=child_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        if self.where is self.mirror and not (self.mirror / "catalog.db").exists():
            return []
        try:
            with open_store(self.where, create=False, readonly=True) as s:
                return s.catalog.query(sql, params or [])
        except Exception:  # noqa: BLE001 - a catalog still being created by the first worker
            return []

    def holding(self, p: subprocess.Popen[str]) -> list[str]:
        """The projects whose lease worker `p` holds right now."""
        return [r["key"] for r in self.query(
            "SELECT key FROM claims WHERE key LIKE 'project:%' AND worker = ? AND expires_at > ?",
            [f"{socket.gethostname()}:{p.pid}", time.time()])]

    def delivered(self) -> bool:
        """Whether the recording plugin's cursor is at the end of the change log."""
        rows = self.query("SELECT (SELECT MAX(seq) FROM changes) AS last, "
                          "(SELECT seq FROM plugin_cursors WHERE plugin = 'recorder') AS cursor")
        return bool(rows) and rows[0]["cursor"] is not None and rows[0]["cursor"] >= rows[0]["last"]

    def stop_all(self) -> list[int | None]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=30))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes


def wait_for(what: str, cond: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow]),
                        pytest.param("postgresql+s3", marks=[pytest.mark.postgres, pytest.mark.slow])])
def world(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Workers, Path]]:
    """Workers over SQLite and local objects; in `make soak` (three worker processes cost a minute of
    CPU), also over one PostgreSQL catalog (objects in PATH/objects) and over PostgreSQL + S3."""
    from wandb_mirror.server import start_server

    store: dict[str, Any] = {}
    if request.param.startswith("postgresql"):
        pytest.importorskip("psycopg")
        store = {"catalog": request.getfixturevalue("pg_url")}
    if request.param == "postgresql+s3":
        s3 = request.getfixturevalue("s3_env")
        store.update(objects=f"s3://{s3.new_bucket()}/mirror", s3_endpoint_url=s3.url)

    monkeypatch.setenv("WANDB_API_KEY", KEY)

    up = seed_store(tmp_path / "up")
    for i in range(2):  # more projects than workers
        grow_upstream(up, i)
    server = start_server(up, read_only=True)
    # an upstream a little slow to answer, as a real one is: a project's pass takes long enough
    # for the other workers to find it leased and take the next one
    slow = Proxy(server.url, intercept=lambda req: time.sleep(0.02) if req["op"] else None)
    workers = Workers(tmp_path, slow.url, **store)
    try:
        yield workers, up
    finally:
        workers.stop_all()
        slow.stop()
        server.stop()


def equal(up: Path, mirror: Any) -> list[str] | bool:
    try:
        return state_diff(mirror_state(up), mirror_state(mirror)) == []
    except Exception:  # noqa: BLE001 - the mirror's catalog not created yet
        return False


def scenario(workers: Workers, up: Path, make_wandb_api: Callable[..., Any], start_mirror_server: Callable[..., Any],
             capsys: pytest.CaptureFixture[str], *, rounds: int) -> None:
    from wandb_mirror.cli import main

    w = workers
    for _ in range(3):
        w.start()
    wait_for("the first mirror", lambda: equal(up, w.where), 60)
    killed: list[str] = []
    for k in range(rounds):
        grow_upstream(up, 10 + k)
        alive = [p for p in w.procs if p.poll() is None]
        victim, held = wait_for("a worker holding a project's lease",
                                lambda: next(((p, keys) for p in alive if (keys := w.holding(p))), None),  # noqa: B023
                                30)
        victim.kill()  # SIGKILL: no clean-up of any kind
        killed.append(f"{socket.gethostname()}:{victim.pid}")
        assert victim.wait(10) == -signal.SIGKILL
        killed_at = stamp()
        grow_upstream(up, 50 + k)
        wait_for("the survivors to catch up", lambda: equal(up, w.where), 60)
        # the unit the victim held is taken over once its lease runs out, and finished by another
        taken_over = ("SELECT key FROM claims WHERE key = ? AND done_at > ? AND done_by != ?",
                      [held[0], killed_at, f"{socket.gethostname()}:{victim.pid}"])
        wait_for("its project taken over", lambda: w.query(*taken_over), 30)  # noqa: B023
        if k + 1 < rounds:
            w.start()  # a replacement joins the others
    wait_for("the plugin to have every change", w.delivered, 30)
    codes = w.stop_all()
    assert sorted(c for c in codes if c != -signal.SIGKILL) == [0] * (len(codes) - rounds), \
        [p.stderr.read()[-2000:] for p in w.procs if p.stderr is not None and p.returncode not in (0, -signal.SIGKILL)]
    # SIGTERM gave the leases back; only a killed worker's may remain, and they have run out
    now = time.time()
    assert w.query("SELECT key FROM claims WHERE worker IS NOT NULL AND expires_at > ?", [now]) == []
    assert w.query("SELECT id FROM passes WHERE status = 'running' AND renewed_at > ?", [now - LEASE]) == []

    # the work was shared: the projects' last passes ran on more than one worker
    assert main(["status", "--config", str(w.config), "--json"]) == 0
    work = json.loads(capsys.readouterr().out)["work"]
    projects = {k: u for k, u in work["units"].items() if "/" in k}
    assert set(projects) == {f"{ENTITY}/{p}" for p in mirror_state(up)}
    assert all(u["last_worker"] and u["last_at"] for u in projects.values()), projects
    not_ok = {k: u for k, u in projects.items() if u["last_status"] != "ok"}
    assert not not_ok, (not_ok, w.query("SELECT worker, status, errors FROM passes WHERE errors != '[]'"))
    assert all(u["last_worker"].rsplit(":", 1)[1].isdigit() for u in projects.values())
    assert work["stalest_project"]["last_at"] == min(u["last_at"] for u in projects.values())
    assert work["stalest_project"]["age_seconds"] >= 0
    # and over the run, projects were synced by several workers: each killed one (it held a
    # project's lease), the one that took its project over, and whoever else finished passes with
    # projects in them (a killed worker's last pass never records its figures)
    synced = set(killed)
    for row in w.query("SELECT worker, stats FROM passes WHERE worker IS NOT NULL AND status = 'ok'"):
        if json.loads(row["stats"]).get("projects_synced", 0):
            synced.add(row["worker"])
    assert len(synced) >= 2 and synced <= {f"{socket.gethostname()}:{p.pid}" for p in w.procs}, synced

    # each change event reached the plugin at least once, whichever worker synced it
    seen = set((w.base / "mirror.events").read_text().splitlines())
    missing = [x for x in expected_lines(w.where) if x not in seen]
    assert not missing, f"events never delivered: {missing[:5]}"

    assert verify_deep(w.where) == []
    # a killed download's temp file is removed by the next writer that has the store alone
    assert main(["run", "--config", str(w.config), "--once", "--no-watch"]) == 0
    if w.where is w.mirror:  # local objects: no temp file left (S3 has no temp files)
        assert store_problems(w.mirror) == []
    assert equal(up, w.where)
    with open_store(w.where, create=False) as s:
        assert s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status = 'running'") == 0
        dup = s.catalog.query("SELECT kind, project, run, subject, COUNT(*) AS n FROM changes "
                              "WHERE kind IN ('run_created', 'artifact_version_mirrored') "
                              "GROUP BY kind, project, run, subject HAVING COUNT(*) > 1")
        assert dup == []  # a unit taken over is finished, not redone from scratch

    mirror_server = start_mirror_server(w.where)
    upstream = make_wandb_api(w.url, api_key=KEY)
    mirror = make_wandb_api(mirror_server.url)
    assert official_diff(upstream, mirror, ENTITY, sorted(mirror_state(up)), w.base / "dl") == []


def test_three_workers_share_a_store_and_survive_a_kill(world: tuple[Workers, Path], make_wandb_api: Any,
                                                      start_mirror_server: Any, capsys: Any) -> None:
    workers, up = world
    scenario(workers, up, make_wandb_api, start_mirror_server, capsys, rounds=1)


@pytest.mark.slow
def test_workers_survive_repeated_kills(world: tuple[Workers, Path], make_wandb_api: Any,
                                        start_mirror_server: Any, capsys: Any) -> None:
    workers, up = world
    scenario(workers, up, make_wandb_api, start_mirror_server, capsys, rounds=4)


def test_a_429_seen_by_one_worker_pauses_every_worker_with_that_key(tmp_path: Path) -> None:
    """One request budget per key: worker A is answered 429 with Retry-After; worker B, another
    process's catalog connection with the same key, sends nothing until the pause is over, while a
    worker with another key is not held back. The key itself is never stored."""
    from wandb_mirror.client import documents as D
    from wandb_mirror.client.transport import Transport
    from wandb_mirror.server import start_server
    from wandb_mirror.store.rate_pauses import PauseGate, catalog_salt

    up = seed_store(tmp_path / "up")
    server = start_server(up, read_only=True)
    retry_after = 2.0

    def throttle(req: dict[str, Any]) -> Any:
        if req["headers"].get("User-Agent") == "worker-a" and not proxy.state.get("throttled"):
            proxy.state["throttled"] = True
            return json_answer(429, {"errors": [{"message": "rate limited"}]}, {"Retry-After": f"{retry_after:g}"})
        return None

    proxy = Proxy(server.url, intercept=throttle)
    stores = [Store(tmp_path / "mirror") for _ in range(3)]  # one catalog connection per worker
    transports = []
    try:
        for name, store, key in (("worker-a", stores[0], KEY), ("worker-b", stores[1], KEY),
                                 ("worker-c", stores[2], "c" * 40)):
            t = Transport(proxy.url, key, user_agent=name)
            t.shared_pause = PauseGate(store.catalog, t.key_fingerprint(catalog_salt(store.catalog)), worker=name,
                                       check_every=0.05)
            transports.append(t)
        a, b, c = transports
        done: dict[str, float] = {}
        thread = threading.Thread(target=lambda: done.setdefault("a", (a.graphql(D.VIEWER.name, D.VIEWER.text),
                                                                      time.monotonic())[1]))
        thread.start()
        wait_for("the 429", lambda: [r for r in proxy.requests() if r["status"] == 429], 10)
        limited_at = proxy.requests()[0]["t"]
        c.graphql(D.VIEWER.name, D.VIEWER.text)  # another key: no pause
        b.graphql(D.VIEWER.name, D.VIEWER.text)
        thread.join(10)
        by_agent = {r["headers"]["User-Agent"]: r["t"] for r in proxy.requests() if r["status"] == 200}
        assert by_agent["worker-c"] - limited_at < retry_after / 2
        assert by_agent["worker-b"] - limited_at >= retry_after - 0.1
        assert by_agent["worker-a"] - limited_at >= retry_after - 0.1
        assert b.shared_pause is not None and b.shared_pause.waited > 0  # type: ignore[attr-defined]
        rows = stores[1].catalog.query("SELECT key_fingerprint, set_by FROM rate_pauses")
        assert [r["set_by"] for r in rows] == ["worker-a"] and KEY not in rows[0]["key_fingerprint"]
    finally:
        for t in transports:
            t.close()
        for s in stores:
            s.close()
        proxy.stop()
        server.stop()
    for f in (tmp_path / "mirror").iterdir():
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f


def test_the_rate_limit_is_divided_among_the_live_workers(tmp_path: Path) -> None:
    """`[sync] rate_limit` is the store's budget: with two workers alive each sends at most half."""
    from wandb_mirror.client import documents as D
    from wandb_mirror.client.transport import Transport
    from wandb_mirror.server import start_server
    from wandb_mirror.store.claims import Claims
    from wandb_mirror.store.rate_pauses import PauseGate, catalog_salt

    up = seed_store(tmp_path / "up")
    server = start_server(up, read_only=True)
    rate, n = 10.0, 7
    try:
        with Store(tmp_path / "mirror") as store:
            mine = Claims(store.catalog, worker="host:1", lease=30)
            mine.register()
            t = Transport(server.url, KEY, rate_limit=rate)
            gate = PauseGate(store.catalog, t.key_fingerprint(catalog_salt(store.catalog)), worker="host:1")
            t.shared_pause = gate
            assert gate.share() == 1
            Claims(store.catalog, worker="host:2", lease=30).register()
            gate._read_at = float("-inf")  # noqa: SLF001 - re-read now rather than in a second
            assert gate.share() == 2
            t0 = time.monotonic()
            for _ in range(n):
                t.graphql(D.VIEWER.name, D.VIEWER.text)
            # evenly spaced at rate / 2: the n-th request cannot leave before (n - 1) / (rate / 2)
            assert time.monotonic() - t0 >= (n - 1) / (rate / 2) - 0.05
            mine.release_all()
            t.close()
    finally:
        server.stop()


@pytest.fixture(params=ENGINES)
def catalog(request: pytest.FixtureRequest) -> str | None:
    """The catalog engine: None (PATH/catalog.db), or a PostgreSQL URL (the real catalog on it)."""
    if request.param == "sqlite":
        return None
    pytest.importorskip("psycopg")
    return str(request.getfixturevalue("pg_url"))


def test_leases_exclusive_expiring_renewed_and_released(tmp_path: Path, catalog: str | None) -> None:
    """store/claims.py on a real catalog, two workers and a hand-moved clock."""
    from wandb_mirror.store.claims import Claims, live_workers, work_status

    now = [1000.0]
    with Store(tmp_path / "s", catalog=catalog) as s:
        a = Claims(s.catalog, worker="h:1", lease=60, clock=lambda: now[0])
        b = Claims(s.catalog, worker="h:2", lease=60, clock=lambda: now[0])
        a.register()
        assert a.claim("project:e/p") and not b.claim("project:e/p")
        assert a.claim("project:e/p")  # a worker may take its own lease again
        now[0] += 59
        assert not b.claim("project:e/p")
        assert a.renew() == []  # extended to now + 60
        now[0] += 59
        assert not b.claim("project:e/p")
        now[0] += 2  # a stopped renewing (killed): the lease runs out and b takes it over
        assert b.claim("project:e/p")
        assert a.renew() == ["project:e/p"]  # a learns it lost it
        b.release("project:e/p", status="ok")
        unit = work_status(s.catalog, now[0])["units"]["e/p"]
        assert unit["last_worker"] == "h:2" and unit["last_status"] == "ok" and unit["held_by"] is None
        # finished by b since `fresh_since`: not due for a, due for b (its own) and for a later
        fresh = unit["last_at"]
        assert not a.claim("project:e/p", fresh_since=fresh) and b.claim("project:e/p", fresh_since=fresh)
        b.release("project:e/p")  # stopped midway: no completion recorded
        assert work_status(s.catalog, now[0])["units"]["e/p"]["last_at"] == fresh
        assert a.claim("project:e/p", fresh_since="9999")
        assert live_workers(s.catalog, now[0]) == ["h:1"]
        a.release_all()
        assert live_workers(s.catalog, now[0]) == [] and b.claim("project:e/p")
        # `sync` holds the store alone: a lease still running is a dead worker's
        assert Claims(s.catalog, worker="h:3", exclusive=True, clock=lambda: now[0]).claim("project:e/p")


def test_a_pass_is_marked_interrupted_only_once_its_worker_is_gone(tmp_path: Path, catalog: str | None) -> None:
    from wandb_mirror.times import utcnow

    with Store(tmp_path / "s", catalog=catalog) as s:
        cat = s.catalog
        first, _ = cat.begin_pass(utcnow(), worker="h:1", stale_before=time.time() - 60)
        second, _ = cat.begin_pass(utcnow(), worker="h:2", stale_before=time.time() - 60)
        status = {r["id"]: r["status"] for r in cat.query("SELECT id, status FROM passes")}
        assert status == {first: "running", second: "running"}  # h:1 renewed its pass just now
        cat.begin_pass(utcnow(), worker="h:2", stale_before=time.time() + 1)  # h:1 not seen for a lease
        status = {r["id"]: r["status"] for r in cat.query("SELECT id, status FROM passes")}
        assert status[first] == "failed" and status[second] == "failed"  # and h:2's own earlier one


class _PgConn:
    """What store/ sees of a catalog connection, over psycopg: `?` placeholders, as the shim of
    the PostgreSQL catalog translates them."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))


class _PgCatalog:
    def __init__(self, conn: Any):
        self.conn = conn

    def transaction(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def tx() -> Iterator[_PgConn]:
            with self.conn.transaction():
                yield _PgConn(self.conn)

        return tx()

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cur = _PgConn(self.conn).execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = _PgConn(self.conn).execute(sql, params).fetchone()
        return row[0] if row else None


def test_the_workers_sql_runs_on_postgresql(postgres_server: Any) -> None:
    """store/claims.py and store/rate_pauses.py are plain SQL: the same statements, and the
    m006 migration itself, run on a real PostgreSQL."""
    psycopg = pytest.importorskip("psycopg")
    from wandb_mirror.store import migrations
    from wandb_mirror.store.claims import Claims, live_workers, work_status
    from wandb_mirror.store.rate_pauses import PauseGate, catalog_salt

    schema = f"w{time.time_ns()}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("CREATE TABLE passes (id BIGSERIAL PRIMARY KEY, started_at TEXT NOT NULL, status TEXT NOT NULL)")
        conn.execute(dict(migrations.MIGRATIONS)["m006_worker_claims"])
        cat: Any = _PgCatalog(conn)
        now = [1_764_000_000.25]  # epoch seconds: a 4-byte REAL would round them to minutes
        a = Claims(cat, worker="h:1", lease=60, clock=lambda: now[0])
        b = Claims(cat, worker="h:2", lease=60, clock=lambda: now[0])
        a.register()
        assert a.claim("project:e/p") and not b.claim("project:e/p")
        now[0] += 61
        assert b.claim("project:e/p") and a.renew() == ["project:e/p"]
        b.release("project:e/p", status="ok")
        fresh = work_status(cat, now[0])["units"]["e/p"]["last_at"]
        assert not a.claim("project:e/p", fresh_since=fresh) and b.claim("project:e/p", fresh_since=fresh)
        assert live_workers(cat, now[0]) == ["h:1"]
        a.release_all()
        assert live_workers(cat, now[0]) == []

        salt = catalog_salt(cat)
        assert catalog_salt(cat) == salt
        gate = PauseGate(cat, "f" * 64, worker="h:1", clock=lambda: now[0], check_every=0)
        gate.pause(30)
        gate.pause(5)  # a shorter pause never shortens a longer one
        assert gate.until() == now[0] + 30
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
