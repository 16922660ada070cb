"""Load a fixture (JSON, see docs/fixtures.md) or the built-in demo data into a store.

Examples:
  wandb-mirror seed --store ./upstream --demo
  wandb-mirror seed --store ./upstream my-workspace.json

The whole fixture is validated before anything is written: a bad fixture names the path of the
problem inside the document (e.g. projects[0].runs[2].state) and exits 2 with the store untouched.
"""

from __future__ import annotations

import argparse
import time

from ..errors import UsageError
from .options import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="DIR", help="store directory (created if missing)")
    p.add_argument("fixture", nargs="?", metavar="FIXTURE.json", help="fixture document to load")
    p.add_argument("--demo", action="store_true", help="load the built-in demo workspace instead of a file")
    p.add_argument("--scale", type=positive_int, default=1, metavar="N", help="with --demo: multiply runs and history (default 1)")


def run(args: argparse.Namespace) -> int:
    from .. import fixtures
    from ..store import Store

    if bool(args.fixture) == bool(args.demo):
        raise UsageError("give either a FIXTURE.json or --demo")
    if args.scale < 1:
        raise UsageError("--scale must be at least 1")
    if args.demo:
        from ..demo_data import demo_fixture

        doc = demo_fixture(scale=args.scale)
    else:
        doc = fixtures.load_file(args.fixture)
    t0 = time.monotonic()
    from pathlib import Path

    path = Path(args.store)
    id_start = 1
    if path.exists():
        with Store(path) as existing:
            id_start = fixtures.id_start_for(existing)
    plan = fixtures.parse(doc, id_start=id_start)  # validates everything before the store is touched
    with Store(path) as store, store.lock("seed"):
        rep = fixtures.write_plan(store, plan)
    print(
        f"seeded {path}: {rep.projects} projects, {rep.runs} runs, {rep.history_rows} history rows, "
        f"{rep.event_rows} events, {rep.files} files, {rep.artifacts} artifact versions, "
        f"{rep.bytes / 1e6:.1f} MB in {time.monotonic() - t0:.1f}s"
    )
    return 0
