"""The export loop the W&B docs show, run with the official client (wandb.Api) against a base URL.

For each run of the project: config and summary, `scan_history()`, every file downloaded, every
logged artifact downloaded. `--threads 1` is the loop as documented; `--threads N` maps the same
per-run function over a thread pool of N (what the maintainers suggest for bulk exports).

    python bench/official_export.py URL ENTITY/PROJECT OUT_DIR [--threads N]

Prints one JSON line: runs, history rows, files, artifacts, seconds. WANDB_* directories (cache,
config, data, artifacts) are put under OUT_DIR so every run starts cold, like a first export.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("path", help="ENTITY/PROJECT")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    os.environ["WANDB_SILENT"] = "true"
    for var in ("WANDB_CACHE_DIR", "WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        os.environ[var] = os.path.join(args.out, "_" + var.lower())
        os.makedirs(os.environ[var], exist_ok=True)
    import wandb  # after the environment is set: the client reads it at import and start-up

    t0 = time.monotonic()
    api = wandb.Api(api_key=os.environ.get("WANDB_API_KEY", "x" * 40), overrides={"base_url": args.url}, timeout=60)

    def export(run: Any) -> tuple[int, int, int]:
        d = os.path.join(args.out, "runs", run.id)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "run.json"), "w") as f:
            json.dump({"id": run.id, "name": run.name, "state": run.state, "config": run.config,
                       "summary": dict(run.summary)}, f, default=str)
        rows = 0
        with open(os.path.join(d, "history.jsonl"), "w") as f:
            for row in run.scan_history(page_size=1000):
                f.write(json.dumps(row, default=str) + "\n")
                rows += 1
        files = 0
        for file in run.files():
            file.download(root=os.path.join(d, "files"), replace=True)
            files += 1
        arts = 0
        for art in run.logged_artifacts():
            art.download(root=os.path.join(d, "artifacts", art.name.replace(":", "_")))
            arts += 1
        return rows, files, arts

    runs = api.runs(args.path, per_page=50)
    if args.threads <= 1:
        results = [export(r) for r in runs]
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            results = list(pool.map(export, runs))
    out = {"runs": len(results), "history_rows": sum(r[0] for r in results), "files": sum(r[1] for r in results),
           "artifacts": sum(r[2] for r in results), "seconds": round(time.monotonic() - t0, 3)}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
