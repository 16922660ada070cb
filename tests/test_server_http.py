"""The HTTP/GraphQL layer directly: wire quirks, errors, request log, faults, latency, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

AUTH = ("api", "x" * 40)


def gql(url: str, query: str, variables: dict[str, Any] | None = None, operation_name: Any = "",
        session: requests.Session | None = None) -> requests.Response:
    body: dict[str, Any] = {"query": query, "operationName": operation_name}
    if variables is not None:
        body["variables"] = variables
    return (session or requests).post(f"{url}/graphql", json=body, auth=AUTH, timeout=30)


RUN_STATE = """#graphql
    query RunState($project: String!, $entity: String!, $name: String!) {
        project(name: $project, entityName: $entity) { run(name: $name) { state } } }"""


def test_wire_quirks(seeded_server: Any) -> None:
    # '#graphql' prefix, operationName "", and undeclared variables (the client always adds some)
    r = gql(seeded_server.url, RUN_STATE, {"project": "vision", "entity": "acme", "name": "r03", "extra": 1,
                                           "perPage": 5})
    assert r.status_code == 200
    assert r.json() == {"data": {"project": {"run": {"state": "crashed"}}}}
    # selection sets are honoured: nothing beyond what was asked
    r = gql(seeded_server.url, "query { viewer { entity } }")
    assert r.json() == {"data": {"viewer": {"entity": "acme"}}}


def test_graphql_errors_are_200(seeded_server: Any) -> None:
    r = gql(seeded_server.url, "query { nope }")
    assert r.status_code == 200 and r.json()["errors"][0]["message"]
    r = gql(seeded_server.url, "query Q { viewer { id } } query P { viewer { id } }", operation_name="Z")
    assert r.status_code == 200 and "Unknown operation" in r.json()["errors"][0]["message"]
    r = gql(seeded_server.url, "query Runs($p: String!, $f: JSONString) { project(name: $p, entityName: \"acme\") "
            "{ runCount(filters: $f) } }", {"p": "vision", "f": '{"config.lr": {"$bogus": 1}}'})
    assert r.status_code == 200 and "$bogus" in r.json()["errors"][0]["message"]
    r = requests.post(f"{seeded_server.url}/graphql", data=b"not json", auth=AUTH, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_server_features_and_keep_alive(seeded_server: Any) -> None:
    with requests.Session() as s:
        r1 = gql(seeded_server.url, "query ServerFeaturesQuery { serverInfo { features { name isEnabled } } }",
                 operation_name="ServerFeaturesQuery", session=s)
        names = {f["name"] for f in r1.json()["data"]["serverInfo"]["features"]}
        assert {"TOTAL_COUNT_IN_FILE_CONNECTION", "MARK_RUN_FILES_UPLOADED"} <= names
        assert r1.headers.get("Connection", "").lower() != "close"
        seeded_server.reset_log()
        for _ in range(3):
            gql(seeded_server.url, RUN_STATE, {"project": "vision", "entity": "acme", "name": "r01"}, session=s)
    log = seeded_server.request_log()
    assert [e["operation"] for e in log] == ["RunState"] * 3  # "" operationName -> derived from the text
    assert all(e["status"] == 200 and e["bytes"] > 0 and e["ms"] >= 0 for e in log)


def test_request_log_endpoint(seeded_store: Path, start_mirror_server: Any) -> None:
    # a server of its own: the shared one may still be finishing other tests' requests
    server = start_mirror_server(seeded_store, read_only=True)
    server.reset_log()
    gql(server.url, "query GetDefaultEntity { viewer { id entity } }")
    r = requests.get(f"{server.url}/_mirror/requests?reset=1", auth=AUTH, timeout=30)
    entries = r.json()
    assert [(e["method"], e["path"], e["operation"]) for e in entries] == [("POST", "/graphql", "GetDefaultEntity")]
    assert server.request_log() == []


def _outcomes(url: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        try:
            r = requests.post(f"{url}/graphql", json={"query": "{ viewer { id } }", "variables": {"i": i}},
                              auth=AUTH, timeout=10)
            out.append(f"{r.status_code}:{r.headers.get('Retry-After', '')}")
        except requests.ConnectionError:
            out.append("drop")
    return out


def test_faults_are_reproducible(seeded_store: Path, start_mirror_server: Any) -> None:
    a = start_mirror_server(seeded_store, read_only=True, fault_rate=0.5, fault_seed=7)
    b = start_mirror_server(seeded_store, read_only=True, fault_rate=0.5, fault_seed=7)
    c = start_mirror_server(seeded_store, read_only=True, fault_rate=0.5, fault_seed=8)
    first, second, other = _outcomes(a.url, 30), _outcomes(b.url, 30), _outcomes(c.url, 30)
    assert first == second
    assert first != other
    assert {"200:", "429:1", "500:", "drop"} <= set(first + other)
    assert 5 <= sum(o != "200:" for o in first) <= 25
    # a retry of the same request gets a fresh draw: it eventually succeeds
    for _ in range(20):
        try:
            if requests.post(f"{a.url}/graphql", json={"query": "{ viewer { id } }", "variables": {"i": 0}},
                             auth=AUTH, timeout=10).status_code == 200:
                break
        except requests.ConnectionError:
            pass
    else:
        pytest.fail("retries never succeeded")


def test_file_body_faults(seeded_store: Path, start_mirror_server: Any, make_wandb_api: Any) -> None:
    import hashlib

    srv = start_mirror_server(seeded_store, read_only=True)
    url = make_wandb_api(srv.url).run("acme/vision/r01").file("model.bin").direct_url
    path = url.split("://", 1)[1].split("/", 1)[1]
    faulty = start_mirror_server(seeded_store, read_only=True, fault_rate=1.0, fault_seed=3)
    want = hashlib.md5(requests.get(url, timeout=30).content).hexdigest()
    kinds = set()
    for _ in range(25):
        try:
            r = requests.get(f"{faulty.url}/{path}", timeout=30)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            kinds.add("drop-or-truncate")
            continue
        if r.status_code != 200:
            kinds.add(str(r.status_code))
        else:
            assert len(r.content) == 1_500_000 and hashlib.md5(r.content).hexdigest() != want
            kinds.add("corrupt")
    assert {"429", "500", "corrupt", "drop-or-truncate"} <= kinds


def test_latency(seeded_store: Path, start_mirror_server: Any) -> None:
    slow = start_mirror_server(seeded_store, read_only=True, latency_ms=150)
    t0 = time.perf_counter()
    gql(slow.url, "{ viewer { id } }")
    assert time.perf_counter() - t0 >= 0.15


def test_performance_cached_documents(seeded_server: Any) -> None:
    q = """query Runs($project: String!, $entity: String!, $filters: JSONString, $order: String) {
      project(name: $project, entityName: $entity) { runCount(filters: $filters)
        runs(filters: $filters, order: $order, first: 50) { edges { node { id name config summaryMetrics } } } } }"""
    v = {"project": "vision", "entity": "acme", "filters": '{"config.lr": {"$gt": 0.001}}',
         "order": "-summary_metrics.loss"}
    with requests.Session() as s:
        gql(seeded_server.url, q, v, session=s)
        t0 = time.perf_counter()
        for _ in range(50):
            assert gql(seeded_server.url, q, v, session=s).status_code == 200
    assert (time.perf_counter() - t0) / 50 < 0.05


def test_cli_prints_listening_first(seeded_store: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(seeded_store),
                             "--port", "0", "--read-only"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        r = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": "{ viewer { entity } }"}, timeout=30)
        assert r.json()["data"]["viewer"]["entity"] == "acme"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(tmp_path / "nope"),
                          "--port", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "serve", "--store", str(tmp_path / "empty"),
                          "--port", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a wandb-mirror store" in bad.stderr
