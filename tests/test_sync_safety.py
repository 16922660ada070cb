"""Sync never loses what it noticed, stops when asked, and never shows a half-made run.

- a file deletion noticed by a pass that ends with errors is still applied (issue 10, item 3);
- `sync --once` stops within 2 s of SIGTERM or Ctrl-C, even in the middle of an endless download,
  records the pass as stopped, and the next pass completes (item 6);
- while a new run's history is being fetched, readers of the mirror do not see the run (item 11).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ENTITY, PROJECT, copy_store
from reliability_support import ENTITY as SMALL_ENTITY
from reliability_support import KEY, ROOT, Proxy, child_env, seed_store, write_config

from wandb_mirror.config import minimal_config
from wandb_mirror.models import RunFile
from wandb_mirror.store import Store
from wandb_mirror.sync import PassResult, SyncEngine, make_client


def _sync(config: Any, store_path: Path, *, reconcile: bool = False) -> PassResult:
    store = Store(store_path)
    client = make_client(config)
    try:
        with store.lock("test"):
            return SyncEngine(config, store, client, force_reconcile=reconcile).run_pass()
    finally:
        client.close()
        store.close()


# ---------------------------------------------------------------------------------------------
# item 3: a deletion seen by a pass with errors is not lost
# ---------------------------------------------------------------------------------------------
def test_file_deleted_upstream_in_a_pass_with_errors_is_tombstoned(seeded_store: Path, tmp_path: Path,
                                                                   start_mirror_server, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    up = copy_store(seeded_store, tmp_path / "up")
    server = start_mirror_server(up)
    cfg = minimal_config(server.url, tmp_path / "mirror", retry_wait_min=0.01, retry_wait_max=0.05)
    assert _sync(cfg, tmp_path / "mirror").status == "ok"

    good = b"new results\n" * 50
    with Store(up) as s:
        ppk = s.catalog.project_pk(ENTITY, PROJECT)
        with s.catalog.transaction() as conn:  # r01's output.log is deleted upstream
            conn.execute("UPDATE files SET tombstoned_at = '2024-07-01T00:00:00' WHERE name = 'output.log' AND "
                         "run_pk = ?", [s.catalog.run_pk(ppk, "r01")])
            conn.execute("UPDATE runs SET updated_at = '2024-07-01T00:00:00' WHERE project_pk = ? AND run_id = 'r01'",
                         [ppk])
        rpk = s.catalog.run_pk(ppk, "r05")  # and r05 gains a file whose download fails verification
        info = s.objects.put_bytes(good)
        s.catalog.upsert_file(rpk, RunFile(name="results.txt", size=info.size, md5=info.md5, id="RmlsZTo5OTg=",
                                           updated_at="2024-07-01T00:00:00"))
        with s.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET updated_at = '2024-07-01T00:00:00' WHERE pk = ?", [rpk])
        s.objects.path(info.md5).chmod(0o600)
        s.objects.path(info.md5).write_bytes(b"X" * len(good))

    r = _sync(cfg, tmp_path / "mirror", reconcile=True)
    assert r.status == "errors" and any("results.txt" in e for e in r.errors), r.errors
    with Store(up) as s:
        s.objects.path(info.md5).write_bytes(good)  # upstream repaired
    for _ in range(3):
        r = _sync(cfg, tmp_path / "mirror", reconcile=True)
        assert r.status == "ok", r.errors

    with Store(tmp_path / "mirror") as mi:
        ppk = mi.catalog.project_pk(ENTITY, PROJECT)
        row = mi.catalog.query_one("SELECT tombstoned_at FROM files WHERE name = 'output.log' AND run_pk = ?",
                                   [mi.catalog.run_pk(ppk, "r01")])
        assert row is not None and row["tombstoned_at"], "the deletion was lost"
        kinds = [r["kind"] for r in mi.catalog.query("SELECT kind FROM changes WHERE kind = 'tombstoned' AND "
                                                      "subject = ?", [f"{ENTITY}/{PROJECT}/r01/output.log"])]
        assert kinds == ["tombstoned"]
        assert mi.catalog.scalar("SELECT COUNT(*) FROM files WHERE name = 'results.txt'") == 1


# ---------------------------------------------------------------------------------------------
# item 6: SIGTERM / Ctrl-C stop `sync --once` within 2 s, even during an endless download
# ---------------------------------------------------------------------------------------------
class TrickleFront:
    """Forwards to a real server, except that while `trickle` is set every file download answers
    with an endless body: one byte every 50 ms, forever (a download that never ends or stalls)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.trickle = True
        self.downloads = threading.Event()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                if front.trickle and not self.path.startswith("/graphql"):
                    front.downloads.set()
                    self.send_response(200)
                    self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        return
                self.forward("GET")

            def do_POST(self) -> None:
                self.forward("POST")

            def forward(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                r = requests.request(method, front.upstream + self.path, data=body, headers=headers, timeout=30,
                                     allow_redirects=False)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sync_once_stops_within_two_seconds_during_an_endless_download(tmp_path: Path, start_mirror_server,
                                                                       signum: int) -> None:
    up = seed_store(tmp_path / "up")
    server = start_mirror_server(up)
    front = TrickleFront(server.url)
    try:
        cfg = write_config(tmp_path, front.url, store=str(tmp_path / "mirror"))
        proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "sync", "--config", str(cfg), "--once"],
                                env=child_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert front.downloads.wait(60), "no download started"
            time.sleep(0.5)  # well inside the endless body
            assert proc.poll() is None
            t0 = time.monotonic()
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert elapsed < 2.0, (elapsed, err[-2000:])
        assert proc.returncode == 130, (proc.returncode, err[-2000:])
        assert "stopped" in out, out
        with Store(tmp_path / "mirror") as mi:
            passes = mi.catalog.query("SELECT status FROM passes ORDER BY id")
            assert [p["status"] for p in passes] == ["stopped"]
            assert list(mi.objects.tmp.iterdir()) == []

        front.trickle = False  # the next pass resumes and completes
        done = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "sync", "--config", str(cfg), "--once"],
                              env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        with Store(tmp_path / "mirror") as mi, Store(up) as u:
            q = "SELECT name, md5 FROM files ORDER BY name"
            assert mi.catalog.query(q) == u.catalog.query(q)
            assert [p["status"] for p in mi.catalog.query("SELECT status FROM passes ORDER BY id")] == ["stopped", "ok"]
    finally:
        front.stop()


