"""`sync --once` asks who the key belongs to once: the preflight's answer serves the pass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def test_one_viewer_query_per_sync_command(seeded_store: Path, start_mirror_server: Any, tmp_path: Path) -> None:
    server = start_mirror_server(seeded_store, read_only=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[source]\nbase_url = "{server.url}"\n[store]\npath = "mirror"\n[sync]\nprogress = "never"\n')
    env = {**os.environ, "WANDB_API_KEY": "k" * 40}
    for _ in range(2):  # a first pass, then a pass with nothing new
        server.reset_log()
        r = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", "sync", "--config", str(cfg), "--once"],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        ops = Counter(e["operation"] for e in server.request_log())
        assert ops["Viewer"] == 1, ops
