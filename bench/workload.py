"""The benchmark workload, as a fixture document (docs/fixtures.md).

Default (scale 1): 200 runs x 5,000 history steps x 20 metrics with system events, 5 files per
run (1 KB to 5 MB, log-uniform, mixed text and binary), a sweep of 50 runs, and an artifact
collection of 20 versions, each sharing 80% of its files with the version before. `scale`
multiplies the run count (and the sweep). `cheap_workload()` is the 2,000-run project of the
no-change target; `change_upstream()` makes the changes the third mirror pass has to find.
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
    files = [dict(f) for f in shared]
    for v in range(artifact_versions):
        if v:  # each version is the previous one with 20% of its files rewritten: 80% shared
            files = [dict(f) for f in files]
            for j in range(n_changed):
                k = ((v - 1) * n_changed + j) % artifact_files
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


def cheap_workload(runs: int = 2000, steps: int = 10) -> dict[str, Any]:
    """The no-change target's project: many runs, a few history steps each, no files or artifacts."""
    rng = random.Random(7)
    return {
        "viewer": {"username": "bench", "entity": "bench"},
        "projects": [{
            "name": "many-runs",
            "runs": [{"id": f"c{i:05d}", "state": "finished", "config": {"lr": round(10 ** rng.uniform(-4, -1), 6)},
                      "history": {"steps": steps, "seed": i, "metrics": ["loss", "acc"]}}
                     for i in range(runs)],
        }],
    }


def change_upstream(catalog_path: str, *, share: float = 0.10, new_steps: int = 500,
                    project: str = "bench") -> dict[str, Any]:
    """Mutate a seeded upstream catalog the way W&B would see it change between two passes.

    `share` of the runs (every 1/share-th one) get `new_steps` more history steps (a resumed run:
    new rows, history counters, summary, heartbeat and updatedAt move), and one other run gets its
    summary edited after it finished (only updatedAt and the summary move). Writes go straight into
    the catalog a running `serve` reads; the server notices through SQLite's data_version.
    Returns {"changed_runs": [...], "edited_run": name, "rows": n}.
    """
    import json
    import sqlite3
    from datetime import datetime, timezone
    from pathlib import Path

    from wandb_mirror.store import Store

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    # the last row of a finished run lives in a Parquet segment: read it through the store's history
    up = Store(Path(catalog_path).parent, create=False, readonly=True)
    history = up.history
    conn = sqlite3.connect(catalog_path, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        ppk = conn.execute("SELECT pk FROM projects WHERE name = ?", [project]).fetchone()[0]
        runs = conn.execute("SELECT pk, run_id, summary, history_keys, last_step, history_line_count FROM runs "
                            "WHERE project_pk = ? AND tombstoned_at IS NULL ORDER BY pk", [ppk]).fetchall()
        every = max(1, round(1 / share))
        changed = [r for i, r in enumerate(runs) if i % every == 0]
        edited = next(r for i, r in enumerate(runs) if i % every == 1)
        total = 0
        with conn:
            for pk, _name, summary, hkeys, last_step, lines in changed:
                rng = random.Random(pk)
                start = (last_step if last_step is not None else -1) + 1
                last = [r for _, r in history.rows(pk, min_step=last_step)][-1]
                rows = []
                for step in range(start, start + new_steps):
                    row = {k: (round(v + rng.gauss(0.0, 0.01), 6) if isinstance(v, float) and k[0] != "_" else v)
                           for k, v in last.items()}
                    row["_step"] = step
                    row["_runtime"] = round(1.5 * step + 1.0, 3)
                    row["_timestamp"] = round(last["_timestamp"] + 1.5 * (step - last["_step"]), 3)
                    rows.append((pk, step, json.dumps(row, separators=(", ", ": "))))
                    last_row = row
                conn.executemany("INSERT INTO history (run_pk, step, row) VALUES (?, ?, ?)", rows)
                total += len(rows)
                hk = json.loads(hkeys or "{}")
                hk["lastStep"] = start + new_steps - 1
                for k, v in hk.get("keys", {}).items():
                    if k in last_row:
                        v["previousValue"] = last_row[k]
                        for tc in v.get("typeCounts", []):
                            tc["count"] = tc.get("count", 0) + new_steps
                s = json.loads(summary or "{}")
                s.update({k: v for k, v in last_row.items() if "." not in k})
                conn.execute("UPDATE runs SET history_keys = ?, last_step = ?, history_line_count = ?, summary = ?, "
                             "heartbeat_at = ?, updated_at = ? WHERE pk = ?",
                             [json.dumps(hk), start + new_steps - 1, (lines or 0) + new_steps, json.dumps(s), now, now,
                              pk])
            s = json.loads(edited[2] or "{}")
            s["best_val_loss"] = 0.01234
            conn.execute("UPDATE runs SET summary = ?, updated_at = ? WHERE pk = ?", [json.dumps(s), now, edited[0]])
    finally:
        conn.close()
        up.close()
    return {"changed_runs": [r[1] for r in changed], "edited_run": edited[1], "rows": total}