# ---------------------------------------------------------------------------------------------
# item 11: a run becomes visible with its row complete
# ---------------------------------------------------------------------------------------------
def test_readers_never_see_a_run_before_its_row_is_complete(tmp_path: Path, start_mirror_server, make_wandb_api,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    up = seed_store(tmp_path / "up")
    server = start_mirror_server(up)
    asked = threading.Event()
    release = threading.Event()

    def hold_history(req: dict[str, Any]) -> None:
        if req["op"] == "HistoryPage":
            asked.set()
            release.wait(60)
        return None

    proxy = Proxy(server.url, intercept=hold_history)
    mirror = tmp_path / "mirror"
    cfg = minimal_config(proxy.url, mirror, retry_wait_min=0.01, retry_wait_max=0.05, concurrency=1)
    Store(mirror).close()
    result: list[PassResult] = []
    worker = threading.Thread(target=lambda: result.append(_sync(cfg, mirror)))
    worker.start()
    try:
        assert asked.wait(60), "no history was asked for"
        served = start_mirror_server(mirror, read_only=True)
        api = make_wandb_api(served.url, api_key=KEY)
        seen = 0
        for project in api.projects(SMALL_ENTITY):
            for run in api.runs(f"{SMALL_ENTITY}/{project.name}"):
                seen += 1
                assert run.state, (project.name, run.id, run.state)
                assert run.config is not None and isinstance(run.summary._json_dict, dict)
        with Store(mirror, readonly=True) as mi:
            assert mi.catalog.query("SELECT run_id FROM runs WHERE mirrored_at IS NULL") == []
            assert seen == mi.catalog.scalar("SELECT COUNT(*) FROM runs")
    finally:
        release.set()
        worker.join(120)
        proxy.stop()
    assert result and result[0].status == "ok", result and result[0].errors
