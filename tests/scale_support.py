"""Real servers for the scale-out tests: an S3 server (moto's, from PyPI) and a PostgreSQL cluster
(Debian's postgresql package), each started on 127.0.0.1 with a free port and stopped at the end.

Imported by conftest.py, so the fixtures are available to every test module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def served(config: Path) -> Iterator[str]:
    """`wandb-mirror serve --config CONFIG --read-only` on a free port; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "serve", "--config", str(config), "--port", "0",
                             "--read-only"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("listening on http://127.0.0.1:"), proc.stderr.read()  # type: ignore[union-attr]
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def served_run_files(url: str, entity: str, project: str, run: str) -> list[dict[str, Any]]:
    """A run's files as `serve` lists them, each with the bytes its directUrl returns (`body`)."""
    import requests

    q = (f'{{ project(name: "{project}", entityName: "{entity}") {{ run(name: "{run}") '
         '{ files { edges { node { name md5 directUrl } } } } } }')
    r = requests.post(f"{url}/graphql", json={"query": q}, auth=("api", "x" * 40), timeout=30)
    assert "data" in r.json(), r.text
    files = [e["node"] for e in r.json()["data"]["project"]["run"]["files"]["edges"]]
    for f in files:
        f["body"] = requests.get(f["directUrl"], timeout=30).content
    return files


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    url: str

    def client(self) -> Any:
        import boto3

        return boto3.session.Session(aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
                                     region_name=S3_ENV["AWS_DEFAULT_REGION"]).client("s3", endpoint_url=self.url)

    def new_bucket(self) -> str:
        name = f"mirror-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server (it enforces If-None-Match; it does not check Content-MD5)."""
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The standard AWS variables pointed at the test server (the code under test finds them itself)."""
    return point_aws_at(s3_server, monkeypatch)


def point_aws_at(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Set the AWS variables through `monkeypatch` (also a module-scoped MonkeyPatch.context())."""
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):  # never the user's ~/.aws
        monkeypatch.setenv(k, os.devnull)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return s3_server


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
PG_USER = "postgres"  # the Debian package's own unprivileged user; initdb refuses to run as root


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    dbname: str
    datadir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def psql(self, sql: str) -> str:
        psql = _pg_bin("psql") or shutil.which("psql")
        out = subprocess.run([str(psql), "-X", "-A", "-t", "-h", self.host, "-p", str(self.port), "-U", self.user,
                              "-d", self.dbname, "-c", sql], capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.strip()


def _pg_bin(name: str) -> Path | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return d / name
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> dict[str, Any]:
    """subprocess options that run a PostgreSQL binary as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    pw = pwd.getpwnam(PG_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PostgresUnavailable(Exception):
    """This machine cannot run a throwaway PostgreSQL (no binaries, or root without its user)."""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session (see `postgres_cluster`)."""
    try:
        cluster = postgres_cluster()
        server = cluster.__enter__()
    except PostgresUnavailable as e:
        pytest.skip(str(e))
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        cluster.__exit__(None, None, None)


@contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster: initdb in a temporary directory, listening on 127.0.0.1 only
    (no Unix socket in a shared place), trust auth for its superuser, stopped and removed at the end.
    Also started by bench/workers.py."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailable("PostgreSQL server binaries not installed (make venv installs the postgresql package)")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(PG_USER)
        except KeyError:
            raise PostgresUnavailable(f"running as root and there is no {PG_USER!r} user to run PostgreSQL as") from None
    # not under pytest's basetemp: pytest resets its root to 0700 at each start, and the server's
    # user must reach its directories while other pytest sessions start
    base = Path(tempfile.mkdtemp(prefix="wandb-mirror-pg-"))
    run = base / "run"  # the socket directory
    run.mkdir()
    datadir = base / "data"
    opts = _as_user()
    if opts:
        import pwd

        pw = pwd.getpwnam(PG_USER)
        for d in (base, run):
            os.chown(d, pw.pw_uid, pw.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    made = subprocess.run([str(initdb), "-D", str(datadir), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                           "--no-instructions"], capture_output=True, text=True, env=env, timeout=120, **opts)
    if made.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {made.stderr.strip()[-2000:]}")
    port = _free_port()
    log = base / "server.log"
    options = f"-h 127.0.0.1 -p {port} -k {run} -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    started = subprocess.run([str(pg_ctl), "-D", str(datadir), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
                             capture_output=True, text=True, env=env, timeout=90, **opts)
    if started.returncode != 0:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()} {text[-2000:]}")
    server = PostgresServer("127.0.0.1", port, PG_USER, "postgres", datadir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        subprocess.run([str(pg_ctl), "-D", str(datadir), "-m", "fast", "-w", "-t", "30", "stop"],
                       capture_output=True, env=env, timeout=60, **opts)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_md5_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """nanio's S3 server, which checks Content-MD5 (BadDigest) but ignores If-None-Match.

    Served by uvicorn in a thread from a socket we bind on 127.0.0.1 port 0 (its CLI wants a port).
    """
    pytest.importorskip("boto3")
    uvicorn = pytest.importorskip("uvicorn")
    app_mod = pytest.importorskip("nanio.app")
    from nanio.auth.credentials import StaticCredentialResolver
    from nanio.config import Settings

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = Settings(data_dir=tmp_path_factory.mktemp("nanio"), host="127.0.0.1", port=port, access_log=False,
                        credentials=StaticCredentialResolver({S3_ENV["AWS_ACCESS_KEY_ID"]: S3_ENV["AWS_SECRET_ACCESS_KEY"]}))
    server = uvicorn.Server(uvicorn.Config(app_mod.build_app(settings), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="nanio", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("nanio did not start")
        time.sleep(0.05)
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL catalog URL of its own for one test: a fresh schema in the session's server
    (cheaper than a database per test), named through libpq's `options` (search_path)."""
    pytest.importorskip("psycopg")  # the postgres extra: what the catalog speaks PostgreSQL with
    name = "t_" + uuid.uuid4().hex[:12]
    postgres_server.psql(f"CREATE SCHEMA {name}")
    try:
        yield f"{postgres_server.url}?options=-csearch_path%3D{name}"
    finally:
        postgres_server.psql(f"DROP SCHEMA {name} CASCADE")
