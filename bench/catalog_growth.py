"""Catalog growth per run and per history row, measured at two scales (docs/scale-out.md, sizing).

    .venv/bin/python bench/catalog_growth.py [--runs 1000] [--steps 100] [--out DIR]

Seeds the benchmark's run shape (bench/workload.py: config, summary, tags, 20 metrics per history
row; no files) at `runs` and at 10 x `runs`, compacts history into segments as a pass does, and
prints the catalog's bytes (WAL checkpointed) and the segments' bytes per run and per history row,
with the extrapolation to a million runs and a billion rows. No network, no server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import workload  # noqa: E402


def measure(root: Path, runs: int, steps: int) -> dict[str, Any]:
    from wandb_mirror.fixtures import seed
    from wandb_mirror.store import Store

    doc = workload(1, runs=runs, steps=steps, files_per_run=0, sweep_runs=0, artifact_versions=0, artifact_files=0)
    doc["projects"][0].pop("artifacts")
    doc["projects"][0].pop("sweeps")
    for r in doc["projects"][0]["runs"]:
        r.pop("events", None)
    path = root / f"runs{runs}"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.monotonic()
    with Store(path) as store:
        seed(store, doc)
        store.history.compact_due()
        rows = store.history.count()
        seg = store.catalog.scalar("SELECT COALESCE(SUM(size), 0) FROM history_segments") or 0
    conn = sqlite3.connect(path / "catalog.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    catalog = sum(p.stat().st_size for p in path.glob("catalog.db*") if p.is_file())
    return {"runs": runs, "history_rows": rows, "catalog_bytes": catalog, "segment_bytes": seg,
            "seconds": round(time.monotonic() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="catalog-growth-"))
    small, large = measure(root, args.runs, args.steps), measure(root, args.runs * 10, args.steps)
    # the difference between the scales is what each further run (with its history) costs
    d_runs = large["runs"] - small["runs"]
    d_rows = large["history_rows"] - small["history_rows"]
    catalog_per_run = (large["catalog_bytes"] - small["catalog_bytes"]) / d_runs
    segments_per_row = (large["segment_bytes"] - small["segment_bytes"]) / d_rows
    out = {"scale_1": small, "scale_10": large,
           "catalog_bytes_per_run": round(catalog_per_run),
           "segment_bytes_per_history_row": round(segments_per_row, 1),
           "catalog_gb_per_million_runs": round(catalog_per_run * 1e6 / 1e9, 2),
           "segments_gb_per_billion_rows": round(segments_per_row * 1e9 / 1e9, 1)}
    print(json.dumps(out, indent=1))
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
