"""Finding plugins (built-ins, entry points, plugins dir), validating their config, documentation."""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

import pytest

from wandb_mirror import events
from wandb_mirror.hooks import specs
from wandb_mirror.hooks.manager import BUILTIN_PLUGINS, PluginSet

ROOT = Path(__file__).resolve().parents[1]


def test_every_hook_is_documented() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"^### (\w+)$", doc, flags=re.M))
    declared = {name for name, fn in inspect.getmembers(specs, inspect.isfunction)
                if hasattr(fn, f"{specs.PROJECT}_spec")}
    assert declared == set(specs.ALL_HOOKS)
    for name in declared:
        assert name in documented, f"hook {name} is not documented in docs/plugins.md"
        assert (getattr(specs, name).__doc__ or "").strip(), f"hook {name} has no docstring"
    assert set(events.KINDS) <= declared
    # and nothing documented as a hook that does not exist (built-in plugin sections aside)
    builtins = set(BUILTIN_PLUGINS)
    assert documented - declared <= builtins


def test_builtins_load_with_their_hooks() -> None:
    ps = PluginSet.load(entrypoints=False)
    assert ps.problems == []
    hooks = {name: ps.get(name).hooks for name in BUILTIN_PLUGINS}
    assert {"history_appended", "cycle_finished"} <= set(hooks["export"])
    assert {"sweep_updated", "sweep_finished", "run_state_changed"} <= set(hooks["best_run"])
    assert {"file_mirrored", "cycle_finished"} <= set(hooks["cleanup"])
    assert {"run_created", "run_updated"} <= set(hooks["summary_backfill"])
    for name in BUILTIN_PLUGINS:
        info = ps.get(name)
        assert info.source == "builtin" and not info.enabled and info.dry_run
        assert info.description.startswith(name + ":")
        # built-ins use only the public hook API
        src = Path(info.module.__file__).read_text()
        imports = set(re.findall(r"^from (wandb_mirror[\w.]*) import", src, flags=re.M))
        imports |= set(re.findall(r"^import (wandb_mirror[\w.]*)", src, flags=re.M))
        assert imports <= {"wandb_mirror.hooks", "wandb_mirror.hooks.tables"}, (name, imports)


def test_plugins_dir_loading_and_problems(tmp_path: Path) -> None:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "good.py").write_text(
        '"""good: a fine plugin."""\nfrom wandb_mirror.hooks import hookimpl\n\n'
        "@hookimpl\ndef run_created(run):\n    pass\n")
    (d / "renamed.py").write_text(
        "from wandb_mirror.hooks import hookimpl\nPLUGIN_NAME = 'nicer'\n\n"
        "@hookimpl\ndef tombstoned(kind, key):\n    pass\n")
    (d / "broken.py").write_text("def oops(:\n")
    (d / "typo.py").write_text(
        "from wandb_mirror.hooks import hookimpl\n\n@hookimpl\ndef run_creatd(run):\n    pass\n")
    (d / "badargs.py").write_text(
        "from wandb_mirror.hooks import hookimpl\n\n@hookimpl\ndef run_created(run, nonsense):\n    pass\n")
    (d / "export.py").write_text(
        "from wandb_mirror.hooks import hookimpl\n\n@hookimpl\ndef run_created(run):\n    pass\n")
    (d / "_private.py").write_text("raise SystemExit('must not be loaded')\n")
    ps = PluginSet.load(plugins_dir=d, entrypoints=False)
    assert ps.get("good").hooks == ["run_created"] and ps.get("good").source == f"file {d / 'good.py'}"
    assert ps.get("nicer").hooks == ["tombstoned"]
    assert "SyntaxError" in ps.get("broken").error
    assert "unknown hook(s) run_creatd" in ps.get("typo").error
    assert "nonsense" in ps.get("badargs").error
    assert ps.get("export").source == "builtin"  # a file cannot shadow a built-in
    assert any("plugin export (file" in p and "name is taken by builtin" in p for p in ps.problems)
    assert ps.get("_private") is None
    # enabling a plugin that failed to load is a configuration problem; a disabled one is not
    problems = ps.configure({"broken": {"enabled": True}, "typo": {"enabled": False}, "good": {"enabled": True}})
    assert len(problems) == 1 and problems[0].startswith("plugins.broken: plugin failed to load: import failed: SyntaxError")
    assert ps.get("good").enabled and not ps.get("typo").enabled


