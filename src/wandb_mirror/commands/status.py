"""Show what a store holds: projects, runs by state, objects, bytes, dedup ratio, the last pass
(its duration and errors), quarantined items, plugin write-backs and the lag since the last pass.

--json prints one JSON object (counts under "runs", "objects", "bytes", "last_pass", "lag_seconds").
"""

from __future__ import annotations

import argparse
import json

from .store_args import add_store_arguments, open_store_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from ..store_status import format_status, store_status

    with open_store_from_args(args, readonly=True) as store:
        s = store_status(store)
    print(json.dumps(s, indent=2) if args.json else format_status(s))
    return 0
