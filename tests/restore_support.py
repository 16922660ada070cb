"""What the official client sees of a project, normalized for comparing two servers (restore tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from client_view import clean, history_rows

# What W&B does not let a client set, per docs/restore.md: not compared.
UNSETTABLE_RUN_STATES = {"crashed": "failed", "killed": "failed"}


def console(run: Any) -> list[tuple[Any, ...]]:
    return [(ln.number, ln.level, ln.timestamp, ln.content) for ln in run.console_logs()]


def project_view(api: Any, path: str, with_console: bool = True) -> dict[str, Any]:
    """`with_console=False` for a store made by sync, which does not mirror console lines yet."""
    entity, project = path.split("/")
    runs: dict[str, Any] = {}
    sweep_configs: dict[str, Any] = {}
    for sw in api.project(project, entity=entity).sweeps():
        sweep_configs[sw.name] = clean(dict(sw.config))
    for run in api.runs(path, per_page=200):
        files = {f.name: (f.md5, f.size) for f in run.files()}
        runs[run.id] = {
            "name": run.name,
            "state": UNSETTABLE_RUN_STATES.get(run.state, run.state),
            "config": clean(dict(run.config)),
            "summary": clean({k: v for k, v in run.summary._json_dict.items()}),
            "tags": sorted(run.tags),
            "notes": run.notes,
            "group": run.group,
            "job_type": run.job_type,
            "history": history_rows(run.scan_history(page_size=1000)),
            "events": clean(run.history(stream="system", pandas=False, samples=100_000)),
            "files": files,
            "logged": sorted(a.name for a in run.logged_artifacts()),
            "used": sorted(a.name for a in run.used_artifacts()),
            "sweep": sweep_configs.get(run.sweep.name) if run.sweep else None,
            "console": console(run) if with_console else None,
        }
    artifacts: dict[str, Any] = {}
    for t in api.artifact_types(path):
        for coll in t.collections():
            for a in coll.artifacts():
                manifest = a.manifest.to_manifest_json()
                artifacts[f"{coll.name}:{a.version}"] = {
                    "type": a.type,
                    "digest": a.digest,
                    "aliases": sorted(x for x in a.aliases),
                    "metadata": clean(a.metadata),
                    "description": a.description,
                    "entries": {p: (e["digest"], e.get("size")) for p, e in manifest["contents"].items()},
                    "logged_by": a.logged_by().id if a.logged_by() else None,
                    "used_by": sorted(r.id for r in a.used_by()),
                }
    sweeps = sorted(
        (str(cfg), sorted(rid for rid, r in runs.items() if r["sweep"] == cfg)) for cfg in sweep_configs.values()
    )
    return {"runs": runs, "artifacts": artifacts, "sweeps": sweeps}


def diff(a: dict[str, Any], b: dict[str, Any], where: str = "") -> list[str]:
    """Readable differences (first few) between two project views."""
    out: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'restored' if k in b else 'original'}")
            else:
                out += diff(a[k], b[k], f"{where}/{k}")
    elif a != b:
        out.append(f"{where}: {str(a)[:200]} != {str(b)[:200]}")
    return out[:20]


def sync_mirror(upstream_url: str, path: Path, key: str) -> Path:
    """One sync pass of `upstream_url` into a new mirror at `path` (the store restore reads)."""
    from wandb_mirror.config import minimal_config
    from wandb_mirror.store import Store
    from wandb_mirror.sync import SyncEngine, make_client

    os.environ["WANDB_API_KEY"] = key
    try:
        cfg = minimal_config(upstream_url, path)
        store, client = Store(path), make_client(cfg)
        try:
            with store.lock("test"):
                assert SyncEngine(cfg, store, client).run_pass().status == "ok"
        finally:
            client.close()
            store.close()
    finally:
        os.environ.pop("WANDB_API_KEY", None)
    return path
