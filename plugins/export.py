"""export: keep the runs, their full history and system metrics on disk as CSV, Parquet or JSONL.

Configuration (`[plugins.export]`):

    enabled = true
    out = "/var/lib/wandb-mirror/export"   # required
    formats = ["csv", "parquet"]            # any of csv, parquet, jsonl; parquet needs pyarrow
    history = true                          # also the history and system-metrics datasets

It also adds the command `wandb-mirror export --store DIR --format FMT --out DIR`, the same
writer run once over a store (or one `--project`).

Layout: per format, three hive-partitioned datasets (the partition keys come back as columns
when a reader opens the directory):

    OUT/FMT/runs/entity=E/project=P/runs.FMT                 one row per run of the project
    OUT/FMT/history/entity=E/project=P/run=R/history.FMT     every mirrored history row, by _step
    OUT/FMT/system/entity=E/project=P/run=R/system.FMT       every system-metrics sample

Every row carries `run_path` ("ENTITY/PROJECT/RUN_ID", the run's key); the files do not repeat
`entity`/`project`/`run` as columns, which would clash with the partition keys. Writing one
project never touches another project's files. Columns use the SDK's names:

- runs: run_path, id, name (display name), state, created_at, heartbeat_at, updated_at,
  deleted_at, sweep, group, job_type, user, host, tags, notes, last_step, then `config.K` and
  `summary.K` columns. Nested config and summary objects are flattened with dots
  (`config.optimizer.name`); W&B media objects (with a `_type`) and lists stay JSON text.
- history and system: run_path, _step (history), then one column per key, nested objects
  flattened with dots the same way.

Types: timestamps are UTC timestamps (parquet `timestamp[us, UTC]`; ISO 8601 ending in `Z` in
csv and jsonl); `tags` is `list<string>` (parquet), a JSON list in csv and jsonl; numeric history
and system columns are float64 (`_step` int64); other columns the narrowest type of their values.
CSV writes NaN and infinities as `nan`/`inf` (pandas and DuckDB read them as such); JSONL is
strict JSON, so NaN and infinities are `null`. Parquet keeps them as IEEE floats.

Read with DuckDB: `read_parquet('OUT/parquet/history/**/*.parquet', hive_partitioning=true,
union_by_name=true)` (runs differ in keys); with pandas, one run or project at a time
(`pd.read_parquet('OUT/parquet/history/entity=E/project=P/run=R')`) or through DuckDB's `.df()`.

Files are written atomically with the umask's modes. Event hooks only mark runs as changed
(durably, in the plugin's state); `cycle_finished` writes the marked runs and their projects'
runs tables once per cycle. The writer never talks to W&B, so `dry_run` does not apply to it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from wandb_mirror.hooks import hive_part, hookimpl
from wandb_mirror.hooks import parse_time as timestamp
from wandb_mirror.hooks.tables import FORMATS, flatten_columns, have_parquet, write_table

PLUGIN_NAME = "export"
WRITES = "files"  # never upstream (see hooks.status.effect)
log = logging.getLogger("wandb_mirror.plugins.export")

RUN_COLUMNS = [
    "run_path", "id", "name", "state", "created_at", "heartbeat_at", "updated_at", "deleted_at",
    "sweep", "group", "job_type", "user", "host", "tags", "notes", "last_step",
]
RUN_TYPES = {"created_at": "timestamp", "heartbeat_at": "timestamp", "updated_at": "timestamp",
             "deleted_at": "timestamp", "tags": "list<string>", "last_step": "int64"}


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


# -- rows ------------------------------------------------------------------------------------
def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """`value` into `out` under dotted keys; W&B media objects (`_type`) stay whole."""
    if isinstance(value, dict) and value and "_type" not in value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def run_path(run) -> str:
    return f"{run.entity}/{run.project}/{run.run_id}"


def run_row(run) -> dict[str, Any]:
    """One row of the runs table for a `hooks.types.Run`."""
    row: dict[str, Any] = {
        "run_path": run_path(run), "id": run.run_id, "name": run.display_name, "state": run.state,
        "created_at": timestamp(run.created_at), "heartbeat_at": timestamp(run.heartbeat_at),
        "updated_at": timestamp(run.updated_at), "deleted_at": timestamp(run.tombstoned_at),
        "sweep": run.sweep_name, "group": run.group_name, "job_type": run.job_type, "user": run.username,
        "host": run.host, "tags": run.tag_list(), "notes": run.notes, "last_step": run.last_step,
    }
    for k, v in sorted(run.config_values().items()):
        if k != "_wandb":
            flatten(f"config.{k}", v, row)
    for k, v in sorted(run.summary_values().items()):
        if k != "_wandb":
            flatten(f"summary.{k}", v, row)
    return row


def _series_types(rows: list[dict[str, Any]], cols: list[str]) -> dict[str, str]:
    """float64 for every numeric column (a metric logged as 1 then 0.5 stays one type across runs)."""
    types = {}
    for c in cols:
        vals = [r[c] for r in rows if r.get(c) is not None]
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            types[c] = "float64"
    if "_step" in cols:
        types["_step"] = "int64"
    return types


def series_rows(run, samples) -> list[dict[str, Any]]:
    key = run_path(run)
    rows = []
    for sample in samples:
        row: dict[str, Any] = {"run_path": key}
        flatten("", sample, row)
        rows.append(row)
    return rows


# -- paths -----------------------------------------------------------------------------------
# The catalog keeps names exactly as upstream has them (a run may be called `..` or hold a
# backslash); on disk each becomes one `key=value` directory, URI-escaped as hive readers expect,
# so a name can never leave the export directory or hide a file (wandb_mirror.fsnames).
def _part(key: str, name: str) -> str:
    return hive_part(key, name)


def mapped_names(runs) -> list[tuple[str, str]]:
    """(name, directory) for every entity, project and run name of `runs` that is written escaped."""
    seen: dict[str, str] = {}
    for r in runs:
        for key, name in (("entity", r.entity), ("project", r.project), ("run", r.run_id)):
            part = _part(key, name)
            if part != f"{key}={name}":
                seen.setdefault(name, part)
    return sorted(seen.items())


def project_dir(out: Path, fmt: str, dataset: str, entity: str, project: str) -> Path:
    return out / fmt / dataset / _part("entity", entity) / _part("project", project)


def history_path(out: Path, run, fmt: str, dataset: str = "history") -> Path:
    return project_dir(out, fmt, dataset, run.entity, run.project) / _part("run", run.run_id) / f"{dataset}.{fmt}"


# -- writers ---------------------------------------------------------------------------------
def write_runs_table(store, out: Path, entity: str, project: str, formats: list[str]) -> list[Path]:
    rows = [run_row(r) for r in store.runs(entity, project, include_tombstoned=True)]
    cols = flatten_columns(rows, RUN_COLUMNS) if rows else list(RUN_COLUMNS)
    return [write_table(project_dir(out, fmt, "runs", entity, project) / f"runs.{fmt}", rows, fmt, cols, RUN_TYPES)
            for fmt in formats]


def write_history(store, run, out: Path, formats: list[str]) -> list[Path]:
    """The run's history and system-metrics files (an empty series writes no file)."""
    written: list[Path] = []
    for dataset, samples, first in (("history", store.history(run), ["run_path", "_step"]),
                                    ("system", store.system_metrics(run), ["run_path"])):
        rows = series_rows(run, samples)
        if not rows:
            continue
        cols = flatten_columns(rows, first)
        types = _series_types(rows, cols)
        written += [write_table(history_path(out, run, fmt, dataset), rows, fmt, cols, types) for fmt in formats]
    return written


