"""Load a fixture (JSON, see docs/fixtures.md) or the built-in demo data into a store.

Examples:
  wandb-mirror seed --store ./upstream --demo
  wandb-mirror seed --store ./upstream my-workspace.json

The whole fixture is validated before anything is written: a bad fixture names the path of the
problem inside the document (e.g. projects[0].runs[2].state) and exits 2 with the store untouched.
Seeding an existing store adds the fixture's projects to it; a project the store already holds is
refused (exit 2) before anything is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .options import positive_int

if TYPE_CHECKING:
    from ..fixtures import Plan


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
    path = Path(args.store)
    id_start = 1
    if path.exists():
        with Store(path) as existing:
            id_start = fixtures.id_start_for(existing)
    plan = fixtures.parse(doc, id_start=id_start)  # validates everything before the store is touched
    if path.exists():
        _refuse_overlap(path, plan)
    with Store(path) as store, store.lock("seed"):
        rep = fixtures.write_plan(store, plan)
    print(
        f"seeded {path}: {rep.projects} projects, {rep.runs} runs, {rep.history_rows} history rows, "
        f"{rep.event_rows} events, {rep.files} files, {rep.artifacts} artifact versions, "
        f"{rep.bytes / 1e6:.1f} MB in {time.monotonic() - t0:.1f}s"
    )
    return 0


def _refuse_overlap(path: Path, plan: Plan) -> None:
    """Seeding merges new projects into a store; a project the store already holds is refused
    before anything (an object included) is written."""
    from ..store import Store

    with Store(path, create=False, readonly=True) as store:
        held = {(r["entity"], r["name"]) for r in store.catalog.query("SELECT entity, name FROM projects")}
    clash = sorted(f"{p.project.entity}/{p.project.name}" for p in plan.projects
                   if (p.project.entity, p.project.name) in held)
    if clash:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise UsageError(f"store {path} already holds project {clash[0]}{more}: seed into a new store, or a "
                         "fixture whose projects it does not hold yet; nothing was written")
