"""The plugin API of wandb-mirror (pluggy project `wandb_mirror`).

A plugin is a module (or any object) with functions decorated by `hookimpl`:

    from wandb_mirror.hooks import hookimpl

    @hookimpl
    def run_state_changed(run, old, new, upstream, config):
        if new == "finished" and config.get("tag"):
            upstream.add_tags(run, config["tag"])

See docs/plugins.md for every hook, the objects they receive (`hooks.types`), the `upstream`
writer (`hooks.upstream.Upstream`) and the read-only `store` handle (`hooks.store_view.StoreView`).
"""

from __future__ import annotations

from ..fsnames import hive_part, safe_relpath
from ..times import parse_time, utcnow
from .manager import parse_duration
from .specs import PROJECT, hookimpl, hookspec
from .store_view import PluginState, StoreView
from .tables import atomic_write, write_table
from .types import FINISHED_STATES, Artifact, Automation, CycleStats, FieldChange, File, Run, Sweep
from .upstream import Upstream, UpstreamWriteError, WriteResult

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "Run",
    "File",
    "Artifact",
    "Sweep",
    "Automation",
    "FieldChange",
    "CycleStats",
    "FINISHED_STATES",
    "StoreView",
    "PluginState",
    "Upstream",
    "UpstreamWriteError",
    "WriteResult",
    "atomic_write",
    "write_table",
    "parse_duration",
    "parse_time",
    "utcnow",
    "safe_relpath",
    "hive_part",
]
