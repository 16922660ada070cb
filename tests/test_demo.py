"""`wandb-mirror demo`: the whole story runs, and each step's effect is real (checked on disk and upstream)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from wandb_mirror.config import parse_config
from wandb_mirror.store import Store


def test_demo_tells_the_whole_story(tmp_path):
    work = tmp_path / "demo"
    env = dict(os.environ, COLUMNS="80")
    r = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "demo", "--dir", "demo"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # the closing hints run as printed, from where the demo ran (commands are never wrapped: they are
    # as long as the path this interpreter has; `make demo` prints `.venv/bin/wandb-mirror ...`)
    hints = [ln.strip() for ln in out.splitlines() if ln.startswith("  ") and " --store demo/mirror" in ln]
    prose = [ln for ln in out.splitlines() if ln.strip() not in hints]
    assert all(len(line) <= 80 for line in prose), [ln for ln in prose if len(ln) > 80]
    assert len(hints) == 3
    status = subprocess.run(hints[0], shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and f"store      {work / 'mirror'}" in status.stdout, status.stderr
    for step in range(1, 7):
        assert f"[{step}]" in out
    assert "verify --deep: ok" in out and "Traceback" not in r.stderr
    assert "demo" * 10 not in out + r.stderr  # the API key is never printed
    with Store(work / "upstream") as up, Store(work / "mirror") as mirror:
        # best_run moved the tag: only the new best carries it upstream, although the mirror lagged
        tagged = [row["run_id"] for row in up.catalog.query("SELECT run_id, tags FROM runs") if "best" in json.loads(row["tags"])]
        assert tagged == ["sweep-new-best"]
        # cleanup deleted .png files upstream, the mirror still holds them
        gone = up.catalog.query("SELECT r.run_id, f.name AS file, f.md5 FROM files f JOIN runs r ON r.pk = f.run_pk "
                                "WHERE f.tombstoned_at IS NOT NULL")
        assert gone and all(g["file"].endswith(".png") for g in gone)
        for g in gone:
            assert mirror.objects.has(g["md5"])
        # summary_backfill restored the keys history has
        s = json.loads(up.catalog.scalar("SELECT summary FROM runs WHERE summary LIKE '%summary set by hand%'"))
        assert {"loss", "acc", "val/loss", "best_epoch"} <= set(s)
        # the export is where the config said (relative to the config file)
        assert list((work / "export" / "csv" / "runs").rglob("runs.csv"))
        assert mirror.catalog.scalar("SELECT COUNT(*) FROM runs") == 39
    # a second run replaces the demo directory; a foreign directory is refused
    foreign = tmp_path / "mine"
    foreign.mkdir()
    r = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "demo", "--dir", str(foreign)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a demo directory" in r.stderr
    helptext = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "demo", "--help"], capture_output=True,
                              text=True, timeout=60).stdout
    assert "`make demo` uses ./.demo" in " ".join(helptext.split())


def test_relative_plugin_paths_resolve_against_the_config_file(tmp_path):
    cfg = parse_config('[source]\nbase_url = "http://x"\n[store]\npath = "s"\n'
                       '[plugins.export]\nout = "exp"\n[plugins.best_run]\nmaterialize_dir = "/abs/best"\ntag = "best"\n',
                       tmp_path / "c.toml")
    assert cfg.plugins["export"]["out"] == str(tmp_path / "exp")
    assert cfg.plugins["best_run"]["materialize_dir"] == "/abs/best"
    assert cfg.plugins["best_run"]["tag"] == "best"
