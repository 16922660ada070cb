"""Copy a whole store to another place, verified: `migrate-store --from CONFIG --to CONFIG`.

Each configuration's `[store]` table names a store: a single directory, or a catalog and objects
apart (objects on S3-compatible storage). Objects are copied first, each verified on the way in,
then the catalog, then the target is checked as `verify --deep` checks a store. A migration that
was interrupted is finished by running the same command again; a target holding anything but a
partial migration of this source is refused. Both stores are locked meanwhile: stop the daemons
(`wandb-mirror run`) of the source first. Exit 0 once the target verifies.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", metavar="CONFIG", required=True,
                   help="the configuration whose [store] is copied (it is only read)")
    p.add_argument("--to", dest="target", metavar="CONFIG", required=True,
                   help="the configuration whose [store] receives the copy (empty, or a partial copy of the same source)")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import UsageError
    from ..store.location import StoreLocation, open_store
    from ..store.migrate import MigrationReport, migrate
    from .store_args import enabled_plugins

    src_cfg, dst_cfg = load_config(args.source), load_config(args.target)
    src_loc, dst_loc = StoreLocation.from_config(src_cfg), StoreLocation.from_config(dst_cfg)
    if src_loc.catalog_file().resolve() == dst_loc.catalog_file().resolve():
        raise UsageError(f"--from and --to name the same catalog ({src_loc.catalog_file()})")
    t0 = time.monotonic()
    with open_store(src_cfg, enabled_plugins(src_cfg), create=False) as source, \
            open_store(dst_cfg, enabled_plugins(dst_cfg)) as target, \
            source.lock("migrate-store (source)"), target.lock("migrate-store (target)"):
        last = [time.monotonic()]

        def progress(r: MigrationReport) -> None:
            if sys.stderr.isatty() and time.monotonic() - last[0] > 1:
                last[0] = time.monotonic()
                print(f"\r{r.objects_copied} objects copied ({r.bytes_copied / 1e6:.1f} MB), "
                      f"{r.objects_present} already there", end="", file=sys.stderr)

        report = migrate(source, target, target_name=target.describe(), progress=progress)
        where = f"{source.describe()} -> {target.describe()}"
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for p in report.problems:
        print(f"BAD  {p}", file=sys.stderr)
    rows = sum(report.rows.values())
    what = (f"{report.objects_copied} objects copied ({report.bytes_copied / 1e6:.1f} MB), "
            f"{report.objects_present} already there, {rows} catalog rows in {len(report.rows)} tables, "
            f"{time.monotonic() - t0:.1f}s")
    if not report.ok:
        print(f"migrate-store: FAILED: the target does not verify ({len(report.problems)} problems); {what}")
        return 1
    print(f"migrate-store: ok, {where}; {what}; the target verifies (as verify --deep)")
    return 0
