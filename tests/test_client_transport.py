"""The client's HTTP layer against a tiny scripted stdlib server: retries, limits, auth, downloads,
pagination, API-key lookup. Waits are recorded by an injected sleep, so nothing here sleeps long."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wandb_mirror.client import (
    ApiError,
    ApiKeyMissing,
    AuthError,
    GraphQLError,
    NotFound,
    PaginationError,
    RetryBudgetExhausted,
    RetryPolicy,
    Transport,
    WandbClient,
    resolve_api_key,
)
from wandb_mirror.client import documents as D
from wandb_mirror.client.transport import parse_retry_after
from wandb_mirror.errors import IntegrityError, UsageError
from wandb_mirror.store import Store

KEY = "k" * 40


class Reply:
    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None,
                 raw: bytes | None = None, truncate_to: int | None = None, delay: float = 0.0):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw
        self.truncate_to = truncate_to
        self.delay = delay


class ScriptServer:
    """Answers each request with script(request) -> Reply; records every request."""

    def __init__(self, script: Callable[[dict[str, Any]], Reply]):
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body,
                       "json": json.loads(body) if body and self.headers.get("Content-Type", "").startswith("application/json") else None}
                with outer.lock:
                    outer.requests.append(req)
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    r = outer.script(req)
                    if r.delay:
                        time.sleep(r.delay)
                    data = r.raw if r.raw is not None else json.dumps(r.body).encode()
                    self.send_response(r.status)
                    for k, v in r.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    if r.truncate_to is not None:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data if r.truncate_to is None else data[: r.truncate_to])
                    self.wfile.flush()
                    if r.truncate_to is not None:
                        self.close_connection = True
                finally:
                    with outer.lock:
                        outer.active -= 1

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[dict[str, Any]], Reply]], ScriptServer]]:
    servers: list[ScriptServer] = []

    def start(script: Callable[[dict[str, Any]], Reply]) -> ScriptServer:
        s = ScriptServer(script)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def sequence(*replies: Reply) -> Callable[[dict[str, Any]], Reply]:
    items = list(replies)
    lock = threading.Lock()

    def script(req: dict[str, Any]) -> Reply:
        with lock:
            return items.pop(0) if len(items) > 1 else items[0]

    return script


OK = Reply(200, {"data": {"viewer": {"id": "VXNlcjox", "entity": "acme", "username": "ada"}}})


def transport(url: str, waits: list[float] | None = None, **kw: Any) -> Transport:
    policy = kw.pop("retry", None) or RetryPolicy(max_attempts=6, wait_min=1.0, wait_max=8.0, budget=100)
    return Transport(url, KEY, retry=policy, sleep=(waits.append if waits is not None else (lambda s: None)), **kw)


def viewer(t: Transport) -> dict[str, Any]:
    return t.graphql(D.VIEWER.name, D.VIEWER.text)


# ---------------------------------------------------------------------------------------------
# retries
# ---------------------------------------------------------------------------------------------
def test_429_retry_after_seconds_replaces_backoff(serve) -> None:
    s = serve(sequence(Reply(429, {"errors": [{"message": "slow down"}]}, {"Retry-After": "7"}), OK))
    waits: list[float] = []
    t = transport(s.url, waits)
    assert viewer(t)["viewer"]["entity"] == "acme"
    assert waits == [7.0]
    snap = t.stats.snapshot()
    assert snap["rate_limited"] == 1 and snap["retries"] == 1 and snap["total"] == 2
    assert snap["by_operation"] == {"Viewer": 2}


def test_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(when) <= 31
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("soon") is None


def test_5xx_backoff_is_exponential_with_jitter(serve) -> None:
    s = serve(sequence(Reply(500, {"errors": [{"message": "boom"}]}), Reply(503, raw=b"down"),
                       Reply(502, raw=b"bad gw"), OK))
    waits: list[float] = []
    t = transport(s.url, waits)
    viewer(t)
    assert len(waits) == 3
    for w, base in zip(waits, (1.0, 2.0, 4.0)):
        assert base <= w <= base * 1.25
    assert t.stats.snapshot()["server_errors"] == 3


@pytest.mark.parametrize("status", [400, 402, 403, 404, 409, 410, 413, 422, 501])
def test_non_retryable_statuses_fail_at_once(serve, status: int) -> None:
    s = serve(sequence(Reply(status, {"errors": [{"message": f"nope {status}"}]})))
    waits: list[float] = []
    t = transport(s.url, waits)
    with pytest.raises(ApiError) as ei:
        viewer(t)
    assert len(s.requests) == 1 and waits == []
    assert f"nope {status}" in str(ei.value)
    if status == 404:
        assert isinstance(ei.value, NotFound)


def test_401_is_one_clear_line_without_the_key(serve) -> None:
    s = serve(sequence(Reply(401, {"errors": [{"message": "unauthorized"}]})))
    t = transport(s.url)
    with pytest.raises(AuthError) as ei:
        viewer(t)
    host = s.url.split("//")[1]
    assert str(ei.value) == f"API key rejected by {host} (HTTP 401)"
    assert isinstance(ei.value, UsageError) and ei.value.exit_code == 2
    assert len(s.requests) == 1


def test_graphql_errors_fail_the_call_without_retry(serve) -> None:
    s = serve(sequence(Reply(200, {"errors": [{"message": "permission denied"}, {"message": "second"}],
                                   "data": {"viewer": {"id": "x"}}})))
    t = transport(s.url)
    with pytest.raises(GraphQLError, match="permission denied; second"):
        viewer(t)
    assert len(s.requests) == 1


def test_truncated_and_garbled_bodies_are_retried(serve) -> None:
    body = json.dumps(OK.body).encode()
    s = serve(sequence(Reply(200, raw=body, truncate_to=10), Reply(200, raw=b"<html>oops</html>"), OK))
    waits: list[float] = []
    t = transport(s.url, waits)
    assert viewer(t)["viewer"]["username"] == "ada"
    assert len(s.requests) == 3 and len(waits) == 2


def test_connection_errors_are_retried_then_fail_with_attempt_count() -> None:
    waits: list[float] = []
    t = transport("http://127.0.0.1:9", waits, retry=RetryPolicy(max_attempts=3, wait_min=0.5, budget=100))
    with pytest.raises(ApiError, match="gave up after 3 attempts"):
        viewer(t)
    assert len(waits) == 2


def test_per_call_time_bound_stops_long_retry_after(serve) -> None:
    s = serve(sequence(Reply(429, {}, {"Retry-After": "3600"})))
    waits: list[float] = []
    t = transport(s.url, waits, retry=RetryPolicy(max_attempts=10, max_call_seconds=60, budget=100))
    with pytest.raises(ApiError, match="HTTP 429"):
        viewer(t)
    assert waits == [] and len(s.requests) == 1


def test_retry_budget_is_shared_by_the_pass(serve) -> None:
    s = serve(sequence(Reply(500, raw=b"x")))
    waits: list[float] = []
    t = transport(s.url, waits, retry=RetryPolicy(max_attempts=10, wait_min=0.01, budget=3))
    with pytest.raises(RetryBudgetExhausted, match="retry budget of 3"):
        viewer(t)
    assert len(s.requests) == 4
    with pytest.raises(RetryBudgetExhausted):
        viewer(t)
    assert len(s.requests) == 5  # no retries left: the next failing call fails at once


# ---------------------------------------------------------------------------------------------
# limits, headers, auth scope
# ---------------------------------------------------------------------------------------------
def test_concurrency_is_bounded_across_threads(serve) -> None:
    s = serve(lambda req: Reply(200, OK.body, delay=0.05))
    t = transport(s.url, concurrency=2)
    threads = [threading.Thread(target=viewer, args=(t,)) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert s.max_active <= 2 and len(s.requests) == 8


def test_rate_limit_spaces_requests(serve) -> None:
    s = serve(lambda req: OK)
    t = transport(s.url, rate_limit=40)
    t0 = time.monotonic()
    for _ in range(9):
        viewer(t)
    assert time.monotonic() - t0 >= 8 / 40 * 0.9


def test_headers_and_auth_only_under_the_base_url(serve, tmp_path: Path) -> None:
    payload = b"file bytes"
    s = serve(lambda req: Reply(200, raw=payload) if req["method"] == "GET" else OK)
    t = transport(s.url)
    viewer(t)
    h = s.requests[0]["headers"]
    assert h["User-Agent"].startswith("wandb-mirror/")
    assert h["Use-Admin-Privileges"] == "true"
    assert h["Authorization"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert s.requests[0]["json"]["operationName"] == "Viewer"
    store = Store(tmp_path / "s")
    client = WandbClient(t)
    md5 = hashlib.md5(payload).hexdigest()
    client.fetch_to_store(s.url + "/files/e/p/r/a.txt", store.objects, operation="GET file", expected_md5=md5,
                          expected_size=len(payload))
    assert "Authorization" in s.requests[-1]["headers"]
    store.objects.remove(md5)
    # same server under another host name: a presigned URL elsewhere must not get the key
    other = s.url.replace("127.0.0.1", "localhost")
    client.fetch_to_store(other + "/signed/a.txt?sig=1", store.objects, operation="GET file", expected_md5=md5,
                          expected_size=len(payload))
    assert "Authorization" not in s.requests[-1]["headers"]
    store.close()


def test_key_never_logged(serve, caplog: pytest.LogCaptureFixture) -> None:
    s = serve(sequence(Reply(500, raw=b"x"), Reply(401, {})))
    t = transport(s.url)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as ei:
        viewer(t)
    assert KEY not in caplog.text and KEY not in str(ei.value) and KEY not in repr(t.stats)
    t.trace = []
    with pytest.raises(AuthError):
        viewer(t)
    assert KEY not in json.dumps(t.trace)


# ---------------------------------------------------------------------------------------------
# verified downloads
# ---------------------------------------------------------------------------------------------
def test_download_with_wrong_bytes_is_retried_then_rejected_and_nothing_stored(serve, tmp_path: Path) -> None:
    s = serve(lambda req: Reply(200, raw=b"evil bytes"))
    t = transport(s.url, retry=RetryPolicy(integrity_attempts=3, budget=100))
    store = Store(tmp_path / "s")
    good = b"good bytes"
    with pytest.raises(IntegrityError, match="md5 mismatch"):
        WandbClient(t).fetch_to_store(s.url + "/x", store.objects, operation="GET file",
                                      expected_md5=hashlib.md5(good).hexdigest(), expected_size=len(good))
    assert len(s.requests) == 3
    assert list(store.objects.iter_objects()) == [] and list(store.objects.tmp.iterdir()) == []
    store.close()


def test_download_truncated_is_retried_and_xxh128_verified(serve, tmp_path: Path) -> None:
    import xxhash

    data = bytes(range(256)) * 400
    s = serve(sequence(Reply(200, raw=data, truncate_to=1000), Reply(200, raw=data)))
    t = transport(s.url)
    store = Store(tmp_path / "s")
    want = base64.b64encode(xxhash.xxh3_128(data).digest()).decode()
    info = WandbClient(t).fetch_to_store(s.url + "/x", store.objects, operation="GET artifact file",
                                         expected_size=len(data), xxh128_b64=want)
    assert info.md5 == hashlib.md5(data).hexdigest() and store.objects.read_bytes(info.md5) == data
    store.objects.remove(info.md5)
    with pytest.raises(IntegrityError, match="xxh128 mismatch"):
        WandbClient(t).fetch_to_store(s.url + "/x", store.objects, operation="GET artifact file",
                                      expected_size=len(data), xxh128_b64=base64.b64encode(b"\0" * 16).decode())
    assert list(store.objects.iter_objects()) == []
    store.close()


# ---------------------------------------------------------------------------------------------
# pagination
# ---------------------------------------------------------------------------------------------
def _runs_page(names: list[str], has_next: bool, cursor: str | None) -> Reply:
    edges = [{"node": {"id": f"id-{n}", "name": n, "createdAt": "2024-01-01T00:00:00", "state": "finished"},
              "cursor": f"c-{n}"} for n in names]
    return Reply(200, {"data": {"project": {"internalId": "7", "runCount": 3, "runs": {
        "edges": edges, "pageInfo": {"endCursor": cursor, "hasNextPage": has_next}}}}})


def test_pagination_survives_empty_pages_and_duplicates(serve) -> None:
    s = serve(sequence(_runs_page([], True, "c0"), _runs_page(["a", "b"], True, "c-b"),
                       _runs_page(["b", "c"], False, "c-c")))
    client = WandbClient(transport(s.url))
    names = [r.run.run_id for r in client.runs("e", "p", full=False)]
    assert names == ["a", "b", "c"]
    cursors = [r["json"]["variables"]["cursor"] for r in s.requests]
    assert cursors == [None, "c0", "c-b"]


def test_pagination_refuses_a_repeated_cursor(serve) -> None:
    s = serve(lambda req: _runs_page(["a"], True, "c-a"))
    client = WandbClient(transport(s.url))
    with pytest.raises(PaginationError, match="repeated cursor"):
        list(client.runs("e", "p", full=False))


# ---------------------------------------------------------------------------------------------
# the API key
# ---------------------------------------------------------------------------------------------
def test_api_key_from_env_then_netrc_then_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "envkey")
    assert resolve_api_key("https://api.wandb.ai") == "envkey"
    monkeypatch.delenv("WANDB_API_KEY")
    rc = tmp_path / "netrc"
    rc.write_text("machine 127.0.0.1:8080\n  login user\n  password portkey\nmachine api.wandb.ai\n  login user\n  password cloudkey\n")
    rc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(rc))
    assert resolve_api_key("http://127.0.0.1:8080") == "portkey"
    assert resolve_api_key("https://api.wandb.ai") == "cloudkey"
    assert resolve_api_key("https://api.forge.coreweave.com") == "cloudkey"
    creds = tmp_path / "creds"  # systemd LoadCredential=wandb-api-key:... beats the netrc
    creds.mkdir()
    (creds / "wandb-api-key").write_text("credkey\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert resolve_api_key("https://api.wandb.ai") == "credkey"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ApiKeyMissing) as ei:
        resolve_api_key("https://wandb.example.com")
    msg = str(ei.value)
    assert "WANDB_API_KEY" in msg and "wandb.example.com" in msg and "\n" not in msg
    assert ei.value.exit_code == 2


def test_sessions_are_pooled_not_per_thread(serve) -> None:
    s = serve(lambda req: OK)
    t = transport(s.url, concurrency=2)
    for _ in range(5):  # short-lived worker threads, as each pass's thread pool has
        threads = [threading.Thread(target=viewer, args=(t,)) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert len(t._all_sessions) <= 2
    t.close()
    assert t._all_sessions == []
