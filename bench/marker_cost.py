"""Requests an ordinary (non-reconcile) pass costs to find each kind of edit to a finished run.

    .venv/bin/python bench/marker_cost.py --runs 10000

Seeds a project of RUNS finished runs (one small file each; the run whose history is rewritten
also has 1,000 history rows), serves it writable on loopback, mirrors it, then for each edit kind a
user makes through the official client (tests/upstream_edits.py: summary update, run.update() of
tags/notes/config, file upload, file re-upload, file deletion, run deletion, history rewritten by
`wandb.init(resume_from=...)`) makes the edit on its own run, runs one ordinary pass and prints its
requests by operation and whether the mirror has it. Not part of `make test`; docs/benchmarks.md
quotes its output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # upstream_edits: the edits the round-trip tests make

import upstream_edits  # noqa: E402

from wandb_mirror.config import minimal_config  # noqa: E402
from wandb_mirror.fixtures import seed  # noqa: E402
from wandb_mirror.server import start_server  # noqa: E402
from wandb_mirror.store import Store  # noqa: E402
from wandb_mirror.sync import SyncEngine, make_client  # noqa: E402

KEY = upstream_edits.KEY
REWRITTEN = list(upstream_edits.EDITS).index("history rewrite (resume_from)")


def one_pass(cfg: Any) -> tuple[Any, Counter[str]]:
    store = Store(cfg.store_path)
    client = make_client(cfg)
    client.t.trace = []
    try:
        with store.lock("bench"):
            r = SyncEngine(cfg, store, client).run_pass()
    finally:
        client.close()
        store.close()
    return r, Counter(op for op, _ in client.t.trace)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10000)
    args = ap.parse_args()
    os.environ["WANDB_API_KEY"] = KEY
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for var, sub in (("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
            os.environ[var] = str(t / sub)  # the official client must not write into the checkout or ~
            (t / sub).mkdir()
        os.environ["WANDB_SILENT"] = "true"
        import wandb

        runs = [{"id": f"r{i:05d}", "state": "finished", "config": {"i": i},
                 "files": [{"name": "out.log", "text": f"run {i}\n"}]} for i in range(args.runs)]
        runs[REWRITTEN]["history"] = {"steps": 1000, "metrics": ["loss"], "seed": 1}
        doc = {"viewer": {"username": "ada", "entity": "acme", "name": "Ada"},
               "projects": [{"name": "p", "created_at": "2024-01-01T00:00:00", "runs": runs}]}
        t0 = time.monotonic()
        with Store(t / "up") as s:
            seed(s, doc)
        print(f"seeded {args.runs} runs in {time.monotonic() - t0:.0f}s", flush=True)
        server = start_server(t / "up", writable=True)
        try:
            cfg = minimal_config(server.url, t / "mirror", retry_wait_min=0.01, retry_wait_max=0.05)
            r, ops = one_pass(cfg)
            print(f"first pass: {r.status}, {r.requests} requests", flush=True)
            r, ops = one_pass(cfg)
            print(f"unchanged pass: {r.requests} requests {dict(ops)}", flush=True)
            print("| edit | requests of the next pass | by operation | mirrored |")
            print("|---|---|---|---|")
            for i, (what, (edit, _, _)) in enumerate(upstream_edits.EDITS.items()):
                api = wandb.Api(api_key=KEY, overrides={"base_url": server.url})  # the rewrite ends the last one's service
                run_id = f"r{i:05d}"
                (t / "edit" / str(i)).mkdir(parents=True)
                edit(api, api.run(f"acme/p/{run_id}"), t / "edit" / str(i))
                r, ops = one_pass(cfg)
                with Store(cfg.store_path) as mi:
                    ppk = mi.catalog.project_pk("acme", "p")
                    row = mi.catalog.query_one("SELECT last_step, tombstoned_at FROM runs WHERE project_pk = ? "
                                               "AND run_id = ?", [ppk, run_id])
                if what == "run deletion":
                    seen = bool(row and row["tombstoned_at"])
                elif what.startswith("history rewrite"):
                    up_last = wandb.Api(api_key=KEY, overrides={"base_url": server.url}).run(f"acme/p/{run_id}").lastHistoryStep
                    seen = r.stats.get("runs_updated", 0) == 1 and row is not None and row["last_step"] == up_last
                else:
                    seen = r.stats.get("runs_updated", 0) == 1
                print(f"| {what} | {r.requests} | {dict(sorted(ops.items()))} | {'yes' if seen else 'NO'} |",
                      flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
