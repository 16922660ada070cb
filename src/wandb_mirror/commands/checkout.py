"""Copy a run's or an artifact version's files out of the store into a folder, every byte verified.

PATH is ENTITY/PROJECT/RUN_ID (the run's files, plus history.parquet, events.parquet and run.json
with its metadata, config and summary) or ENTITY/PROJECT/NAME:VERSION, VERSION being vN or an alias
(the artifact's files laid out by their manifest paths). Items deleted upstream are included.
Files are hard links to the store's read-only objects when possible (--copy for copies). Names
that are not safe on a filesystem are mapped to safe ones and reported. DEST must be new or empty.

Examples:
  wandb-mirror checkout --store /var/lib/wandb-mirror acme/vision/3xk2a9 ./run-3xk2a9
  wandb-mirror checkout --store /var/lib/wandb-mirror acme/vision/dataset:v3 ./dataset-v3
  wandb-mirror checkout --config mirror.toml acme/vision/3xk2a9 ./run-3xk2a9   (a PostgreSQL catalog, S3...)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .store_args import add_store_arguments, open_store_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p, help="the store to read")
    p.add_argument("--copy", action="store_true", help="always copy (default: hard links where possible)")
    p.add_argument("path", metavar="PATH", help="ENTITY/PROJECT/RUN_ID or ENTITY/PROJECT/NAME:VERSION")
    p.add_argument("dest", metavar="DEST", help="a new or empty directory")


def run(args: argparse.Namespace) -> int:
    from ..restore.checkout import Checkout

    with open_store_from_args(args, readonly=True) as store:
        rep = Checkout(store, Path(args.dest), copy=args.copy).run(args.path)
    for name, rel in rep.mapped:
        print(f"mapped {name!r} -> {rel!r}")
    extra = f" + {', '.join(rep.written)}" if rep.written else ""
    print(f"checked out {rep.files} files ({rep.bytes / 1e6:.1f} MB; {rep.linked} linked, {rep.copied} copied)"
          f"{extra} into {args.dest}")
    return 0
