"""export: keep a runs table (CSV, Parquet, JSONL) and each changed run's full history on disk.

Configuration (`[plugins.export]`):

    enabled = true
    out = "/var/lib/wandb-mirror/export"   # required
    formats = ["csv", "parquet"]            # any of csv, parquet, jsonl; parquet needs pyarrow
    history = true                          # also write history/<entity>/<project>/<run>.<fmt>

Layout: `OUT/runs.<fmt>` (every run of the store, one row each: identity, state, times, tags,
`config.*` and `summary.*` columns) and `OUT/history/ENTITY/PROJECT/RUN.<fmt>` (every mirrored
history row, `_step` first). Every file is written atomically. Event hooks only mark runs as
changed (durably, in the plugin's state); `cycle_finished` writes the marked runs' history and
the runs table, so a run logging thousands of steps is written once per cycle, not per event.
The writer never talks to W&B, so `dry_run` does not apply to it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from wandb_mirror.hooks import hookimpl
from wandb_mirror.hooks.tables import FORMATS, flatten_columns, have_parquet, write_table

PLUGIN_NAME = "export"
log = logging.getLogger("wandb_mirror.plugins.export")

RUN_COLUMNS = [
    "entity", "project", "run_id", "name", "state", "created_at", "heartbeat_at", "updated_at",
    "sweep", "group", "job_type", "user", "host", "tags", "notes", "last_step",
]


# -- configuration ---------------------------------------------------------------------------
@hookimpl
def check_config(config: dict[str, Any]) -> list[str]:
    problems = []
    if config.get("enabled") and not config.get("out"):
        problems.append("out: required (the directory to write into)")
    if "out" in config and not isinstance(config["out"], str):
        problems.append(f"out: expected a path string, got {config['out']!r}")
    fmts = config.get("formats", ["csv", "parquet"])
    if not isinstance(fmts, list) or not all(isinstance(f, str) for f in fmts):
        problems.append(f"formats: expected a list like [\"csv\", \"parquet\"], got {fmts!r}")
    else:
        for f in fmts:
            if f not in FORMATS:
                problems.append(f"formats: unknown format {f!r} (expected {', '.join(FORMATS)})")
    if "history" in config and not isinstance(config["history"], bool):
        problems.append(f"history: expected true/false, got {config['history']!r}")
    return problems


def _formats(config: dict[str, Any]) -> list[str]:
    fmts = list(config.get("formats", ["csv", "parquet"]))
    if "parquet" in fmts and not have_parquet():
        log.warning("export: pyarrow is not installed; skipping parquet (pip install 'wandb-mirror[parquet]')")
        fmts.remove("parquet")
    return fmts


# -- the tables ------------------------------------------------------------------------------
def run_row(run) -> dict[str, Any]:
    """One row of the runs table for a `hooks.types.Run`."""
    row: dict[str, Any] = {
        "entity": run.entity, "project": run.project, "run_id": run.name, "name": run.display_name,
        "state": run.state, "created_at": run.created_at, "heartbeat_at": run.heartbeat_at,
        "updated_at": run.updated_at, "sweep": run.sweep_name, "group": run.group_name,
        "job_type": run.job_type, "user": run.username, "host": run.host, "tags": run.tag_list(),
        "notes": run.notes, "last_step": run.last_step,
    }
    for k, v in sorted(run.config_values().items()):
        row[f"config.{k}"] = v
    for k, v in sorted(run.summary_values().items()):
        if k == "_wandb":
            continue
        row[f"summary.{k}"] = v
    return row


def write_runs_table(store, out: Path, formats: list[str]) -> list[Path]:
    rows = [run_row(r) for r in store.runs(include_tombstoned=True)]
    cols = flatten_columns(rows, RUN_COLUMNS) if rows else list(RUN_COLUMNS)
    return [write_table(out / f"runs.{fmt}", rows, fmt, cols) for fmt in formats]


MAX_PART_BYTES = 200  # a file name is at most 255 bytes; leave room for ".csv" and the atomic writer's temp suffix


def _part(name: str) -> str:
    """A path component from an upstream name: "/" and a leading "." are quoted, so a name can
    never leave the export directory or hide a file; a name too long for the filesystem (run ids
    may have 256 bytes) is shortened and made unique with a hash of the whole name."""
    import hashlib
    from urllib.parse import quote

    if not name:
        return "_"
    part = name
    if "/" in name or "\x00" in name or name.startswith("."):
        q = quote(name, safe="")
        part = "%2E" + q[1:] if q.startswith(".") else q
    raw = part.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_PART_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        part = raw[:MAX_PART_BYTES - 17].decode("utf-8", "ignore") + "~" + digest
    return part


def history_path(out: Path, run, fmt: str) -> Path:
    return out / "history" / _part(run.entity) / _part(run.project) / f"{_part(run.name)}.{fmt}"


def write_history(store, run, out: Path, formats: list[str]) -> list[Path]:
    rows = list(store.history(run))
    cols = flatten_columns(rows, ["_step"]) if rows else ["_step"]
    return [write_table(history_path(out, run, fmt), rows, fmt, cols) for fmt in formats]


# -- event hooks: mark, then write once per cycle ----------------------------------------------
def _mark(store, run) -> None:
    store.state.set(f"dirty:{run.entity}/{run.project}/{run.name}", True)


@hookimpl
def run_created(run, store):
    _mark(store, run)


@hookimpl
def run_state_changed(run, store):
    _mark(store, run)


@hookimpl
def run_updated(run, store):
    _mark(store, run)


@hookimpl
def history_appended(run, store):
    _mark(store, run)


@hookimpl
def tombstoned(kind, key, store):
    if kind == "run":
        store.state.set(f"dirty:{key}", True)


@hookimpl
def cycle_finished(config, store):
    dirty = store.state.items("dirty:")
    out = Path(str(config.get("out") or "")).expanduser()
    if not config.get("out"):
        raise ValueError("export: `out` is not configured")
    formats = _formats(config)
    # temp files of a write abandoned at shutdown (atomic_write cleans up after itself otherwise)
    for tmp in out.rglob(".*.tmp") if out.is_dir() else []:
        tmp.unlink(missing_ok=True)
    if not dirty and all((out / f"runs.{f}").exists() for f in formats):
        return
    if config.get("history", True):
        for key in dirty:
            entity, project, name = key[len("dirty:"):].split("/", 2)
            run = store.run(entity, project, name)
            if run is not None:
                write_history(store, run, out, formats)
    write_runs_table(store, out, formats)
    for key in dirty:
        store.state.delete(key)
    log.info("export: wrote the runs table and %d run histories to %s", len(dirty), out)
