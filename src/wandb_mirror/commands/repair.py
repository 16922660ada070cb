"""Heal the store of a configuration: set damaged objects aside and fetch them again.

Deep-verifies the store (every object re-hashed, the catalog's SQLite integrity checked), moves
every damaged object (wrong content or size, a symlink, unreadable) into `quarantine/objects/`
under the store (never deleted), fetches damaged and missing objects again from upstream, verified
against their md5, and reports what upstream no longer has by its upstream path
(entity/project/run/file, entity/project/collection:vN/path). Exits 0 only if the store then
verifies; 1 otherwise. Takes the store's writer lock: stop the daemon first.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, metavar="FILE", help="the TOML configuration file")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..repair import repair_store
    from ..store.location import open_store
    from ..sync.engine import make_client, preflight
    from .store_args import enabled_plugins

    config = load_config(args.config)
    client = make_client(config)
    try:
        preflight(config, client)
        with open_store(config, enabled_plugins(config), create=False) as store, store.lock("repair"):
            rep = repair_store(store, client)
    finally:
        client.close()
    after = rep.after
    assert after is not None
    for p in after.problems:
        print(f"BAD  {p}", file=sys.stderr)
    for path in rep.lost:
        print(f"LOST {path}: upstream no longer has it", file=sys.stderr)
    verdict = "ok: the store verifies" if rep.ok else f"FAILED: {len(after.problems)} problems remain"
    print(f"repair: {verdict}; {len(rep.quarantined)} damaged objects quarantined, {len(rep.refetched)} fetched "
          f"again, {len(rep.lost)} no longer upstream")
    return 0 if rep.ok else 1
