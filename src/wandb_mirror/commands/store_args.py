"""`--store DIR` or `--config FILE`: how every command that reads or repairs a store names it.

With --config, the store is the one the file's `[store]` table names (a directory, or a catalog
plus objects that may be on S3), and an enabled plugin's `storage_backend` is honoured, exactly
as `sync` and `run` would open it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..store import Store


def add_store_arguments(p: argparse.ArgumentParser, help: str = "the store directory") -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--store", metavar="DIR", help=help)
    g.add_argument("--config", "-c", metavar="FILE",
                   help="use the store that this configuration file's [store] table names")


def open_store_from_args(args: argparse.Namespace, *, readonly: bool = False) -> Store:
    """The existing store `args` names; a UsageError (one line, exit 2) when it is not there."""
    from ..store.location import open_store

    if getattr(args, "config", None):
        from ..config import load_config

        cfg = load_config(args.config)
        return open_store(cfg, enabled_plugins(cfg), create=False, readonly=readonly)
    return open_store(args.store, create=False, readonly=readonly)


def store_label(args: argparse.Namespace) -> str:
    """How messages name the store the user gave."""
    return args.store if getattr(args, "store", None) else f"the store of {args.config}"


def enabled_plugins(cfg: Any) -> Any:
    """The configured plugin set when any plugin is enabled (one may provide the objects), else None."""
    if not any(isinstance(t, dict) and t.get("enabled") for t in (cfg.plugins or {}).values()):
        return None
    from ..daemon.host import PluginConfig, load_plugins
    from ..errors import UsageError

    plugins, problems = load_plugins(PluginConfig.from_config(cfg))
    if problems:
        raise UsageError("plugin configuration: " + "; ".join(problems))
    return plugins
