"""One worker against three: the first mirror of a several-project upstream (docs/scale-out.md).

    .venv/bin/python bench/workers.py [--projects 6] [--runs 15] [--latency-ms 30] [--concurrency 2]

Seeds an upstream of `projects` projects (the benchmark's run shape, smaller: 300 steps, two files
per run), serves it with `wandb-mirror serve --latency-ms` in its own process, and mirrors it into
an empty SQLite + local store with 1 and then with 3 `wandb-mirror run` workers started together.
A mirror is complete when every project's unit has been finished once (the `claims` table); the
workers are then stopped with SIGTERM. Prints wall time, requests and MB served for each, and the
throughput ratio. The workers share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import API_KEY, MIRROR, Server  # noqa: E402
from workload import workload  # noqa: E402


def upstream_doc(projects: int, runs: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"viewer": {"username": "bench", "entity": "bench"}, "projects": []}
    for p in range(projects):
        w = workload(1, runs=runs, steps=300, files_per_run=2, sweep_runs=0, artifact_versions=0, artifact_files=0)
        project = w["projects"][0]
        project.pop("artifacts")
        project.pop("sweeps")
        project["name"] = f"p{p:02d}"
        for r in project["runs"]:
            r["id"] = f"p{p:02d}{r['id']}"
            # content of its own in each project: identical files would be fetched once (dedup) by
            # one worker and possibly twice by racing ones, which is not what is measured here
            r["files"] = [dict(f, size=min(f["size"], 500_000), seed=f["seed"] + 1_000_000 * p) for f in r["files"]]
        doc["projects"].append(project)
    return doc


def mirror(url: str, base: Path, workers: int, projects: int, concurrency: int) -> dict[str, Any]:
    store = base / f"mirror-{workers}"
    shutil.rmtree(store, ignore_errors=True)
    cfg = base / f"workers-{workers}.toml"
    cfg.write_text(f'[source]\nbase_url = "{url}"\nentities = ["bench"]\n\n[store]\npath = "{store.name}"\n\n'
                   f'[sync]\nconcurrency = {concurrency}\nprogress = "never"\norganization = false\n\n'
                   '[daemon]\npoll_interval = "10m"\n')
    env = dict(os.environ, WANDB_API_KEY=API_KEY)
    t0 = time.monotonic()
    procs = [subprocess.Popen([MIRROR, "run", "--config", str(cfg), "--no-watch"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    done_by: dict[str, str] = {}
    try:
        while time.monotonic() - t0 < 3600:
            time.sleep(0.2)
            if not (store / "catalog.db").exists():
                continue
            try:
                with sqlite3.connect(f"file:{store / 'catalog.db'}?mode=ro", uri=True, timeout=5) as db:
                    rows = db.execute("SELECT key, done_by FROM claims WHERE key LIKE 'project:%' "
                                      "AND done_at IS NOT NULL").fetchall()
            except sqlite3.Error:
                continue
            if len(rows) >= projects:
                done_by = dict(rows)
                break
        wall = time.monotonic() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
    return {"workers": workers, "wall_s": round(wall, 1), "exit_codes": codes,
            "projects_per_worker": {w: list(done_by.values()).count(w) for w in sorted(set(done_by.values()))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=6)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        from wandb_mirror.fixtures import seed
        from wandb_mirror.store import Store

        with Store(base / "up") as s:
            seed(s, upstream_doc(args.projects, args.runs))
        server = Server(base / "up", args.latency_ms, base / "serve.log")
        try:
            results = []
            for n in (1, 3):
                server.take()
                r = mirror(server.url, base, n, args.projects, args.concurrency)
                log = server.take()
                r["requests"] = len(log)
                r["mb_served"] = round(sum(int(x.get("bytes") or 0) for x in log) / 1e6, 1)
                r["requests_per_s"] = round(r["requests"] / r["wall_s"], 1)
                ops: dict[str, list[int]] = {}
                for x in log:
                    op = x.get("operation") or x.get("method", "") + " " + x.get("path", "").split("/")[1]
                    ops.setdefault(op, [0, 0])
                    ops[op][0] += 1
                    ops[op][1] += int(x.get("bytes") or 0)
                r["by_operation"] = ops
                results.append(r)
        finally:
            server.stop()
        print(f"workers: {args.projects} projects x {args.runs} runs, {args.latency_ms:g} ms added per response, "
              f"concurrency {args.concurrency} per worker, {os.cpu_count()} cores")
        print("| workers | wall s | requests | MB served | requests/s | projects per worker |")
        print("|---:|---:|---:|---:|---:|---|")
        for r in results:
            print(f"| {r['workers']} | {r['wall_s']} | {r['requests']:,} | {r['mb_served']} | {r['requests_per_s']} | "
                  f"{', '.join(str(n) for n in r['projects_per_worker'].values())} |")
        print(f"throughput ratio, 3 workers / 1: {results[0]['wall_s'] / results[1]['wall_s']:.2f}x")
        print(json.dumps([{k: v for k, v in r.items() if k != "by_operation"} for r in results]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
