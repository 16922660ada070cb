"""Validate a configuration file: exit 0 if it is good, 2 with a message naming the bad key and
its line otherwise. Nothing is contacted and nothing is written."""

from __future__ import annotations

import argparse

from ..config import load_config
from ..errors import UsageError
from ..paths import creatable_problem
from ..times import format_duration
from .options import add_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE", help="the TOML configuration file")
    add_config(parser, help="the same, as the other commands take it")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing when the file is valid")


def run(args: argparse.Namespace) -> int:
    if args.file and args.config and args.file != args.config:
        raise UsageError("give the configuration file once: FILE or --config FILE")
    args.file = args.file or args.config
    if not args.file:
        raise UsageError("which configuration file? check-config FILE (or --config FILE)")
    cfg = load_config(args.file)
    from ..daemon.host import check_plugin_config

    # [plugins.NAME] tables belong to each plugin: the plugin system validates them (as the daemon
    # does at start), and each problem is placed on its line like the config's own errors.
    problems = check_plugin_config(cfg)
    store_problem = creatable_problem(cfg.store_path) if cfg.store_path else None
    if store_problem:
        line = cfg.line_of("store", "path")
        problems.append(f"store.path: {cfg.store_path} cannot be used as the store: {store_problem}")
        if line:
            problems[-1] = f"{args.file}:{line}: {problems[-1]}"
    if problems:
        raise UsageError("\n".join(p if p.startswith(f"{args.file}:") else _placed(args.file, cfg, p)
                                    for p in problems))
    if not args.quiet:
        src = cfg.source
        what = ", ".join(src.projects) if src.projects else "every project"
        ents = ", ".join(src.entities) if src.entities else "the API key's default entity"
        print(f"{args.file}: ok")
        print(f"  source  {src.base_url} ({what} of {ents})")
        where = cfg.store_path if not (set(cfg.store) - {"path"}) else \
            ", ".join(f"{k} {v}" for k, v in cfg.store.items() if k in ("path", "catalog", "objects"))
        print(f"  store   {where}")
        print(f"  sync    every {format_duration(cfg.sync.poll_interval)}, concurrency {cfg.sync.concurrency}, "
              f"full reconcile every {format_duration(cfg.sync.reconcile_interval)}")
        for name, mode in _plugin_modes(cfg):
            print(f"  plugin  {name}: {mode}")
    return 0


def _plugin_modes(cfg: object) -> list[tuple[str, str]]:
    """(name, what it does) for every plugin the file configures: off, files only, dry-run, upstream."""
    from ..daemon.host import PluginConfig
    from ..hooks.manager import PluginSet
    from ..hooks.plugin_status import effect

    pc = PluginConfig.from_config(cfg)  # type: ignore[arg-type]
    ps = PluginSet.load(plugins_dir=pc.plugins_dir)
    ps.configure(pc.sections)
    return [(name, effect(info) if info else "not found") for name in sorted(pc.sections)
            for info in [ps.get(name)]]


def _placed(file: str, cfg: object, problem: str) -> str:
    key = problem.split(":", 1)[0]
    line = None
    if key.startswith("plugins."):
        parts = key.split(".")
        while parts and line is None:
            line = cfg.line_of(*parts)  # type: ignore[attr-defined]
            parts = parts[:-1]
    return f"{file}:{line}: {problem}" if line else f"{file}: {problem}"
