"""Configuration as a newcomer meets it (issue 12): one clear line and exit 2 for each mistake,
defaults as the example shows them, the upstream and key found as the official client finds them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from wandb_mirror import config as cfgmod
from wandb_mirror.cli import main
from wandb_mirror.client.auth import resolve_api_key
from wandb_mirror.hooks.manager import PluginSet, declared_keys

ROOT = Path(__file__).resolve().parents[1]
BASE = '[source]\nbase_url = "http://127.0.0.1:9"\n[store]\npath = "m"\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mirror.toml"
    p.write_text(text)
    return p


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_plugin_tables_reject_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = write(tmp_path, BASE + '[plugins.cleanup]\nenabled = true\nextensions = [".png"]\nmin_agee = "7d"\n')
    assert main(["check-config", str(p)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{p}:8: plugins.cleanup.min_agee: unknown key (expected one of:" in err
    assert "min_age" in err


def test_plugin_defaults_in_code_are_the_example_values() -> None:
    cfg = cfgmod.load_config(ROOT / "config.example.toml")
    ps = PluginSet.load(entrypoints=False)
    assert ps.configure(cfg.plugins) == []
    compared = 0
    for name, table in cfg.raw["plugins"].items():
        declared = declared_keys(ps.get(name))
        for key, value in table.items():
            if key in declared:
                assert value == declared[key], f"[plugins.{name}] {key}"
                compared += 1
    assert compared >= 8
    # and a table that leaves them out gets them
    ps.configure({"cleanup": {"enabled": True, "extensions": [".png"]}, "best_run": {"enabled": True}})
    assert ps.get("cleanup").config["min_age"] == "7d"
    assert ps.get("best_run").config["tag"] == "best"


def test_short_config_option_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = write(tmp_path, BASE)
    assert main(["check-config", "--config", str(p)]) == 0
    assert main(["check-config", "-c", str(p), "-q"]) == 0
    assert main(["plugins", "-c", str(p), "--json"]) == 0
    capsys.readouterr()
    assert main(["check-config"]) == 2
    assert last_line(capsys.readouterr().err) == ("wandb-mirror check-config: error: which configuration file? "
                                                  "check-config FILE (or --config FILE)")


def test_options_after_the_command(seeded_store: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", "--store", str(seeded_store), "-v"]) == 0
    assert "runs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["gc", "--store", "S", "--max-delete", "-5"], "argument --max-delete: expected a number > 0, got -5"),
    (["gc", "--store", "S", "--max-delete", "0"], "argument --max-delete: expected a number > 0, got 0"),
    (["seed", "--store", "S", "--demo", "--scale", "0"], "argument --scale: expected a number > 0, got 0"),
])
def test_zero_or_negative_limits_refused(tmp_path: Path, capsys: pytest.CaptureFixture, argv, message) -> None:
    argv = [str(tmp_path / "s") if a == "S" else a for a in argv]
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    assert last_line(capsys.readouterr().err).endswith(message)
    assert not (tmp_path / "s").exists()


def test_metrics_port_zero_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = write(tmp_path, BASE + "[daemon]\nmetrics_port = 0\n")
    assert main(["check-config", str(p)]) == 2
    assert last_line(capsys.readouterr().err) == (f"wandb-mirror check-config: error: {p}:6: daemon.metrics_port: "
                                                  "expected a port number (1-65535), got 0")


def test_base_url_as_the_official_client_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[store]\npath = "m"\n'
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb"))
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert cfgmod.parse_config(text, tmp_path / "c.toml").source.base_url == "https://api.wandb.ai"
    # what `wandb login --host` stores
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "settings").write_text("[default]\nbase_url = https://wandb.example.org/\n")
    assert cfgmod.parse_config(text, tmp_path / "c.toml").source.base_url == "https://wandb.example.org"
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:8080")
    assert cfgmod.parse_config(text, tmp_path / "c.toml").source.base_url == "http://127.0.0.1:8080"
    # the configuration's own wins
    assert cfgmod.parse_config(BASE, tmp_path / "c.toml").source.base_url == "http://127.0.0.1:9"
    monkeypatch.setenv("WANDB_BASE_URL", "ftp://nope")
    with pytest.raises(cfgmod.ConfigError, match="^WANDB_BASE_URL: base_url: expected an http"):
        cfgmod.parse_config(text, tmp_path / "c.toml")


def test_world_readable_netrc_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    rc = tmp_path / "netrc"
    rc.write_text("machine 127.0.0.1 login user password " + "k" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(rc))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    os.chmod(rc, 0o600)
    with caplog.at_level(logging.WARNING, logger="wandb_mirror.auth"):
        assert resolve_api_key("http://127.0.0.1:9") == "k" * 40
    assert not caplog.records
    os.chmod(rc, 0o644)
    with caplog.at_level(logging.WARNING, logger="wandb_mirror.auth"):
        assert resolve_api_key("http://127.0.0.1:9") == "k" * 40
    assert [r.getMessage() for r in caplog.records] == [
        f"{rc} holds your API key and other users can read it (mode 644): chmod 600 {rc}"]
    assert "k" * 40 not in caplog.text


def test_a_glob_matching_nothing_is_a_warning_naming_it(seeded_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture, capsys) -> None:
    from conftest import ENTITY

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    p = write(tmp_path, f'[source]\nbase_url = "{seeded_server.url}"\nprojects = ["{ENTITY}/vison-*"]\n'
                        f'[store]\npath = "m"\n[sync]\nprogress = "never"\n')
    with caplog.at_level(logging.WARNING, logger="wandb_mirror.sync"):
        assert main(["sync", "-c", str(p), "--once"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"[source] projects glob '{ENTITY}/vison-*' matches no project; check the configuration"]
    capsys.readouterr()
