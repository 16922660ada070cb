"""Workers that need the same bytes at once download them once (client/single_flight.py): over
loopback against a slow file server that counts its GETs; a failed download is not shared."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wandb_mirror.config import minimal_config
from wandb_mirror.errors import IntegrityError
from wandb_mirror.store import LocalObjects
from wandb_mirror.sync import make_client

BODY = b"shared artifact file " * 5000


@pytest.fixture
def file_server() -> Iterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"gets": 0, "body": BODY}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state["gets"] += 1
            time.sleep(0.3)  # long enough for every worker to ask while the first download runs
            body = state["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", state
    finally:
        srv.shutdown()
        srv.server_close()


def _fetch_all(tmp_path: Path, base: str, n: int) -> list[Any]:
    client = make_client(minimal_config(base, tmp_path / "m", retry_wait_min=0.01, retry_wait_max=0.02),
                         api_key="k" * 40)
    client.t.retry.integrity_attempts = 1
    objects = LocalObjects(tmp_path / "objects")
    md5 = hashlib.md5(BODY).hexdigest()

    def one(_: int) -> Any:
        try:
            return client.fetch_to_store(f"{base}/f", objects, operation="GET artifact file", expected_md5=md5,
                                         expected_size=len(BODY)).md5
        except IntegrityError as e:
            return e

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_downloads_of_the_same_bytes_are_one_get(tmp_path: Path, file_server: Any) -> None:
    base, state = file_server
    got = _fetch_all(tmp_path, base, 6)
    assert got == [hashlib.md5(BODY).hexdigest()] * 6
    assert state["gets"] == 1


def test_a_failed_download_is_not_shared(tmp_path: Path, file_server: Any) -> None:
    base, state = file_server
    state["body"] = b"x" * len(BODY)  # the wrong bytes: every worker must find that out for itself
    got = _fetch_all(tmp_path, base, 3)
    assert all(isinstance(g, IntegrityError) for g in got)
    assert state["gets"] == 3
