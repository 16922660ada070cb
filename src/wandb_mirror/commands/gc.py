"""Remove objects no catalog row references, once they are older than a grace period.

Objects referenced by tombstoned runs, files or artifacts are kept: sync never deletes data.
Takes the store lock (refuses while a sync or daemon is writing). Use --dry-run first.
"""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .options import positive_int
from .store_args import add_store_arguments, open_store_from_args


def _duration(text: str) -> float:
    from ..times import parse_duration

    try:
        return parse_duration(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 24h, 7d)") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--grace", type=_duration, default=24 * 3600, metavar="DURATION",
                   help="keep unreferenced objects younger than this (default 24h)")
    p.add_argument("--max-delete", type=positive_int, default=None, metavar="N", help="remove at most N objects")


def run(args: argparse.Namespace) -> int:
    from ..gc import collect

    if args.grace < 0:
        raise UsageError("--grace must not be negative")
    with open_store_from_args(args) as store, store.lock("gc"):
        rep = collect(store, grace_seconds=args.grace, dry_run=args.dry_run, max_delete=args.max_delete)
    verb = "would remove" if args.dry_run else "removed"
    for key in rep.removed_keys[:50]:
        print(f"{verb} {key}")
    print(f"gc{' (dry run)' if args.dry_run else ''}: {rep.referenced} referenced objects kept, {verb} {rep.removed} "
          f"unreferenced ({rep.removed_bytes / 1e6:.1f} MB), {rep.kept_young} younger than the grace period kept"
          + (f", {rep.temp_removed} temp files cleaned" if rep.temp_removed else ""))
    return 0