def export(store, out: Path, formats: list[str], runs, *, history: bool = True) -> list[Path]:
    """Write the runs tables of the given runs' projects, and their series; returns the files."""
    written: list[Path] = []
    for entity, project in sorted({(r.entity, r.project) for r in runs}):
        written += write_runs_table(store, out, entity, project, formats)
    if history:
        for r in runs:
            written += write_history(store, r, out, formats)
    return written


# -- event hooks: mark, then write once per cycle ----------------------------------------------
def _mark(store, run) -> None:
    store.state.set(f"dirty:{run.entity}/{run.project}/{run.run_id}", True)


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
    runs = [r for key in dirty if (r := store.run(*key[len("dirty:"):].split("/", 2))) is not None]
    # a project whose runs table is missing (a new `out`, a deleted file) is written whole
    marked = {(r.entity, r.project) for r in runs}
    seen = {(r.entity, r.project, r.run_id) for r in runs}
    missing: dict[tuple[str, str], bool] = {}  # checked once per project
    for r in store.runs(include_tombstoned=True):
        key = (r.entity, r.project)
        if key not in missing:
            missing[key] = not all((project_dir(out, f, "runs", *key) / f"runs.{f}").exists() for f in formats)
        if missing[key] and (r.entity, r.project, r.run_id) not in seen:
            runs.append(r)
            marked.add(key)
    if not runs and not dirty:
        return
    files = export(store, out, formats, runs, history=bool(config.get("history", True)))
    for name, part in mapped_names(runs):
        log.info("export: mapped %r -> %r", name, part)
    for key in dirty:
        store.state.delete(key)
    log.info("export: wrote %d files (%d runs, %d projects) to %s", len(files), len(runs), len(marked), out)


