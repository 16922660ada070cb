"""Run the daemon: sync on an interval and deliver change events to the enabled plugins.

This is what systemd starts (see systemd/wandb-mirror.service and docs/daemon.md). It holds the
store lock (one daemon per store), reloads on SIGHUP or when the config or a plugin file changes,
and stops cleanly on SIGTERM/SIGINT. Plugins are off and in dry-run unless configured.
"""

from __future__ import annotations

import argparse

from .options import add_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser, required=True)
    parser.add_argument("--once", action="store_true",
                        help="run one cycle (sync, deliver, cycle_finished) and exit; 1 if the pass had errors")
    parser.add_argument("--no-watch", action="store_true", help="do not watch the config and plugin files (SIGHUP still reloads)")


def run(args: argparse.Namespace) -> int:
    from ..daemon.core import Daemon

    _preflight(args)
    d = Daemon(args.config, max_cycles=1 if args.once else None, watch=not (args.no_watch or args.once))
    rc = d.run()
    if args.once and d.last_outcome is not None and d.last_outcome.status in ("errors", "failed"):
        return 1  # like `sync --once`: the pass did not complete cleanly (see `status`)
    return rc


def _preflight(args: argparse.Namespace) -> None:
    """A first start (no store yet) checks its input before it creates anything, each problem in
    one line: the configuration (exit 2), a missing or rejected key (exit 2); an unreachable
    upstream stops `--once` (exit 1), while the long-running daemon starts anyway (the network may
    come up after it) and retries every cycle. With an existing store the daemon's own start-up
    order applies (store lock, plugin configuration, then passes that report upstream errors)."""
    import logging

    from ..config import load_config
    from ..errors import WorkFailed
    from ..store.location import StoreLocation
    from ..sync.engine import make_client, preflight

    config = load_config(args.config)
    if StoreLocation.from_config(config).exists():
        return
    client = make_client(config)
    try:
        preflight(config, client)
    except WorkFailed as e:
        if args.once:
            raise
        logging.getLogger("wandb_mirror.daemon").warning("%s; starting anyway, the next cycles retry", e)
    finally:
        client.close()
