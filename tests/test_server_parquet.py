"""`serve` exports history as W&B does: parquetHistory answers presigned-style Parquet URLs plus
liveData, and the official client reads the same rows through them as through HistoryPage."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from conftest import ENTITY, PROJECT

from wandb_mirror.store import Store

KEY = "k" * 40
RUNS = ["r01", "r02", "r04", "r06"]
LIVE_FROM, LIVE_TO = 2000, 2350  # long, short, running with a live tail, NaN/Infinity/nested values


def _norm(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as comparable text. Parquet has a cell for every key in every row, so the client shows
    a key a row lacks as None there (as it does against W&B): a missing key and None are the same.
    sampledHistory (the keyed live path) carries NaN/Infinity as the strings W&B sends; Parquet
    holds the floats themselves: the same values."""
    def text(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
        return v
    return [json.dumps({k: text(v) for k, v in r.items() if v is not None}, sort_keys=True) for r in rows]


@pytest.fixture
def store_with_live_tail(writable_store: Path) -> Path:
    """The running run r04 gets 2,000 exported steps (a segment) and 350 live ones (the tail)."""
    with Store(writable_store) as s:
        pk = s.catalog.run_pk(s.catalog.project_pk(ENTITY, PROJECT), "r04")
        s.history.append(pk, ((i, json.dumps({"_step": i, "loss": 1 / (i + 1), "phase": "warm" if i < 10 else "main"}))
                              for i in range(LIVE_TO)))
        s.history.compact(pk, below=LIVE_FROM)
        with s.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET history_keys = ?, last_step = ?, history_line_count = ? WHERE pk = ?",
                         [json.dumps({"lastStep": LIVE_TO - 1, "keys": {}}), LIVE_TO - 1, LIVE_TO, pk])
    return writable_store


def _ops(server: Any) -> list[str]:
    return [e["operation"] or f"{e['method']} {e['path'].split('/')[2]} {e['status']}" for e in server.request_log()]


def test_official_client_reads_the_same_history_through_parquet_and_history_page(
        store_with_live_tail: Path, start_mirror_server: Any, make_wandb_api: Any) -> None:
    exports = start_mirror_server(store_with_live_tail, api_key=KEY)
    paged = start_mirror_server(store_with_live_tail, api_key=KEY, parquet_export_delay=10 ** 9)  # nothing exported yet
    for name in RUNS:
        path = f"{ENTITY}/{PROJECT}/{name}"
        run_a, run_b = make_wandb_api(exports.url, KEY).run(path), make_wandb_api(paged.url, KEY).run(path)
        exports.reset_log()
        paged.reset_log()
        full_a, full_b = list(run_a.scan_history()), list(run_b.scan_history())
        assert len(full_a) > 0 and _norm(full_a) == _norm(full_b), name
        ops_a, ops_b = _ops(exports), _ops(paged)
        assert "GET history 200" in ops_a and "GET history 200" not in ops_b
        assert "HistoryPage" in ops_b
        if name == "r04":  # exported part from the file, the live tail from the first live step
            assert ops_a.count("HistoryPage") >= 1
            assert [r["_step"] for r in full_a] == list(range(LIVE_TO))
        else:
            assert "HistoryPage" not in ops_a, (name, ops_a)
        # with keys and no cache the client reads the file remotely, with Range requests
        exports.reset_log()
        keyed_a = list(run_a.scan_history(keys=["loss"], use_cache=False))
        keyed_b = list(run_b.scan_history(keys=["loss"], use_cache=False))
        assert _norm(keyed_a) == _norm(keyed_b) and keyed_a, name
        assert "GET history 206" in _ops(exports)
        assert _norm(run_a.history(keys=["loss"], pandas=False)) == _norm(run_b.history(keys=["loss"], pandas=False))


def test_download_history_exports_gives_the_run_history_files(
        store_with_live_tail: Path, start_mirror_server: Any, make_wandb_api: Any, tmp_path: Path) -> None:
    server = start_mirror_server(store_with_live_tail, api_key=KEY)
    api = make_wandb_api(server.url, KEY)
    with Store(store_with_live_tail, create=False, readonly=True) as s:
        ppk = s.catalog.project_pk(ENTITY, PROJECT)
        want = {n: [json.loads(t) for _, t in s.history.texts(s.catalog.run_pk(ppk, n))] for n in ("r01", "r06")}
    for name, rows in want.items():
        result = api.run(f"{ENTITY}/{PROJECT}/{name}").download_history_exports(tmp_path / name)
        assert not result.contains_live_data and len(result.paths) == 1
        assert result.paths[0].name == f"{ENTITY}_{PROJECT}_{name}_0.runhistory.parquet"
        got = pq.read_table(result.paths[0]).to_pylist()
        assert _norm(got) == _norm(rows)
    live = api.run(f"{ENTITY}/{PROJECT}/r04").download_history_exports(tmp_path / "r04", require_complete_history=False)
    assert live.contains_live_data and [r["_step"] for r in pq.read_table(live.paths[0]).to_pylist()] == list(range(LIVE_FROM))


def test_export_urls_need_no_key_and_answer_ranges(store_with_live_tail: Path, start_mirror_server: Any) -> None:
    server = start_mirror_server(store_with_live_tail, api_key=KEY)
    q = """query Q($e: String!, $p: String!, $r: String!) { project(name: $p, entityName: $e) {
             run(name: $r) { parquetHistory(liveKeys: ["_step", "loss"]) { parquetUrls liveData } } } }"""
    answer = requests.post(f"{server.url}/graphql", auth=("api", KEY), timeout=30,
                           json={"query": q, "variables": {"e": ENTITY, "p": PROJECT, "r": "r04"}}).json()
    ph = answer["data"]["project"]["run"]["parquetHistory"]
    assert [r["_step"] for r in ph["liveData"]] == list(range(LIVE_FROM, LIVE_TO))
    assert ph["liveData"][0] == {"_step": LIVE_FROM, "loss": 1 / (LIVE_FROM + 1)}
    (url,) = ph["parquetUrls"]
    whole = requests.get(url, timeout=30)  # a plain GET, no key: presigned-style
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    assert hashlib.md5(whole.content).hexdigest() == url.split("/")[-2]  # the segment object itself
    size = len(whole.content)
    for rng, want in (("bytes=0-3", whole.content[:4]), ("bytes=-4", whole.content[-4:]),
                      (f"bytes={size - 10}-", whole.content[-10:]), (f"bytes=5-{size + 100}", whole.content[5:])):
        r = requests.get(url, headers={"Range": rng}, timeout=30)
        assert r.status_code == 206 and r.content == want, rng
        assert r.headers["Content-Range"].endswith(f"/{size}")
    assert whole.content[:4] == b"PAR1"
    assert requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=30).status_code == 416
    assert requests.get(url.replace("sig=", "sig=0"), timeout=30).status_code == 403
    assert requests.head(url, timeout=30).headers["Content-Length"] == str(size)
