"""Sparse and huge steps cost requests in proportion to rows, not to the step span (issue 11, item 3).

A run logging 4 rows at steps 0, 1e9, 2e9 and 3e9 (the step counts tokens) and one near 2**53.

The official client's `scan_history()` walks the step span itself: `HistoryScan.__next__` /
`_load_next` (wandb/apis/public/history.py) move `page_offset` by `page_size` until it reaches
lastStep + 1, one request to wandb-core per page, whatever the rows. wandb-core answers a page
from the run's parquet exports when the page lies before the first live step and sends a
`HistoryPage` otherwise (core/internal/runhistoryreader/livedata.go). So against W&B, as against
`serve`: an exported run costs RunHistoryKeys + RunParquetHistory + one GET per file, for any
page size, and a live (unexported) run one HistoryPage per page of the span. These tests use a
page size of 1e9 (2**51 near 2**53): the default 1,000 walks 3,000,001 pages in the client
(docs/history.md gives the measured cost) and would not finish in a test.

`run.history()` is one RunFullHistory or RunSampledHistory request either way, and the mirror's
own first pass costs a constant number of history requests (sync/history.py's windows).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from test_sync_fidelity import _sync as sync_once

from wandb_mirror.config import minimal_config
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store

KEY = "k" * 40
TOKENS = [0, 10**9, 2 * 10**9, 3 * 10**9]
HUGE = [0, 2**52, 2**53 - 2, 2**53 - 1]
RUNS = {  # name: (steps, state, client page size)
    "tokens": (TOKENS, "finished", 10**9),        # exported (a segment): read from the file
    "tokens-live": (TOKENS, "running", 10**9),    # live (the tail): one HistoryPage per page
    "huge": (HUGE, "finished", 2**51),            # exported; pageSize 2**51 would overflow Int if live
}


def _rows(steps: list[int]) -> list[dict[str, Any]]:
    return [{"_step": s, "loss": 1.0 / (i + 1), "tokens": s} for i, s in enumerate(steps)]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(upstream server, mirror server, the mirror's first-pass request counts)."""
    from wandb_mirror.server import start_server

    base = tmp_path_factory.mktemp("sparse")
    doc = {"viewer": {"username": "ada", "entity": "acme", "name": "Ada"},
           "projects": [{"name": "p", "runs": [{"id": n, "state": st, "history": _rows(steps)}
                                               for n, (steps, st, _) in RUNS.items()]}]}
    with Store(base / "up") as s:
        seed(s, doc)
    up = start_server(base / "up")
    cfg = minimal_config(up.url, base / "mirror", retry_wait_min=0.01, retry_wait_max=0.05)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_API_KEY", KEY)
        result, _ = sync_once(cfg)
    assert result.status == "ok", result.errors
    first_pass = _ops(up)
    mirror = start_server(base / "mirror")
    yield up, mirror, first_pass
    up.stop()
    mirror.stop()


def _norm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exported rows carry None for a key a row lacks (as from W&B); wandb-core re-encodes 1.0 as 1,
    which compares equal."""
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


def _ops(server: Any) -> Counter[str]:
    return Counter(e["operation"] or f"{e['method']} {e['path'].split('/')[2]}" for e in server.request_log())


def test_mirror_first_pass_costs_constant_history_requests(stores: Any) -> None:
    _, _, ops = stores
    # per run one RunParquetHistory; the exported runs one GET of their file; the live run a few
    # HistoryPage windows (not 3e9 / 1000 of them)
    assert ops["RunParquetHistory"] == len(RUNS), ops
    assert ops["GET history"] == 2, ops
    assert 1 <= ops["HistoryPage"] <= 12, ops


@pytest.mark.parametrize("name", list(RUNS))
def test_official_client_reads_sparse_steps_alike_in_few_requests(stores: Any, make_wandb_api: Any,
                                                                  name: str) -> None:
    up, mirror, _ = stores
    steps, state, page = RUNS[name]
    pages = math.ceil((steps[-1] + 1) / page)
    want = _norm(_rows(steps))
    got = {}
    for server in (up, mirror):
        run = make_wandb_api(server.url, api_key=KEY).run(f"acme/p/{name}")
        assert run.lastHistoryStep == steps[-1]
        server.reset_log()
        scanned = list(run.scan_history(page_size=page, use_cache=False))
        ops = _ops(server)
        if state == "finished":  # exported: the pages are read from the downloaded file
            assert ops == {"RunHistoryKeys": 1, "RunParquetHistory": 1, "GET history": 1}, (server.url, ops)
        else:  # live: the client asks one HistoryPage per page of the span, as it would W&B
            assert ops == {"RunHistoryKeys": 1, "RunParquetHistory": 1, "HistoryPage": pages}, (server.url, ops)
        server.reset_log()
        sampled = run.history(pandas=False)
        keyed = run.history(keys=["loss"], pandas=False)
        assert _ops(server) == {"RunFullHistory": 1, "RunSampledHistory": 1}
        assert [r["_step"] for r in keyed] == steps
        got[server.url] = (_norm(scanned), _norm(sampled), keyed)
        assert _norm(scanned) == _norm(sampled) == want, server.url
    assert got[up.url] == got[mirror.url]
