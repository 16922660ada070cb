"""`register_commands`: let plugins add subcommands to `wandb-mirror`.

The CLI calls `register_plugin_commands(subparsers)` once while building its parser. Built-in and
entry-point plugins are asked (enabled or not: a command is something the user runs on purpose),
and plugins-dir plugins when WANDB_MIRROR_PLUGINS_DIR names the directory. A plugin whose hook
raises, or that tries to take an existing command name, is skipped with a warning: a broken plugin
must not break the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from .manager import PluginSet

log = logging.getLogger("wandb_mirror.plugins")


class _Guarded:
    """The subparsers object as plugins see it: adding a name that exists is refused."""

    def __init__(self, sub: Any, plugin: str):
        self._sub = sub
        self._plugin = plugin
        self.added: list[str] = []

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name in self._sub.choices:
            raise ValueError(f"command {name!r} already exists")
        kwargs.setdefault("help", f"(plugin {self._plugin})")
        p = self._sub.add_parser(name, **kwargs)
        self.added.append(name)
        return p

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sub, name)


def register_plugin_commands(subparsers: Any, *, plugins_dir: str | None = None,
                             plugin_set: PluginSet | None = None) -> list[str]:
    """Ask every plugin's `register_commands(cli)`; returns the command names added."""
    ps = plugin_set or PluginSet.load(plugins_dir=plugins_dir or os.environ.get("WANDB_MIRROR_PLUGINS_DIR") or None)
    added: list[str] = []
    for info in ps.loaded():
        if "register_commands" not in info.hooks:
            continue
        guarded = _Guarded(subparsers, info.name)
        try:
            ps.hook_caller(info, "register_commands")(cli=guarded)
        except Exception as e:  # noqa: BLE001
            log.warning("plugin %s: register_commands failed: %s: %s", info.name, type(e).__name__, e)
        added += guarded.added
    return added
