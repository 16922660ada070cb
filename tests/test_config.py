"""Configuration: TOML parsing, defaults, per-project toggles, and errors that name key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from wandb_mirror.cli import main
from wandb_mirror.config import ConfigError, load_config, parse_config, parse_duration

MINIMAL = """
[source]
base_url = "https://wandb.example.com/"

[store]
path = "mirror"
"""

FULL = """
# a full configuration
[source]
base_url = "https://api.wandb.ai"
entities = ["acme", "team-x"]
projects = ["acme/*", "shared"]
exclude_projects = ["acme/scratch-*"]
files_exclude = ["*.ckpt"]
artifact_types = ["model"]

[[source.override]]
match = "acme/big-*"
files = false
history = false

[[source.override]]
match = ["acme/big-keep"]
files = true

[store]
path = "/var/lib/wandb-mirror"

[sync]
poll_interval = "2m"
concurrency = 8
rate_limit = 5.5
reconcile_interval = "1h30m"
progress = false

[daemon]
poll_interval = "30s"
jitter = "5s"
plugins_dir = "plugins.d"
metrics_port = 9108
hook_timeout = "2m"
max_failures = 3

[plugins.export]
enabled = true
formats = ["csv", "parquet"]
whatever_the_plugin_wants = { nested = 1 }

[plugins.best_run]
enabled = false
"""


def write(tmp_path: Path, text: str, name: str = "mirror.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_minimal_config_mirrors_everything_of_the_default_entity(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.source.base_url == "https://wandb.example.com"
    assert cfg.source.entities == [] and cfg.source.projects == []
    assert cfg.store_path == tmp_path / "mirror"  # relative to the config file's directory
    assert cfg.selects("anyone", "anything")
    opts = cfg.project_options("e", "p")
    assert opts.history and opts.events and opts.files and opts.artifacts and opts.sweeps and opts.reports
    assert cfg.sync.poll_interval == 60 and cfg.sync.concurrency == 8 and cfg.sync.rate_limit == 0
    assert cfg.plugins == {}


def test_full_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.source.entities == ["acme", "team-x"]
    assert cfg.selects("acme", "vision") and cfg.selects("team-x", "shared")
    assert not cfg.selects("acme", "scratch-1") and not cfg.selects("team-x", "other")
    big = cfg.project_options("acme", "big-data")
    assert not big.files and not big.history and big.events
    keep = cfg.project_options("acme", "big-keep")
    assert keep.files and not keep.history  # later overrides win, key by key
    normal = cfg.project_options("acme", "vision")
    assert normal.want_file("config.yaml") and not normal.want_file("model.ckpt")
    assert normal.want_artifact_type("model") and not normal.want_artifact_type("dataset")
    assert cfg.sync.poll_interval == 120 and cfg.sync.reconcile_interval == 5400
    assert cfg.sync.concurrency == 8 and cfg.sync.rate_limit == 5.5 and cfg.sync.progress == "never"
    assert cfg.daemon.poll_interval == 30 and cfg.daemon.jitter == 5 and cfg.daemon.metrics_port == 9108
    assert cfg.daemon.plugins_dir == tmp_path / "plugins.d"
    assert cfg.daemon.hook_timeout == 120 and cfg.daemon.max_failures == 3 and cfg.daemon.stop_grace == 5
    assert cfg.store_path == Path("/var/lib/wandb-mirror")
    # plugin sections are kept verbatim for the plugin system to validate
    assert cfg.plugins["export"]["whatever_the_plugin_wants"] == {"nested": 1}
    assert cfg.plugins["best_run"] == {"enabled": False}
    assert cfg.raw["plugins"]["export"]["formats"] == ["csv", "parquet"]
    assert cfg.line_of("plugins", "export", "formats") == 40


def test_daemon_poll_interval_is_the_default_for_sync(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + '\n[daemon]\npoll_interval = "45s"\n'))
    assert cfg.sync.poll_interval == 45


@pytest.mark.parametrize("value,seconds", [(90, 90), (1.5, 1.5), ("90s", 90), ("5m", 300), ("1h30m", 5400),
                                           ("250ms", 0.25), ("1d", 86400), ("2", 2)])
def test_durations(value, seconds) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 parsecs", "", "m5", True, -1, "1x"])
def test_bad_durations(value) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("text,where,what", [
    (MINIMAL + "\n[sync]\nconcurrency = \"4\"\n", ":9:", "sync.concurrency: expected an integer"),
    (MINIMAL + "\n[sync]\npoll_interval = \"soon\"\n", ":9:", "sync.poll_interval: expected a duration"),
    (MINIMAL + "\n[sync]\nconcurency = 4\n", ":9:", "sync.concurency: unknown key"),
    (MINIMAL.replace("[store]", "[stor]"), ":5:", "stor: unknown section"),
    (MINIMAL + "\n[sync]\nconcurrency = 0\n", ":9:", "expected an integer > 0"),
    ('[source]\nbase_url = "ftp://x"\n[store]\npath = "m"\n', ":2:", "source.base_url: expected an http"),
    (MINIMAL + '\n[daemon]\nmetrics_port = 0\n', ":9:", "daemon.metrics_port: expected a port number (1-65535)"),
    (MINIMAL + '\n[[source.override]]\nfiles = false\n', ":8:", "missing required key match"),
    (MINIMAL + '\n[[source.override]]\nmatch = "a/*"\nfils = false\n', ":10:", "source.override[0].fils: unknown key"),
    (MINIMAL + "\n[plugins]\nexport = 3\n", ":9:", "plugins.export: expected a table"),
    (MINIMAL + "\n[source.nope]\nx = 1\n", ":8:", "source.nope: unknown key"),
    (MINIMAL + '\n[daemon]\nmetrics_port = 70000\n', ":9:", "daemon.metrics_port: expected a port"),
    (MINIMAL + '\n[sync]\nrate_limit = true\n', ":9:", "sync.rate_limit: expected a number"),
    (MINIMAL + "\n[sync\nx = 1\n", ":8:", "not valid TOML"),
])
def test_errors_name_key_and_line(tmp_path: Path, text: str, where: str, what: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.startswith(str(p) + where), msg
    assert what in msg, msg
    assert ei.value.exit_code == 2


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # the plugin tables are checked by their plugins: export needs `out`, plugins_dir must exist
    good = write(tmp_path, FULL.replace("[plugins.export]\n", '[plugins.export]\nout = "exp"\n'))
    (tmp_path / "plugins.d").mkdir()
    assert main(["check-config", str(good)]) == 0
    assert f"{good}: ok" in capsys.readouterr().out
    bad = write(tmp_path, MINIMAL + "\n[sync]\nconcurrency = -2\n", "bad.toml")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"wandb-mirror check-config: error: {bad}:9: sync.concurrency: expected an integer > 0, got -2"
    assert main(["check-config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_parse_config_without_a_file() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.store_path.name == "mirror" and cfg.path is None


def test_check_config_validates_plugin_tables_with_lines(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "c.toml"
    f.write_text('[source]\nbase_url = "http://127.0.0.1:1"\n[store]\npath = "s"\n'
                 '[plugins.cleanup]\nenabled = true\nextensions = ".png"\n[plugins.nosuch]\nenabled = true\n')
    r = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "check-config", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{f}:7: plugins.cleanup.extensions" in r.stderr
    assert f"{f}:8: plugins.nosuch" in r.stderr
    assert not (tmp_path / "s").exists()
