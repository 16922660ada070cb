"""Requests an ordinary (non-reconcile) pass costs to find each kind of edit to a finished run.

    .venv/bin/python bench/marker_cost.py --runs 10000

Seeds a project of RUNS finished runs (one small file each), serves it writable on loopback,
mirrors it, then for each edit kind a user makes through the official client (summary update,
run.update() of tags/notes/config, file upload, file deletion, file re-upload, run deletion)
makes the edit, runs one pass and prints its requests by operation and whether the mirror has it.
Not part of `make test`; docs/benchmarks.md quotes its output.
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

from wandb_mirror.config import minimal_config  # noqa: E402
from wandb_mirror.fixtures import seed  # noqa: E402
from wandb_mirror.server import start_server  # noqa: E402
from wandb_mirror.store import Store  # noqa: E402
from wandb_mirror.sync import SyncEngine, make_client  # noqa: E402

KEY = "k" * 40


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
    import wandb

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        runs = [{"id": f"r{i:05d}", "state": "finished", "config": {"i": i},
                 "files": [{"name": "out.log", "text": f"run {i}\n"}]} for i in range(args.runs)]
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
            api = wandb.Api(api_key=KEY, overrides={"base_url": server.url})
            (t / "f").mkdir()
            (t / "f" / "new.txt").write_text("new\n")
            (t / "f" / "out.log").write_text("rewritten\n")

            def summary(run: Any) -> None:
                run.summary["user_eval"] = 1
                run.summary.update()

            def update(run: Any) -> None:
                run.tags = ["edited"]
                run.notes = "edited"
                run.config["edited"] = True
                run.update()

            edits = [("summary update", summary), ("run.update() tags/notes/config", update),
                     ("file upload", lambda run: run.upload_file(str(t / "f" / "new.txt"), root=str(t / "f"))),
                     ("file deletion", lambda run: run.file("out.log").delete()),
                     ("file re-upload", lambda run: run.upload_file(str(t / "f" / "out.log"), root=str(t / "f"))),
                     ("run deletion", lambda run: run.delete())]
            print("| edit | requests of the next pass | by operation | mirrored |")
            print("|---|---|---|---|")
            for i, (what, edit) in enumerate(edits):
                edit(api.run(f"acme/p/r{i:05d}"))
                r, ops = one_pass(cfg)
                with Store(cfg.store_path) as mi:
                    ppk = mi.catalog.project_pk("acme", "p")
                    row = mi.catalog.query_one("SELECT updated_at, tombstoned_at FROM runs WHERE project_pk = ? "
                                               "AND run_id = ?", [ppk, f"r{i:05d}"])
                seen = r.stats.get("runs_updated", 0) == 1 or (what == "run deletion" and row and row["tombstoned_at"])
                print(f"| {what} | {r.requests} | {dict(sorted(ops.items()))} | {'yes' if seen else 'NO'} |",
                      flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