# -- the `export` command --------------------------------------------------------------------
@hookimpl
def register_commands(cli):
    p = cli.add_parser("export", help="write runs, history and system metrics as csv, parquet or jsonl",
                       description=__doc__.split("\n\n", 1)[0] + "\n\n" + _LAYOUT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    from wandb_mirror.commands.store_args import add_store_arguments

    add_store_arguments(p)  # --store DIR or --config FILE
    p.add_argument("--format", required=True, choices=FORMATS, action="append",
                   help="output format (repeat for several)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--no-history", action="store_true", help="only the runs tables")
    p.add_argument("--project", metavar="ENTITY/PROJECT", help="only this project (others' files are left alone)")
    p.set_defaults(_run=_export_command)


_LAYOUT_HELP = """Writes OUT/FMT/runs/entity=E/project=P/runs.FMT, OUT/FMT/history/entity=E/project=P/run=R/
history.FMT and OUT/FMT/system/.../system.FMT (hive-partitioned; every row has run_path). Timestamps are UTC;
JSONL writes NaN as null. Reading only: a daemon may be writing the store meanwhile.
The layout and types are described in the export plugin's documentation (docs/plugins.md)."""


def _export_command(args) -> int:
    from wandb_mirror.commands.store_args import open_store_from_args, store_label
    from wandb_mirror.errors import UsageError
    from wandb_mirror.hooks.store_view import StoreView
    from wandb_mirror.paths import writable_dir

    formats = list(dict.fromkeys(args.format))
    if "parquet" in formats and not have_parquet():
        raise UsageError("--format parquet needs pyarrow: pip install 'wandb-mirror[parquet]'")
    entity = project = None
    if args.project:
        if args.project.count("/") != 1 or not all(args.project.split("/")):
            raise UsageError(f"--project: expected ENTITY/PROJECT, got {args.project!r}")
        entity, project = args.project.split("/")
    with open_store_from_args(args, readonly=True) as store:
        out = writable_dir(args.out, "--out")  # one line and exit 2 when it cannot be written
        view = StoreView(store, "export")
        runs = view.runs(entity, project, include_tombstoned=True)
        if args.project and not runs:
            raise UsageError(f"no runs of {args.project} in {store_label(args)}")
        written = export(view, out, formats, runs, history=not args.no_history)
    for name, part in mapped_names(runs):
        print(f"mapped {name!r} -> {part!r}")
    n = len(runs)
    print(f"wrote {len(written)} file{'s' if len(written) != 1 else ''} ({n} run{'s' if n != 1 else ''}) to {out}")
    return 0
