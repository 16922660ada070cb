"""Write the store's runs table and every run's full history to a directory.

OUT/runs.FORMAT holds one row per run (identity, state, times, tags, config.* and summary.*
columns); OUT/history/ENTITY/PROJECT/RUN.FORMAT holds every mirrored history row. Files are
written atomically. Reading only: a daemon may be writing the same store meanwhile.
This is the export plugin's writer, run once over the whole store.
"""

from __future__ import annotations

import argparse

from .store_args import add_store_arguments, open_store_from_args, store_label


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--format", required=True, choices=("csv", "parquet", "jsonl"), action="append",
                        help="output format (repeat for several)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--no-history", action="store_true", help="only the runs table")
    parser.add_argument("--project", metavar="ENTITY/PROJECT", help="only this project")


def run(args: argparse.Namespace) -> int:

    from ..errors import UsageError
    from ..hooks.manager import _import_builtin
    from ..hooks.store_view import StoreView
    from ..hooks.tables import have_parquet
    from ..paths import writable_dir

    formats = list(dict.fromkeys(args.format))
    if "parquet" in formats and not have_parquet():
        raise UsageError("--format parquet needs pyarrow: pip install 'wandb-mirror[parquet]'")
    entity = project = None
    if args.project:
        if args.project.count("/") != 1:
            raise UsageError(f"--project: expected ENTITY/PROJECT, got {args.project!r}")
        entity, project = args.project.split("/")
    exporter = _import_builtin("export")
    with open_store_from_args(args, readonly=True) as store:
        out = writable_dir(args.out, "--out")
        view = StoreView(store, "export")
        runs = view.runs(entity, project, include_tombstoned=True)
        if args.project and not runs:
            raise UsageError(f"no runs of {args.project} in {store_label(args)}")
        written = exporter.write_runs_table(_Filtered(view, entity, project), out, formats)
        if not args.no_history:
            for r in runs:
                written += exporter.write_history(view, r, out, formats)
    print(f"wrote {len(written)} files ({len(runs)} runs) to {out}")
    return 0


class _Filtered:
    """A StoreView whose runs() is limited to one project (for the runs table)."""

    def __init__(self, view, entity, project):
        self._view, self._entity, self._project = view, entity, project

    def runs(self, *a, **kw):
        kw.setdefault("include_tombstoned", True)
        return self._view.runs(self._entity, self._project, **{k: v for k, v in kw.items() if k != "entity"})
