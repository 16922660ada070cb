"""Reliability 6: secrets and exposure.

- The API key never appears in logs (debug level), the catalog (its WAL included), exports, the
  plugin journal, error messages, status output, or any process's command line (`ps`, and
  /proc/PID/cmdline of the daemon and of `sync`): our tools take it from the environment or
  ~/.netrc only. Neither does its Basic-auth form (base64 of "api:KEY"). A key put into the
  config's base_url, or a key sitting in a broken ~/.netrc, is refused without being repeated.
- Store files and directories are created 0600/0700 (objects 0400), even under umask 000.
- `serve` binds 127.0.0.1 unless told otherwise; with `--api-key` it refuses every request without
  the key, file and artifact downloads, presigned-style URLs without a valid signature, uploads and
  its request log included; `--read-only` refuses every mutation in the schema, and every upload,
  and the store stays byte-identical.

tests/test_server_writes.py has the first --api-key and --read-only checks; this extends them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import copy_store
from reliability_support import ENTITY, ROOT, child_env, cli, seed_store, store_problems, write_config

from wandb_mirror.store import Store

FIGURES: dict[str, int] = {}

TAGGER = '''"""tagger: tags every new run upstream (a real write-back, journaled)."""
from wandb_mirror.hooks import hookimpl


@hookimpl
def run_created(run, upstream):
    upstream.add_tags(run, "seen-by-mirror")
'''


def forms(key: str) -> list[bytes]:
    """The key and its Basic-auth form, as they would appear in any file or output."""
    return [key.encode(), base64.b64encode(f"api:{key}".encode())]


def leaks(key: str, *texts: str | bytes) -> list[str]:
    out = []
    for t in texts:
        b = t.encode() if isinstance(t, str) else t
        out += [f"{f[:6]!r}... found" for f in forms(key) if f in b]
    return out


def tree_leaks(key: str, *roots: Path) -> list[str]:
    out = []
    for root in roots:
        for p in [root] if root.is_file() else root.rglob("*"):
            if p.is_file():
                if leaks(key, p.read_bytes()):
                    out.append(str(p))
    return out


@pytest.fixture(scope="module")
def upstream_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("secrets") / "up")


def test_the_api_key_never_leaks(upstream_path: Path, tmp_path: Path, start_mirror_server) -> None:
    key = "S3cr3T" + secrets.token_hex(17)
    up = copy_store(upstream_path, tmp_path / "up")
    server = start_mirror_server(up, api_key=key, writable=True)  # writable, demands the key
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "tagger.py").write_text(TAGGER)
    cfg = write_config(tmp_path, server.url, extra=(
        '[daemon]\nplugins_dir = "plugins"\npoll_interval = "1h"\n\n[plugins.tagger]\nenabled = true\ndry_run = false\n\n'
        '[plugins.export]\nenabled = true\nout = "export"\nformats = ["csv", "jsonl"]\n'))
    env = child_env(WANDB_API_KEY=key)
    p = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "-vv", "run", "--config", str(cfg), "--no-watch"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        mirror = tmp_path / "mirror"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (mirror / "catalog.db").exists():
                with Store(mirror, create=False, readonly=True) as s:
                    try:
                        done = s.catalog.scalar("SELECT COUNT(*) FROM journal WHERE result = 'ok'") or 0
                        ok = s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status = 'ok'") or 0
                    except Exception:  # noqa: BLE001 - tables not created yet
                        continue
                if ok and done >= 8:
                    break
        else:
            pytest.fail("the daemon never finished its first cycle")
        # while it runs (its catalog WAL open): nothing readable by others
        assert [x for x in store_problems(mirror) if "lets others in" in x] == []
        # the running daemon's command line, and every command line on the machine
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
        ps = subprocess.run(["ps", "-eo", "pid,args", "-ww"], capture_output=True, timeout=10).stdout
        assert leaks(key, cmdline, ps) == []
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-2000:]
    assert b"DEBUG" in err  # debug logging really was on
    assert leaks(key, out, err) == []

    # an incremental `sync -vv` (its /proc cmdline checked while it runs), a wrong key, status, plugins
    s = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "-vv", "sync", "--config", str(cfg), "--once"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        cmd = Path(f"/proc/{s.pid}/cmdline").read_bytes()
    except FileNotFoundError:
        cmd = b""
    sout, serr = s.communicate(timeout=60)
    assert s.returncode == 0, serr[-2000:]
    wrong = "W" * 6 + secrets.token_hex(17)
    bad = cli("-vv", "sync", "--config", str(cfg), "--once", env=child_env(WANDB_API_KEY=wrong))
    assert bad.returncode == 2 and "API key rejected" in bad.stderr
    status = cli("status", "--store", str(mirror), "--json", env=env)
    plugins = cli("plugins", "--config", str(cfg), env=env)
    export = cli("export", "--store", str(mirror), "--format", "jsonl", "--out", str(tmp_path / "export2"), env=env)
    assert status.returncode == 0 and plugins.returncode == 0 and export.returncode == 0
    assert leaks(key, cmd, sout, serr, status.stdout, status.stderr, plugins.stdout, plugins.stderr,
                 export.stdout, export.stderr) == []
    assert leaks(wrong, bad.stdout, bad.stderr) == []

    # nothing on disk: the store (catalog, WAL, objects, lock), the exports, the plugin and config files
    with Store(mirror, create=False) as st:
        assert st.catalog.scalar("SELECT COUNT(*) FROM journal WHERE dry_run = 0 AND result = 'ok'") >= 8
    assert tree_leaks(key, mirror, tmp_path / "export", tmp_path / "export2", tmp_path / "plugins", cfg) == []


def test_a_key_in_the_config_url_or_a_broken_netrc_is_never_repeated(tmp_path: Path) -> None:
    key = "K3y" + secrets.token_hex(18)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[source]\nbase_url = "https://api:{key}@api.wandb.ai"\n[store]\npath = "m"\n')
    p = cli("check-config", str(cfg))
    assert p.returncode == 2 and "must not contain credentials" in p.stderr and leaks(key, p.stdout, p.stderr) == []
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine api.wandb.ai login api\n{key}\n")  # the key on a line of its own: a parse error
    cfg.write_text('[source]\nbase_url = "https://api.wandb.ai"\n[store]\npath = "m"\n')
    env = child_env(NETRC=str(netrc))
    env.pop("WANDB_API_KEY")
    p = cli("sync", "--config", str(cfg), "--once", env=env)
    assert p.returncode == 2 and "cannot read" in p.stderr and leaks(key, p.stdout, p.stderr) == []
    assert not (tmp_path / "m").exists()


def test_store_files_are_private_even_under_umask_000(upstream_path: Path, tmp_path: Path, start_mirror_server) -> None:
    server = start_mirror_server(upstream_path, read_only=True)
    cfg = write_config(tmp_path, server.url)
    p = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "sync", "--config", str(cfg), "--once"], cwd=ROOT,
                       env=child_env(), capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0))
    assert p.returncode == 0, p.stderr
    mirror = tmp_path / "mirror"
    assert store_problems(mirror) == []  # no group or other bit on anything
    objects = [x for x in (mirror / "objects" / "md5").rglob("*") if x.is_file()]
    assert objects and all((x.stat().st_mode & 0o777) == 0o400 for x in objects)
    assert (mirror / "catalog.db").stat().st_mode & 0o777 == 0o600
    assert (mirror / "lock").stat().st_mode & 0o777 == 0o600


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this picks the outgoing interface
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_serve_binds_loopback_unless_told(upstream_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(upstream_path), "--port", "0",
                          "--read-only"], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        ip = _non_loopback_ip()
        if ip:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{ip}:{port}/healthz", timeout=5)
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)


JSON = {"Content-Type": "application/json"}


def test_api_key_guards_every_route(upstream_path: Path, start_mirror_server, monkeypatch) -> None:
    from wandb_mirror.client import Problem
    from wandb_mirror.config import minimal_config
    from wandb_mirror.sync import make_client

    key = "G" * 8 + secrets.token_hex(16)
    server = start_mirror_server(upstream_path, read_only=True, api_key=key)
    monkeypatch.setenv("WANDB_API_KEY", key)
    client = make_client(minimal_config(server.url, "unused"))
    try:
        probs: list[Problem] = []
        f = next(iter(client.run_files(ENTITY, "alpha", "a1", probs)))
        art = next(iter(client.collection_versions(ENTITY, "alpha", "dataset", "data")))
        manifest = client.manifest_url(art.artifact.id)
        files = client.artifact_file_urls(ENTITY, "alpha", "data", 0)
    finally:
        client.close()
    base = server.url
    sig_urls = [f.direct_url, manifest, *files.values()]
    graphql = ("POST", f"{base}/graphql", json.dumps({"query": "{ viewer { id username } }"}).encode())
    guarded = [graphql, ("GET", f.url, None), ("HEAD", f.url, None), ("GET", f"{base}/_mirror/requests", None),
               ("GET", f"{base}/artifactsV2/default/{ENTITY}/x/{'0' * 32}/a.txt", None),
               ("GET", f"{base}/artifacts/{ENTITY}/{'0' * 32}", None)]
    wrong_auths: list[Any] = [None, ("api", "w" * 40), ("api", ""), ("api", key[:-1]), ("api", key + "x")]
    refused = 0
    for method, url, body in guarded:
        for auth in wrong_auths:
            r = requests.request(method, url, data=body, auth=auth, headers=JSON, timeout=30)
            assert r.status_code == 401, (method, url, auth and auth[1][:4], r.status_code)
            refused += 1
        for header in ("Bearer " + "w" * 40, "Basic !!notbase64", "Digest x"):
            r = requests.request(method, url, data=body, headers={"Authorization": header, **JSON}, timeout=30)
            assert r.status_code == 401, (method, url, header)
            refused += 1
    # presigned-style URLs: no key needed, but a valid signature is; a wrong, missing or moved one is refused
    for u in sig_urls:
        assert requests.get(u, timeout=30).status_code == 200
        bare = u.split("?")[0]
        for bad in (bare, bare + "?sig=", bare + "?sig=" + "0" * 32, u.replace("/a.txt", "/b.txt")):
            if bad != u:
                assert requests.get(bad, timeout=30).status_code in (401, 403), bad
                refused += 1
    put = requests.put(f"{base}/_mirror/upload/{ENTITY}/alpha/a1/x.txt", data=b"x", timeout=30)
    assert put.status_code in (401, 403)
    # with the key, the guarded routes answer (so the refusals above were about the key)
    assert requests.post(graphql[1], data=graphql[2], auth=("api", key), headers=JSON, timeout=30).status_code == 200
    assert requests.get(f.url, auth=("api", key), timeout=30).status_code == 200
    assert refused >= 50
    FIGURES["refused_requests"] = refused


def _fill(t: Any) -> Any:
    """A value of GraphQL input type `t`: every field filled, so a server that ran it would write."""
    from graphql import (
        GraphQLEnumType,
        GraphQLInputObjectType,
        GraphQLList,
        GraphQLNonNull,
        GraphQLScalarType,
    )

    if isinstance(t, GraphQLNonNull):
        return _fill(t.of_type)
    if isinstance(t, GraphQLList):
        return [_fill(t.of_type)]
    if isinstance(t, GraphQLEnumType):
        return next(iter(t.values))
    if isinstance(t, GraphQLInputObjectType):
        return {name: _fill(f.type) for name, f in t.fields.items()}
    if isinstance(t, GraphQLScalarType):
        return {"Int": 1, "Int64": 1, "Float": 1.0, "Boolean": True, "JSONString": "{}", "JSON": {}}.get(t.name, "x")
    return None


def _store_bytes(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != "lock":
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_read_only_refuses_every_mutation(upstream_path: Path, tmp_path: Path, start_mirror_server) -> None:
    from wandb_mirror.server.schema import build_schema

    store = copy_store(upstream_path, tmp_path / "up")
    server = start_mirror_server(store, read_only=True)
    before = _store_bytes(store)
    schema = build_schema()
    mutations = schema.mutation_type.fields
    assert len(mutations) >= 10
    for name, field in mutations.items():
        decl = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
        call = ", ".join(f"{a}: ${a}" for a in field.args)
        doc = f"mutation M{name}({decl}) {{ {name}({call}) {{ __typename }} }}" if decl else \
            f"mutation M{name} {{ {name} {{ __typename }} }}"
        variables = {a: _fill(arg.type) for a, arg in field.args.items()}
        r = requests.post(f"{server.url}/graphql", json={"query": doc, "variables": variables,
                                                         "operationName": f"M{name}"}, timeout=30)
        body = r.json()
        assert body.get("errors") and "read-only" in json.dumps(body["errors"]), (name, body)
        assert not (body.get("data") or {}).get(name), (name, body)
        # also hidden behind a query in the same document
        r = requests.post(f"{server.url}/graphql", json={"query": "query Q { viewer { id } }\n" + doc,
                                                         "variables": variables, "operationName": f"M{name}"},
                          timeout=30)
        assert "read-only" in json.dumps(r.json().get("errors")), name
    for method in ("PUT", "POST"):
        r = requests.request(method, f"{server.url}/_mirror/upload/{ENTITY}/alpha/a1/x.txt", data=b"x", timeout=30)
        assert r.status_code in (403, 404, 405), (method, r.status_code)
    assert _store_bytes(store) == before
    FIGURES["mutations_refused"] = 2 * len(mutations) + 2
