"""The benchmark workload, as a fixture document (docs/fixtures.md).

Default (scale 1): 200 runs x 5,000 history steps x 20 metrics with system events, 5 files per
run (1 KB to 5 MB, log-uniform, mixed text and binary), a sweep of 50 runs, and an artifact
collection of 20 versions that share 80% of their files. `scale` multiplies the run count.
"""

from __future__ import annotations

import math
import random
from typing import Any

METRICS = [f"m{k:02d}" for k in range(18)] + ["loss", "val/loss"]


def _file_size(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(1_000), math.log(5_000_000))))


def workload(scale: int = 1, *, runs: int = 200, steps: int = 5000, files_per_run: int = 5,
             sweep_runs: int = 50, artifact_versions: int = 20, artifact_files: int = 20) -> dict[str, Any]:
    rng = random.Random(42)
    n_runs = runs * scale
    run_docs = []
    for i in range(n_runs):
        files = []
        for k in range(files_per_run):
            kind = "text" if k % 2 == 0 else "binary"
            files.append({"name": f"files/f{k}.{'log' if kind == 'text' else 'bin'}", "size": _file_size(rng),
                          "kind": kind, "seed": i * 100 + k})
        run_docs.append({
            "id": f"b{i:05d}",
            "display_name": f"bench-{i}",
            "state": "finished",
            "config": {"lr": round(10 ** rng.uniform(-4, -1), 6), "batch_size": rng.choice([32, 64, 128]),
                       "model": {"depth": rng.choice([18, 34, 50]), "width": 64}},
            "tags": ["bench"],
            "history": {"steps": steps, "seed": i,
                        "metrics": {m: {"start": 1.0, "end": rng.uniform(0.05, 0.5), "noise": 0.01} for m in METRICS}},
            "events": {"count": max(steps // 50, 5), "seed": i},
            "files": files,
            **({"sweep": "bench-sweep"} if i < sweep_runs * scale else {}),
        })
    shared = [{"path": f"data/part-{k:03d}.bin", "size": 50_000 + 1_000 * k, "seed": 10_000 + k}
              for k in range(artifact_files)]
    n_changed = max(1, artifact_files // 5)  # 20% of the files change from one version to the next
    versions = []
    for v in range(artifact_versions):
        files = [dict(f) for f in shared]
        for j in range(n_changed):
            k = (v * n_changed + j) % artifact_files
            files[k] = dict(files[k], seed=20_000 + v * artifact_files + k)
        versions.append({"files": files, "created_by": run_docs[v % n_runs]["id"]})
    return {
        "viewer": {"username": "bench", "entity": "bench"},
        "projects": [{
            "name": "bench",
            "sweeps": [{"name": "bench-sweep", "method": "random", "metric": {"name": "val/loss", "goal": "minimize"}}],
            "runs": run_docs,
            "artifacts": [{"name": "bench-data", "type": "dataset", "versions": versions}],
        }],
    }
