"""`serve` is safe by default: read-only unless --writable, Host checked (DNS rebinding), no
cross-site simple POSTs, the key checked before a body is read, bodies and queries bounded,
caches and the request log bounded, malformed bodies answered 400."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

AUTH = ("api", "x" * 40)
KEY = "guard-" + "k" * 34
STATE = 'mutation { upsertBucket(input: {id: "x", state: "crashed"}) { bucket { id } } }'


def _post(url: str, body: Any, **kw: Any) -> requests.Response:
    return requests.post(f"{url}/graphql", json=body, auth=kw.pop("auth", AUTH), timeout=30, **kw)


def _raw(url: str, request: bytes, wait: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(request)
        out = b""
        try:
            while b"\r\n\r\n" not in out:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return out


def _serve_cli(store: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(store), "--port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on http://"), line + proc.stderr.read()
    return proc, line.split()[-1]


def test_serve_is_read_only_unless_writable(writable_store: Path) -> None:
    before = (writable_store / "catalog.db").read_bytes()
    proc, url = _serve_cli(writable_store)
    try:
        r = _post(url, {"query": STATE})
        assert "read-only" in r.json()["errors"][0]["message"]
        put = requests.put(f"{url}/_mirror/upload/acme/vision/r01/x.txt", data=b"x", timeout=30)
        assert put.status_code == 403
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert (writable_store / "catalog.db").read_bytes() == before
    both = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(writable_store),
                           "--read-only", "--writable"], capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    for flag in ("--read-only", "--writable"):
        proc, url = _serve_cli(writable_store, flag)
        try:
            r = _post(url, {"query": 'query { project(name: "vision", entityName: "acme") { run(name: "r01") '
                                     '{ id } } }'})
            rid = r.json()["data"]["project"]["run"]["id"]
            r = _post(url, {"query": STATE.replace('"x"', f'"{rid}"')})
            if flag == "--writable":
                assert r.json()["data"]["upsertBucket"]["bucket"]["id"] == rid
            else:
                assert "read-only" in r.json()["errors"][0]["message"]
        finally:
            proc.terminate()
            proc.communicate(timeout=10)


def test_host_header_and_cross_site_requests(seeded_store: Path, start_mirror_server: Any) -> None:
    server = start_mirror_server(seeded_store, allow_hosts=frozenset({"mirror.lan"}))
    port = server.port
    q = {"query": "{ viewer { entity } }"}
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io", ""):
        r = requests.post(f"{server.url}/graphql", json=q, auth=AUTH, headers={"Host": host}, timeout=30)
        assert r.status_code == 403, host
        assert requests.get(f"{server.url}/healthz", headers={"Host": host}, timeout=30).status_code == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "mirror.lan", f"MIRROR.lan:{port}", "10.1.2.3"):
        r = requests.post(f"{server.url}/graphql", json=q, auth=AUTH, headers={"Host": host}, timeout=30)
        assert r.status_code == 200 and r.json()["data"]["viewer"]["entity"] == "acme", host
    # a browser's cross-site "simple" POST (text/plain or a form) is refused; so is no content type
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = requests.post(f"{server.url}/graphql", data=b'{"query": "{ viewer { entity } }"}', auth=AUTH,
                          headers=headers, timeout=30)
        assert r.status_code == 415, ctype
    ok = requests.post(f"{server.url}/graphql", data=b'{"query": "{ viewer { entity } }"}', auth=AUTH, timeout=30,
                       headers={"Content-Type": "application/json; charset=utf-8", "Origin": "http://evil.example"})
    assert ok.status_code == 200
    # no CORS: no preflight is granted and no response carries Access-Control-* headers
    pre = requests.options(f"{server.url}/graphql", headers={"Origin": "http://evil.example",
                                                              "Access-Control-Request-Method": "POST"}, timeout=30)
    assert pre.status_code >= 400
    for r in (ok, pre):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    server.stop()
    cli, url = _serve_cli(seeded_store, "--allow-host", "backup.internal")
    try:
        r = requests.post(f"{url}/graphql", json=q, auth=AUTH, headers={"Host": "backup.internal"}, timeout=30)
        assert r.status_code == 200
        r = requests.post(f"{url}/graphql", json=q, auth=AUTH, headers={"Host": "other.internal"}, timeout=30)
        assert r.status_code == 403 and "--allow-host" in r.json()["errors"][0]["message"]
    finally:
        cli.terminate()
        cli.communicate(timeout=10)


def test_key_before_body_and_body_caps(seeded_store: Path, start_mirror_server: Any) -> None:
    from wandb_mirror.server.guard import Limits

    server = start_mirror_server(seeded_store, api_key=KEY, limits=Limits(max_body=10_000))
    url = server.url
    # a 1 GB body announced without the key: refused at once, without waiting for (or reading) it
    t0 = time.monotonic()
    head = _raw(url, b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{")
    assert head.startswith(b"HTTP/1.1 401") and time.monotonic() - t0 < 3
    # with the key: over the cap by its announced length, or by its chunked length: 413
    head = _raw(url, b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n{")
    assert head.startswith(b"HTTP/1.1 413")

    def chunks() -> Any:
        for _ in range(30):
            yield b" " * 1000

    r = requests.post(f"{url}/graphql", data=chunks(), auth=("api", KEY), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # unknown routes ask for the key before they say 404
    assert requests.get(f"{url}/nope", timeout=30).status_code == 401
    assert requests.post(f"{url}/nope", data=b"x" * 100, timeout=30).status_code == 401
    assert requests.get(f"{url}/nope", auth=("api", KEY), timeout=30).status_code == 404
    assert _post(url, {"query": "{ viewer { entity } }"}, auth=("api", KEY)).status_code == 200


def test_malformed_bodies_are_400(seeded_server: Any) -> None:
    url = seeded_server.url
    for body in (b"[]", b"null", b'"q"', b'{"query": 5}', b'{"query": "{ viewer { id } }", "variables": [1]}',
                 b"\xff\xfe{", b'{"query": "{ viewer { id } }"', b""):
        r = requests.post(f"{url}/graphql", data=body, auth=AUTH, timeout=30,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.status_code, r.text)
    head = _raw(url, b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head[:40]
    head = _raw(url, b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: -5\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head[:40]
    assert _post(url, {"query": "{ viewer { entity } }"}).status_code == 200


def test_query_depth_aliases_and_cost_are_bounded(seeded_server: Any) -> None:
    url = seeded_server.url
    t0 = time.monotonic()
    # a few hundred bytes asking for a million file URLs (runs x files), or the same field 500 times
    costly = ('{ project(name: "vision", entityName: "acme") { runs(first: 1000) { edges { node { '
              'files(first: 1000) { edges { node { url directUrl md5 name sizeBytes } } } } } } } }')
    assert len(costly) < 300
    r = _post(url, {"query": costly})
    assert r.status_code == 200 and "cost" in r.json()["errors"][0]["message"] and r.json().get("data") is None
    aliases = "{ " + " ".join(f"a{i}: project(name: \"vision\", entityName: \"acme\") {{ id }}" for i in range(500)) + " }"
    r = _post(url, {"query": aliases})
    assert "aliases" in r.json()["errors"][0]["message"]
    deep = ('{ project(name: "vision", entityName: "acme") { ' + 'run(name: "r01") { project { ' * 12 + "id"
            + " } }" * 12 + " } }")
    r = _post(url, {"query": deep})
    assert "deeper" in r.json()["errors"][0]["message"]
    # the same cost through a variable is refused too; a normal page is not
    paged = ('query Q($n: Int) { project(name: "vision", entityName: "acme") { runs(first: $n) { edges { node { '
             'files(first: $n) { edges { node { url } } } } } } } }')
    assert "cost" in _post(url, {"query": paged, "variables": {"n": 5000}}).json()["errors"][0]["message"]
    ok = _post(url, {"query": paged, "variables": {"n": 50}}).json()
    assert "errors" not in ok and ok["data"]["project"]["runs"]["edges"]
    assert time.monotonic() - t0 < 10


def test_document_cache_and_request_log_are_bounded(seeded_store: Path, start_mirror_server: Any) -> None:
    from wandb_mirror.server.guard import Limits

    server = start_mirror_server(seeded_store, limits=Limits(request_log=20, document_cache_chars=20_000))
    with requests.Session() as s:
        for i in range(120):
            q = "{ viewer { entity } }" + " " * 500 + f"# {i}"
            assert s.post(f"{server.url}/graphql", json={"query": q}, auth=AUTH, timeout=30).status_code == 200
    engine = server._server.executor
    assert len(engine._cache) <= 40 and sum(len(k) for k in engine._cache) <= 20_000
    assert len(server.request_log()) == 20
