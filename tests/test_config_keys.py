"""Every configuration key is declared once (kind, default, help); the example file shows those defaults."""

from __future__ import annotations

from pathlib import Path

from wandb_mirror import config as cfgmod
from wandb_mirror.hooks.delivery import DELIVERY_KEYS, DeliverySettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"


def test_every_key_has_a_kind_a_default_and_help() -> None:
    for table in (cfgmod.SOURCE_KEYS, cfgmod.STORE_KEYS, cfgmod.SYNC_KEYS, cfgmod.DAEMON_KEYS):
        for name, key in table.items():
            assert key.kind and key.help.strip(), name


def test_example_values_are_the_declared_defaults() -> None:
    """A key set (not commented out) in config.example.toml shows its default, so the file documents them."""
    cfg = cfgmod.load_config(EXAMPLE)
    sections = {"source": (cfgmod.SOURCE_KEYS, cfg.source), "sync": (cfgmod.SYNC_KEYS, cfg.sync),
                "daemon": (cfgmod.DAEMON_KEYS, cfg.daemon)}
    checked = 0
    for section, (keys, parsed) in sections.items():
        for name in cfg.raw[section]:
            if name not in keys:
                continue
            holder = cfg.source.defaults if name in cfgmod.PROJECT_TOGGLES else parsed
            assert getattr(holder, name) == keys[name].default, f"[{section}] {name}"
            checked += 1
    assert checked >= 25


def test_a_config_without_optional_keys_gets_the_declared_defaults(tmp_path: Path) -> None:
    cfg = cfgmod.parse_config('[source]\nbase_url = "http://127.0.0.1:1"\n[store]\npath = "m"\n', tmp_path / "c.toml")
    for name, key in cfgmod.SYNC_KEYS.items():
        assert getattr(cfg.sync, name) == key.default, name
    for name, key in cfgmod.DAEMON_KEYS.items():
        assert getattr(cfg.daemon, name) == key.default, name
    for name, key in cfgmod.PROJECT_TOGGLES.items():
        assert getattr(cfg.source.defaults, name) == key.default, name


def test_delivery_settings_come_from_the_daemon_section(tmp_path: Path) -> None:
    defaults = DeliverySettings()
    for name in DELIVERY_KEYS:
        assert getattr(defaults, name) == cfgmod.DAEMON_KEYS[name].default
    cfg = cfgmod.parse_config('[source]\nbase_url = "http://127.0.0.1:1"\n[store]\npath = "m"\n'
                              '[daemon]\nhook_timeout = "90s"\nmax_failures = 2\nstop_grace = "1m"\n', tmp_path / "c.toml")
    s = DeliverySettings.from_config(cfg.daemon)
    assert (s.hook_timeout, s.max_failures, s.stop_grace, s.retry_backoff) == (90.0, 2, 60.0, defaults.retry_backoff)
