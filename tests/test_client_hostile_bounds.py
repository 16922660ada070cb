"""A hostile upstream is bounded: an endless GraphQL answer fails the call at `max_response`, an
endless file body stops the moment it passes its announced size, and a key the upstream echoes back
(raw or in its Basic form) is redacted before it becomes an error, a log line or a stored record."""

from __future__ import annotations

import base64
import json
import logging
import resource
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from reliability_support import Proxy, child_env, cli, json_answer, seed_store, write_config
from test_reliability_secrets import leaks, tree_leaks

from wandb_mirror.client.transport import ApiError, RetryPolicy, Transport
from wandb_mirror.errors import IntegrityError
from wandb_mirror.store import Store

MB = 1 << 20


class Hostile:
    """A tiny server: /graphql streams an endless answer (or announces a huge one), /file an endless
    body (capped at `cap` so an unbounded client ends), /echo answers errors quoting the request."""

    def __init__(self, cap: int = 64 * MB):
        self.sent = 0
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _endless(self) -> None:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b"[" * MB
                try:
                    while hostile.sent < cap:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                        hostile.sent += len(block)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass
                self.close_connection = True

            def do_GET(self) -> None:
                self._endless()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                key = base64.b64decode(auth.split()[-1]).decode().partition(":")[2] if auth else ""
                if self.path == "/huge/graphql":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 << 30))
                    self.end_headers()
                    self.close_connection = True
                elif self.path == "/echo/graphql":
                    body = json.dumps({"errors": [{"message": f"bad key {key} in header {auth}"}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path[5:8].isdigit():
                    body = f"upstream broke; you sent {auth!r} (key {key})".encode()
                    self.send_response(int(self.path[5:8]))
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._endless()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    yield h
    h.stop()


def _transport(url: str, key: str = "k" * 40, **kw: Any) -> Transport:
    return Transport(url, key, retry=RetryPolicy(max_attempts=2, wait_min=0.01, wait_max=0.02), **kw)


def test_an_endless_graphql_answer_is_cut_at_the_limit(hostile: Hostile) -> None:
    t = _transport(hostile.url, max_response=8 * MB)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ApiError, match="max_response_mb"):
        t.graphql("Viewer", "{ viewer { id } }")
    assert hostile.sent < 40 * MB  # abandoned near the limit, not read to the server's 64 MB end
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 48 * 1024  # KiB
    assert t.stats.total == 1  # not retried: it would only grow again
    # under the limit but nested a million deep: a clear error, not a RecursionError
    nested = _transport(hostile.url, max_response=80 * MB)
    with pytest.raises(ApiError, match="nested"):
        nested.graphql("Viewer", "{ viewer { id } }")
    nested.close()
    huge = _transport(hostile.url + "/huge")
    with pytest.raises(ApiError, match="announces 10737418240 bytes"):
        huge.graphql("Viewer", "{ viewer { id } }")
    t.close()
    huge.close()


def test_an_endless_file_body_stops_at_its_announced_size(hostile: Hostile, tmp_path: Path) -> None:
    from wandb_mirror.client.api import WandbClient

    t = _transport(hostile.url)
    client = WandbClient(t)
    with Store(tmp_path / "store") as store:
        with pytest.raises(IntegrityError, match="more than the expected 1000 bytes"):
            client.fetch_to_store(hostile.url + "/file", store.objects, operation="file", expected_size=1000)
        attempts = t.retry.integrity_attempts
        assert t.stats.bytes_downloaded <= attempts * (1000 + 2 * MB)
        assert not list((tmp_path / "store" / "objects" / "tmp").iterdir())
    t.close()


def test_an_echoed_key_is_redacted_from_every_message(hostile: Hostile, caplog: pytest.LogCaptureFixture) -> None:
    key = "E" * 8 + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)
    messages = []
    for path, status in (("/echo", None), ("/echo500", 500), ("/echo403", 403), ("/echo422", 422)):
        t = _transport(hostile.url + path, key)
        with pytest.raises(ApiError) as e:
            t.graphql("Viewer", "{ viewer { id } }")
        messages.append(str(e.value))
        assert "[redacted]" in str(e.value), (status, str(e.value))
        t.close()
    assert not leaks(key, *messages, caplog.text)


def test_an_echoed_key_never_reaches_output_or_the_catalog(tmp_path: Path) -> None:
    from reliability_support import KEY

    from wandb_mirror.server import start_server

    up = seed_store(tmp_path / "up")
    server = start_server(up)

    def intercept(req: dict[str, Any]) -> Any:
        if req["op"] == "RunFiles":
            auth = req["headers"].get("Authorization", "")
            return json_answer(200, {"errors": [{"message": f"no files for key {KEY} ({auth})"}]})
        return None

    proxy = Proxy(server.url, intercept=intercept)
    try:
        cfg = write_config(tmp_path, proxy.url, store=str(tmp_path / "mirror"))
        p = cli("-vv", "sync", "--config", str(cfg), "--once", env=child_env(), timeout=180)
        st = cli("status", "--store", str(tmp_path / "mirror"), "--json")
    finally:
        proxy.stop()
        server.stop()
    assert p.returncode == 1 and "no files for key [redacted]" in p.stderr, p.stderr[-2000:]
    assert not leaks(KEY, p.stdout, p.stderr, st.stdout, st.stderr)
    assert not tree_leaks(KEY, tmp_path / "mirror")
