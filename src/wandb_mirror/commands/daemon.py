"""Run the daemon: sync on an interval and deliver change events to the enabled plugins.

This is what systemd starts (see systemd/wandb-mirror.service and docs/daemon.md). It holds the
store lock (one daemon per store), reloads on SIGHUP or when the config or a plugin file changes,
and stops cleanly on SIGTERM/SIGINT. Plugins are off and in dry-run unless configured.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the TOML configuration file")
    parser.add_argument("--once", action="store_true",
                        help="run one cycle (sync, deliver, cycle_finished) and exit; 1 if the pass had errors")
    parser.add_argument("--no-watch", action="store_true", help="do not watch the config and plugin files (SIGHUP still reloads)")


def run(args: argparse.Namespace) -> int:
    from ..daemon.core import Daemon, credentials_to_env

    credentials_to_env()
    d = Daemon(args.config, max_cycles=1 if args.once else None, watch=not (args.no_watch or args.once))
    rc = d.run()
    if args.once and d.last_outcome is not None and d.last_outcome.status in ("errors", "failed"):
        return 1  # like `sync --once`: the pass did not complete cleanly (see `status`)
    return rc
