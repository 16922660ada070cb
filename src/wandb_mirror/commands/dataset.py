"""Link every run's history into one hive-partitioned Parquet dataset (entity=/project=/run=).

The parts are hard links to the store's history segments (no copy); run it again to bring the
directory up to date. Read it with DuckDB:

    SELECT run, max(_step) FROM read_parquet('OUT/**/*.parquet', hive_partitioning = true,
                                             union_by_name = true) GROUP BY run;

or pandas (`pd.read_parquet("OUT/entity=E/project=P/run=R")`). docs/history.md has more.
Reading only: a daemon may be writing the same store meanwhile.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, metavar="DIR", help="store directory")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="dataset directory (new, empty, or made by an earlier run of this command)")
    parser.add_argument("--project", metavar="ENTITY/PROJECT", help="only this project")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from ..history_dataset import build
    from ..store import Store

    project = None
    if args.project:
        if args.project.count("/") != 1:
            raise UsageError(f"--project: expected ENTITY/PROJECT, got {args.project!r}")
        e, p = args.project.split("/")
        project = (e, p)
    with Store(args.store, create=False, readonly=True) as store:
        rep = build(store, Path(args.out), project=project)
    for name, part in rep.mapped:
        print(f"mapped {name!r} -> {part!r}")
    print(f"history dataset {args.out}: {rep.runs} runs, {rep.parts} parts ({rep.linked} newly linked, "
          f"{rep.removed} removed), {rep.tails} live tails")
    return 0
