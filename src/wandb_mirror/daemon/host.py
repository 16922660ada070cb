"""The plugin side of the daemon: load plugins for a config, deliver events, reload safely."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client.transport import Transport
from ..config import Config
from ..errors import UsageError
from ..hooks.delivery import DeliverySettings, DeliveryStats, Dispatcher
from ..hooks.manager import PluginSet
from ..hooks.types import CycleStats
from ..store import Store

log = logging.getLogger("wandb_mirror.daemon")

@dataclass
class PluginConfig:
    """What the plugin system needs from a configuration."""

    sections: dict[str, dict[str, Any]]
    plugins_dir: Path | None
    delivery: DeliverySettings

    @classmethod
    def from_config(cls, cfg: Config) -> PluginConfig:
        return cls(sections=dict(cfg.plugins), plugins_dir=cfg.daemon.plugins_dir,
                   delivery=DeliverySettings.from_config(cfg.daemon))


def load_plugins(pc: PluginConfig, *, extra: dict[str, Any] | None = None) -> tuple[PluginSet, list[str]]:
    """Load every plugin and attach its section; returns (set, problems). Problems are fatal for a config."""
    ps = PluginSet.load(plugins_dir=pc.plugins_dir, extra=extra)
    problems = ps.configure(pc.sections)
    # A plugin that is enabled but failed to import is a configuration problem; others are logged only.
    return ps, problems


def check_plugin_config(cfg: Config) -> list[str]:
    """Problems with the [plugins.*] tables of a loaded config (for `check-config`); [] when fine."""
    _, problems = load_plugins(PluginConfig.from_config(cfg))
    return problems


class PluginHost:
    """Owns the plugin set and the dispatcher for one store; `reload()` swaps in a new config."""

    def __init__(self, store: Store, cfg: Config, *, transport: Transport | None = None,
                 extra: dict[str, Any] | None = None):
        self.store = store
        self.extra = extra
        self.pc = PluginConfig.from_config(cfg)
        plugins, problems = load_plugins(self.pc, extra=extra)
        if problems:
            raise UsageError("plugin configuration: " + "; ".join(problems))
        self.dispatcher = Dispatcher(store, plugins, transport=transport, settings=self.pc.delivery)
        self._lock = threading.Lock()

    @property
    def plugins(self) -> PluginSet:
        return self.dispatcher.plugins

    def reload(self, cfg: Config, *, transport: Transport | None = None) -> list[str]:
        """Load plugins afresh for `cfg`; on problems keep the running set and return them."""
        try:
            pc = PluginConfig.from_config(cfg)
            plugins, problems = load_plugins(pc, extra=self.extra)
        except Exception as e:  # noqa: BLE001 - a broken edit must never take the daemon down
            return [f"{type(e).__name__}: {e}"]
        if problems:
            return problems
        with self._lock:
            self.pc = pc
            self.dispatcher.settings = pc.delivery
            if transport is not None:
                self.dispatcher.transport = transport
            self.dispatcher.replace_plugins(plugins)
        log.info("plugins reloaded: %s", ", ".join(f"{p.name}{'' if p.enabled else ' (off)'}"
                                                   for p in plugins.loaded()) or "none")
        return []

    def deliver(self, stop: threading.Event) -> DeliveryStats:
        with self._lock:
            return self.dispatcher.deliver(stop)

    def cycle_finished(self, stats: CycleStats, stop: threading.Event) -> None:
        with self._lock:
            self.dispatcher.cycle_finished(stats, stop)

    def close(self) -> None:
        self.dispatcher.close()
