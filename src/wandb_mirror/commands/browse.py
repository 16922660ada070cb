"""Browse a store's catalog in the web browser with datasette (read-only).

Starts `datasette` on STORE/catalog.db with a description of every table, view and the main
columns (docs/catalog.md says more). It opens the catalog read-only, so it can run beside a
daemon that is writing the store. datasette is an optional extra:
`pip install 'wandb-mirror[browse]'` (`make venv` installs it).

    wandb-mirror browse --store ~/wandb-mirror            # http://127.0.0.1:8001
    wandb-mirror browse --store ~/wandb-mirror --port 0   # any free port (printed)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TABLES: dict[str, str] = {
    "meta": "Store-wide key/value settings.",
    "entities": "W&B entities (users and teams) seen upstream.",
    "users": "W&B users: username (login), name (display name), teams (JSON list).",
    "projects": "One row per mirrored project; tombstoned_at is set when it vanished upstream.",
    "runs": "One row per run. run_id is the SDK's run.id, display_name the SDK's run.name; "
            "config is W&B's wrapped JSON, summary and tags JSON. See runs_flat for SDK names.",
    "history": "Every logged history row of every run (unsampled): run_pk, step and the row as JSON. "
               "See history_long for one row per key.",
    "history_segments": "Finished runs' history as Parquet objects (step ranges and keys); the history "
                        "table keeps the tail not yet compacted.",
    "events": "System metrics (W&B's events stream), one JSON row per sample.",
    "files": "Run files, newest version; md5 is the object key under objects/md5/.",
    "file_versions": "Every version of every run file ever mirrored.",
    "artifact_types": "Artifact types per project.",
    "artifact_collections": "Artifact collections (sequences and portfolios) per project.",
    "artifacts": "Artifact versions: aliases, metadata (JSON), manifest object, producing run.",
    "artifact_files": "Manifest entries of each artifact version; md5 is NULL for reference entries.",
    "artifact_usage": "Which runs used which artifact versions.",
    "sweeps": "Sweeps: method, metric, state, YAML config.",
    "reports": "Reports: spec (JSON).",
    "passes": "One row per sync pass: status, requests, stats and errors (JSON), the worker (host:pid) that ran it.",
    "claims": "Leases of several workers (docs/scale-out.md): who holds each project, the organization, "
              "compaction and plugin delivery, until when, and who finished it last.",
    "rate_pauses": "The rate pause every worker using an API key obeys after a 429 (a salted hash of the key).",
    "sync_state": "Per-project watermarks the sync resumes from.",
    "changes": "The change log plugins consume (run created, summary updated, new artifact, ...).",
    "quarantine": "Upstream items rejected by verification: never stored as good.",
    "plugin_cursors": "Each plugin's position in the change log and its failures.",
    "plugin_state": "Plugins' own key/value state (JSON values).",
    "journal": "Every upstream write a plugin made or would make (dry-run), before and after.",
    "organizations": "The W&B organization of each entity mirrored.",
    "team_members": "Members of each team entity.",
    "registries": "Registries (projects named wandb-registry-NAME in the organization's entity).",
    "artifact_links": "Artifact versions linked into registry (portfolio) collections.",
    "console_lines": "Runs' console output (output.log), one row per line.",
    "integrations": "Entity integrations (webhooks, Slack): names and URLs only, never secrets.",
    "automations": "Automations: scope, event and action (JSON).",
    "_migrations": "Catalog schema migrations applied.",
    "runs_flat": "View: one row per run with the SDK's names (id, name, user, group, sweep), "
                 "config unwrapped and summary without _wandb.",
    "history_long": "View: one row per run, step and history key (value, JSON type).",
    "best_runs": "View: the best_run plugin's choice per sweep.",
}

COLUMNS: dict[str, dict[str, str]] = {
    "runs": {"run_id": "the run id (the SDK's run.id)", "display_name": "the SDK's run.name",
             "username": "the user's login", "user_display_name": "the user's display name",
             "config": "W&B's wrapped form {key: {value, desc}}", "last_step": "last history step mirrored",
             "tombstoned_at": "set when the run was deleted upstream (the mirror keeps it)"},
    "history": {"row": "JSON; NaN is stored as \"NaN\", Infinity as 9e999 (docs/catalog.md)"},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="DIR", help="store directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8001, help="port (default 8001; 0 picks a free one)")


def metadata(store_path: Path) -> dict[str, Any]:
    tables = {name: {"description": text, **({"columns": COLUMNS[name]} if name in COLUMNS else {})}
              for name, text in TABLES.items()}
    return {
        "title": f"wandb-mirror: {store_path}",
        "description": "A verified local copy of Weights & Biases data. JSON columns are strict JSON "
                       "(NaN as \"NaN\", Infinity as 9e999).",
        "databases": {"catalog": {"tables": tables}},
    }


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from ..errors import UsageError

    store = Path(args.store).expanduser().absolute()
    db = store / "catalog.db"
    if not db.is_file():
        raise UsageError(f"{store} is not a store (no catalog.db)")
    if args.port < 0 or args.port > 65535:
        raise UsageError(f"--port: expected 0-65535, got {args.port}")
    if importlib.util.find_spec("datasette") is None:
        raise UsageError("browse needs datasette: pip install 'wandb-mirror[browse]'")
    with tempfile.TemporaryDirectory(prefix="wandb-mirror-browse-") as tmp:
        meta = Path(tmp) / "metadata.json"
        meta.write_text(json.dumps(metadata(store)))
        cmd = [sys.executable, "-m", "datasette", "serve", str(db), "--metadata", str(meta),
               "--host", args.host, "--port", str(args.port), "--setting", "sql_time_limit_ms", "5000"]
        env = dict(os.environ)
        proc = subprocess.Popen(cmd, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            return 0
