"""The `wandb-mirror` command line. Each command lives in its own module exposing
`add_arguments(parser)` and `run(args) -> int`; this file only wires them together and turns
MirrorError into one clear line and its exit code (2 for bad input, 1 for failed work)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from . import __version__, logsetup
from .commands.options import add_verbose
from .errors import MirrorError

# name -> (module, one-line help). Order is the order of `--help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("wandb_mirror.commands.init", "write a commented configuration to start from, and print the next steps"),
    "demo": ("wandb_mirror.commands.demo", "seed a demo upstream, serve it, mirror it, run the plugins, report"),
    "seed": ("wandb_mirror.commands.seed", "load a fixture (JSON) or the built-in demo data into a store"),
    "serve": ("wandb_mirror.server.command", "serve a store over the W&B API (the official client can read it)"),
    "sync": ("wandb_mirror.commands.sync", "mirror the configured W&B projects into the store (--once for one pass)"),
    "run": ("wandb_mirror.commands.daemon", "the daemon: sync on an interval and run plugins (what systemd starts)"),
    "verify": ("wandb_mirror.commands.verify", "check that every catalog reference resolves; --deep re-hashes everything"),
    "repair": ("wandb_mirror.commands.repair", "re-fetch damaged or missing objects from upstream (damaged copies kept aside)"),
    "gc": ("wandb_mirror.commands.gc", "remove unreferenced objects older than a grace period"),
    "migrate-store": ("wandb_mirror.commands.migrate_store",
                      "copy a whole store elsewhere (e.g. objects to S3), verified and resumable"),
    "status": ("wandb_mirror.commands.status", "show what the store holds and how the last pass went"),
    "restore": ("wandb_mirror.commands.restore", "re-create the mirrored projects on a W&B server (--dry-run first)"),
    "checkout": ("wandb_mirror.commands.checkout", "copy a run's or an artifact version's files out of a store, verified"),
    "dataset": ("wandb_mirror.commands.dataset", "link all history into one hive-partitioned Parquet dataset (no copy)"),
    "browse": ("wandb_mirror.commands.browse", "browse the catalog in a web browser (datasette, read-only)"),
    "plugins": ("wandb_mirror.commands.plugins", "list the plugins that would load, their source and hooks"),
    "check-config": ("wandb_mirror.commands.check_config", "validate a configuration file"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 already; keep its one-line form
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wandb-mirror",
        description="Keep a complete, verified, local copy of Weights & Biases data, and automate on its changes.",
        epilog="Exit codes: 0 ok, 1 the work failed, 2 bad usage or bad input. "
        "`wandb-mirror COMMAND --help` explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"wandb-mirror {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--log-format", choices=logsetup.FORMATS, default="text",
                        help="log lines as text (no timestamp under journald) or one JSON object each")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("wandb_mirror"):
                continue  # command not built yet
            raise
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        add_verbose(p)
        p.set_defaults(_run=mod.run)
    from .hooks.commands import register_plugin_commands

    register_plugin_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logsetup.configure(level, args.log_format)
    try:
        return int(args._run(args) or 0)
    except MirrorError as e:
        print(f"wandb-mirror {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"wandb-mirror {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
