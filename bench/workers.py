"""One worker against three: the first mirror of a several-project upstream (docs/scale-out.md).

    .venv/bin/python bench/workers.py [--projects 6] [--runs 15] [--latency-ms 30] [--concurrency 2]
                                      [--store both|sqlite|pg-s3]

Seeds an upstream of `projects` projects (the benchmark's run shape, smaller: 300 steps, two files
per run), serves it with `wandb-mirror serve --latency-ms` in its own process, and mirrors it into
an empty store with 1 and then with 3 `wandb-mirror run` workers started together: a SQLite +
local store, and a PostgreSQL catalog with objects on S3 (a throwaway cluster and moto's server on
loopback, as the tests start them; moto runs in this process and takes CPU from the workers).
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import API_KEY, MIRROR, Server  # noqa: E402
from workload import workload  # noqa: E402

KINDS = {"sqlite": "SQLite + local", "pg-s3": "PostgreSQL + S3"}


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


def mirror(url: str, base: Path, workers: int, projects: int, concurrency: int,
           apart: dict[str, str] | None = None) -> dict[str, Any]:
    """`workers` processes mirroring into an empty store: the single directory, or (`apart`) a
    PostgreSQL catalog with its objects on S3."""
    from wandb_mirror.store.location import StoreLocation, open_store

    store = base / f"mirror-{workers}"
    shutil.rmtree(store, ignore_errors=True)
    where: Path | StoreLocation = store
    table = f'path = "{store.name}"\n'
    if apart is not None:
        where = StoreLocation(catalog=apart["catalog"], objects=apart["objects"],
                              s3_endpoint_url=apart["s3_endpoint_url"])
        table = "".join(f'{k} = "{v}"\n' for k, v in apart.items())
    cfg = base / f"workers-{workers}.toml"
    cfg.write_text(f'[source]\nbase_url = "{url}"\nentities = ["bench"]\n\n[store]\n{table}\n'
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
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker exited before the mirror was complete ({cfg})")
            if apart is None and not (store / "catalog.db").exists():
                continue
            try:
                with open_store(where, create=False, readonly=True) as s:
                    rows = s.catalog.query("SELECT key, done_by FROM claims WHERE key LIKE 'project:%' "
                                           "AND done_at IS NOT NULL")
            except Exception:  # noqa: BLE001 - the catalog still being created by the first worker
                continue
            if len(rows) >= projects:
                done_by = {r["key"]: r["done_by"] for r in rows}
                break
        wall = time.monotonic() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
    return {"workers": workers, "wall_s": round(wall, 1), "exit_codes": codes,
            "projects_per_worker": {w: list(done_by.values()).count(w) for w in sorted(set(done_by.values()))}}


@contextmanager
def pg_s3() -> Iterator[Callable[[int], dict[str, str]]]:
    """A throwaway PostgreSQL cluster and moto's S3 server on loopback (the tests' own, from
    tests/scale_support.py); yields a maker of an empty catalog schema and bucket per mirror."""
    import logging

    import moto.server

    sys.path.insert(0, str(HERE.parent / "tests"))
    from scale_support import S3_ENV, S3Server, postgres_cluster

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    os.environ.update(S3_ENV, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    s3server = moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3server.start()
    try:
        host, port = s3server.get_host_and_port()
        s3 = S3Server(f"http://{host}:{port}")
        with postgres_cluster() as pg:
            def fresh(workers: int) -> dict[str, str]:
                schema = f"bench_w{workers}"
                pg.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
                return {"catalog": f"{pg.url}?options=-csearch_path%3D{schema}",
                        "objects": f"s3://{s3.new_bucket()}/mirror", "s3_endpoint_url": s3.url}
            yield fresh
    finally:
        s3server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=6)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--store", choices=["both", *KINDS], default="both",
                    help="SQLite + local objects, PostgreSQL + S3 (a throwaway cluster and moto), or both")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        from wandb_mirror.fixtures import seed
        from wandb_mirror.store import Store

        with Store(base / "up") as s:
            seed(s, upstream_doc(args.projects, args.runs))
        server = Server(base / "up", args.latency_ms, base / "serve.log")
        results = []
        try:
            with ExitStack() as stack:
                for kind in KINDS if args.store == "both" else (args.store,):
                    fresh = stack.enter_context(pg_s3()) if kind == "pg-s3" else None
                    for n in (1, 3):
                        server.take()
                        r = mirror(server.url, base, n, args.projects, args.concurrency,
                                   fresh(n) if fresh is not None else None)
                        r["store"] = kind
                        log = server.take()
                        r["requests"] = len(log)
                        r["mb_served"] = round(sum(int(x.get("bytes") or 0) for x in log) / 1e6, 1)
                        r["requests_per_s"] = round(r["requests"] / r["wall_s"], 1)
                        results.append(r)
        finally:
            server.stop()
        print(f"workers: {args.projects} projects x {args.runs} runs, {args.latency_ms:g} ms added per response, "
              f"concurrency {args.concurrency} per worker, {os.cpu_count()} cores")
        print("| store | workers | wall s | requests | MB served | requests/s | projects per worker |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for r in results:
            print(f"| {KINDS[r['store']]} | {r['workers']} | {r['wall_s']} | {r['requests']:,} | {r['mb_served']} | "
                  f"{r['requests_per_s']} | {', '.join(str(n) for n in r['projects_per_worker'].values())} |")
        for kind in KINDS:
            one, three = ([r for r in results if r["store"] == kind and r["workers"] == n] for n in (1, 3))
            if one and three:
                print(f"throughput ratio on {KINDS[kind]}, 3 workers / 1: {one[0]['wall_s'] / three[0]['wall_s']:.2f}x")
        print(json.dumps(results))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
