"""`wandb-mirror init`: a commented configuration under the user's own directory, and next steps
that run as printed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from wandb_mirror.cli import main
from wandb_mirror.commands.init import example_text
from wandb_mirror.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_ships_as_package_data() -> None:
    assert example_text() == (ROOT / "config.example.toml").read_text()


def test_init_writes_a_valid_commented_config_and_runnable_next_steps(tmp_path: Path, capsys) -> None:
    d = tmp_path / "home" / "wandb-mirror"
    assert main(["init", str(d), "--base-url", "http://127.0.0.1:9/"]) == 0
    out = capsys.readouterr().out
    text = (d / "config.toml").read_text()
    assert text.count("#") > 80  # the commented example, not a bare file
    cfg = load_config(d / "config.toml")
    assert cfg.store_path == d / "store" and cfg.source.base_url == "http://127.0.0.1:9"
    assert cfg.plugins["export"]["out"] == str(d / "export")
    assert not any(p.get("enabled") for p in cfg.plugins.values())
    assert "/var/lib" not in re.sub(r"#.*", "", text)  # nothing outside the user's directory
    # the check-config step runs exactly as printed
    step = next(ln for ln in out.splitlines() if "check-config" in ln).split(". ", 1)[1]
    r = subprocess.run(step, shell=True, cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_init_never_overwrites(tmp_path: Path, capsys) -> None:
    assert main(["init", str(tmp_path)]) == 0
    (tmp_path / "config.toml").write_text("# mine\n")
    capsys.readouterr()
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists; not overwriting" in err[0]
    assert (tmp_path / "config.toml").read_text() == "# mine\n"
