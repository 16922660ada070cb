"""Validate a configuration file: exit 0 if it is good, 2 with a message naming the bad key and
its line otherwise. Nothing is contacted and nothing is written."""

from __future__ import annotations

import argparse

from ..config import format_duration, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the TOML configuration file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing when the file is valid")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    if not args.quiet:
        src = cfg.source
        what = ", ".join(src.projects) if src.projects else "every project"
        ents = ", ".join(src.entities) if src.entities else "the API key's default entity"
        print(f"{args.file}: ok")
        print(f"  source  {src.base_url} ({what} of {ents})")
        print(f"  store   {cfg.store_path}")
        print(f"  sync    every {format_duration(cfg.sync.poll_interval)}, concurrency {cfg.sync.concurrency}, "
              f"full reconcile every {format_duration(cfg.sync.reconcile_interval)}")
        if cfg.plugins:
            print(f"  plugins {', '.join(sorted(cfg.plugins))}")
    return 0