def test_entry_point_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "mirror_ep_plugin").mkdir(parents=True)
    (site / "mirror_ep_plugin" / "__init__.py").write_text(
        '"""ep: from an entry point."""\nfrom wandb_mirror.hooks import hookimpl\n\n'
        "@hookimpl\ndef sweep_finished(sweep):\n    pass\n")
    dist = site / "mirror_ep_plugin-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mirror-ep-plugin\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text("[wandb_mirror]\nep = mirror_ep_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    ps = PluginSet.load(builtins=False)
    info = ps.get("ep")
    assert info is not None and info.error is None
    assert info.source == "entrypoint mirror-ep-plugin 1.2" and info.hooks == ["sweep_finished"]
    sys.modules.pop("mirror_ep_plugin", None)


def test_config_validation_names_the_bad_key(tmp_path: Path) -> None:
    ps = PluginSet.load(entrypoints=False)
    problems = ps.configure({
        "export": {"enabled": True, "formats": ["csv", "xlsx"]},
        "cleanup": {"enabled": "yes", "extensions": ".png", "max_per_pass": 0},
        "best_run": {"source": "median", "artifact_alias": "best"},
        "summary_backfill": {"rules": {"loss": "mean"}, "hook_timeout": "soon"},
        "nosuch": {"enabled": True},
        "off_and_unknown": {"enabled": False},
    })
    text = "\n".join(problems)
    for needle in [
        "plugins.export.out: required",
        "plugins.export.formats: unknown format 'xlsx'",
        "plugins.cleanup.enabled: expected true/false, got 'yes'",
        "plugins.cleanup.extensions: expected a list",
        "plugins.cleanup.max_per_pass: expected a positive integer",
        "plugins.best_run.source: expected \"summary\" or \"history\"",
        "plugins.best_run.artifact_alias: artifact_collection and artifact_alias go together",
        "plugins.summary_backfill.rules.loss: expected one of last, min, max, got 'mean'",
        "plugins.summary_backfill.hook_timeout: expected a duration",
        "plugins.nosuch: no plugin named 'nosuch' is installed",
    ]:
        assert needle in text, (needle, text)
    assert "off_and_unknown" not in text


def test_plugins_command_lists_sources_modes_and_hooks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from wandb_mirror.cli import main

    d = tmp_path / "pl"
    d.mkdir()
    (d / "mine.py").write_text(
        '"""mine: mine."""\nfrom wandb_mirror.hooks import hookimpl\n\n@hookimpl\ndef run_created(run):\n    pass\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[source]\nbase_url = "http://127.0.0.1:9"\n[store]\npath = "{tmp_path / "store"}"\n'
        f'[daemon]\nplugins_dir = "{d}"\n'
        '[plugins.mine]\nenabled = true\n[plugins.best_run]\nenabled = true\ndry_run = false\ntag = "best"\n'
        f'[plugins.export]\nenabled = true\nout = "{tmp_path / "x"}"\n[plugins.cleanup]\nenabled = false\n')
    assert main(["plugins", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^mine\s+on, dry-run \(journals upstream writes\)\s+file .*mine\.py$", out, re.M)
    assert re.search(r"^best_run\s+on, WRITES UPSTREAM\s+builtin$", out, re.M)
    # export never writes upstream: "dry-run" would mislead (it writes its files all the same)
    assert re.search(r"^export\s+on, writes files only\s+builtin$", out, re.M)
    assert re.search(r"^summary_backfill\s+off\s+builtin$", out, re.M)
    assert main(["check-config", str(cfg)]) == 0
    checked = capsys.readouterr().out
    for line in ("plugin  export: on, writes files only", "plugin  best_run: on, WRITES UPSTREAM",
                 "plugin  mine: on, dry-run (journals upstream writes)", "plugin  cleanup: off"):
        assert line in checked, checked
    assert "    hooks: run_created" in out
    assert main(["plugins", "--json", "--plugins-dir", str(d)]) == 0
    doc = json.loads(capsys.readouterr().out)
    by = {p["name"]: p for p in doc["plugins"]}
    assert by["mine"]["hooks"] == ["run_created"] and by["mine"]["enabled"] is False
    assert set(BUILTIN_PLUGINS) <= set(by)


def test_builtins_register_through_the_entry_point_group() -> None:
    """Every module of plugins/ is registered in pyproject.toml's entry-point group, and loads from there."""
    from wandb_mirror.config import tomllib  # tomli before 3.11

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["wandb_mirror"]
    modules = {p.stem for p in (ROOT / "plugins").glob("*.py") if not p.name.startswith("_")}
    assert {v.rpartition(".")[2] for v in declared.values()} == modules
    assert set(BUILTIN_PLUGINS) == set(declared)
    ps = PluginSet.load(entrypoints=False)
    for name in declared:
        info = ps.get(name)
        assert info is not None and info.source == "builtin" and info.error is None, name
    assert not (ROOT / "src" / "wandb_mirror" / "hooks" / "manager.py").read_text().count("best_run")
