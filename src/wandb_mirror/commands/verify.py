"""Check a store: every catalog reference must resolve to an object of the recorded size.

With --deep, also run SQLite's integrity check on the catalog, re-hash every object (a symlink or
an object of the wrong size is a problem too), re-check every artifact file against its manifest
digest (md5 or XXH128) and recompute every artifact digest; `wandb-mirror repair` heals what it finds. Prints one summary line and names every bad
object; exits 1 on any problem. Safe to run beside a daemon writing the same store.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time

from .store_args import add_store_arguments, open_store_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--deep", action="store_true", help="re-hash every object and re-check every artifact manifest")


def run(args: argparse.Namespace) -> int:
    from ..verify import verify_store

    t0 = time.monotonic()
    with open_store_from_args(args, readonly=True) as store:
        try:
            rep = verify_store(store, deep=args.deep)
        except sqlite3.DatabaseError as e:  # a catalog too damaged to read: that is the finding
            print(f"BAD  catalog: {e} (SQLite)", file=sys.stderr)
            print("verify: FAILED: the catalog cannot be read")
            return 1
    for p in rep.problems:
        print(f"BAD  {p}", file=sys.stderr)
    what = (f"{rep.references} references, {rep.objects_checked} objects re-hashed ({rep.bytes_checked / 1e6:.1f} MB), "
            f"{rep.artifacts_checked} artifacts re-checked" if args.deep else f"{rep.references} references resolved")
    verdict = "ok" if rep.ok else f"FAILED: {len(rep.problems)} problems"
    print(f"verify{' --deep' if args.deep else ''}: {verdict}; {what} in {time.monotonic() - t0:.1f}s")
    return 0 if rep.ok else 1
