"""The PostgreSQL test fixture itself: a real server from the postgresql package, on 127.0.0.1 with a
free port, run as an unprivileged user, that an ordinary role can create tables in (as the catalog
on PostgreSQL will), stopped at the end of the session."""

from __future__ import annotations

import os
import socket

import pytest

pytestmark = pytest.mark.postgres


def test_postgres_fixture_runs_a_real_server_on_loopback(postgres_server) -> None:
    assert postgres_server.host == "127.0.0.1" and postgres_server.port > 0
    assert postgres_server.psql("SELECT 1") == "1"
    assert postgres_server.psql("SHOW listen_addresses") == "127.0.0.1"
    assert postgres_server.psql("SELECT current_setting('is_superuser')") == "on"
    # the operator's setup from the scale-out docs: an ordinary role owning the database
    postgres_server.psql("CREATE ROLE mirror LOGIN")
    postgres_server.psql("CREATE DATABASE mirror OWNER mirror")
    owner = postgres_server.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mirror'")
    assert owner == "mirror"
    # the server process is not root (initdb refuses root; the fixture runs it as another user)
    pid = int(postgres_server.psql("SELECT pg_backend_pid()"))
    assert pid > 0
    stat = os.stat(postgres_server.datadir)
    assert stat.st_uid != 0
    with socket.create_connection((postgres_server.host, postgres_server.port), timeout=5):
        pass
