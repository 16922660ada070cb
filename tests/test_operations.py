"""Operating the mirror: log lines (journald, JSON), one INFO line per pass, `status` as people read it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wandb_mirror.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(cfg: Path, *global_args: str, stderr_file: Path, env_extra: dict[str, str] | None = None) -> str:
    env = dict(os.environ, WANDB_API_KEY="k" * 40, PYTHONUNBUFFERED="1", **(env_extra or {}))
    env.pop("NOTIFY_SOCKET", None)
    env.pop("JOURNAL_STREAM", None)
    if env_extra and "JOURNAL_STREAM" in env_extra:
        env["JOURNAL_STREAM"] = env_extra["JOURNAL_STREAM"]
    with open(stderr_file, "w") as err:
        p = subprocess.run([sys.executable, "-m", "wandb_mirror.cli", *global_args, "run", "--config", str(cfg),
                            "--once"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=120)
    text = stderr_file.read_text()
    assert p.returncode == 0, text
    return text


@pytest.fixture(scope="module")
def mirrored(seeded_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ops")
    cfg = base / "c.toml"
    cfg.write_text(f'[source]\nbase_url = "{seeded_server.url}"\n[store]\npath = "{base / "mirror"}"\n')
    return cfg, base


def test_json_log_lines_and_one_info_line_per_pass(mirrored: tuple[Path, Path]) -> None:
    cfg, base = mirrored
    text = _run(cfg, "--log-format", "json", stderr_file=base / "json.log")
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    passes = [r for r in records if re.match(r"pass \d+ (ok|errors) in [\d.]+s:", r["message"])]
    assert len(passes) == 1 and passes[0]["level"] == "INFO"
    assert re.search(r"\d+ requests", passes[0]["message"]) and "MB" in passes[0]["message"]


def test_no_timestamp_under_journald(mirrored: tuple[Path, Path]) -> None:
    cfg, base = mirrored
    log = base / "journal.log"
    log.touch()
    st = os.stat(log)
    text = _run(cfg, stderr_file=log, env_extra={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    lines = text.splitlines()
    assert lines and all(re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) wandb_mirror", ln) for ln in lines), lines[:3]
    # elsewhere (a file that is not the journal) the time leads each line
    text = _run(cfg, stderr_file=base / "plain.log")
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", ln) for ln in text.splitlines())


def test_status_reads_well(mirrored: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cfg, base = mirrored
    _run(cfg, stderr_file=base / "s.log")
    monkeypatch.chdir(base)
    assert main(["status", "--store", "mirror"]) == 0
    out = capsys.readouterr().out
    assert f"store      {base / 'mirror'}" in out  # absolute, though given relative
    assert not re.search(r"\b1 (sweeps|reports|rows|errors|requests|items|objects)\b", out)
    assert re.search(r"\b0 items\b|\b\d+ items?\b", out)
    assert main(["status", "--store", "mirror", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["store"] == str(base / "mirror")
    assert {"reports", "reference_entries", "objects_referenced"} <= set(s)
    lp = s["last_pass"]
    assert isinstance(lp["requests"], int) and lp["requests"] > 0
    assert "requests" not in lp["stats"] and "requests_pass" not in lp["stats"]  # one requests figure


def test_root_on_a_store_owned_by_another_user_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from wandb_mirror.store import Store

    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tmp_path / "store"
    Store(path).close()
    caplog.clear()
    with Store(path):
        pass
    assert "running as root" not in caplog.text  # root's own store: nothing to say
    os.chown(path, 65534, 65534)
    with Store(path, create=False, readonly=True):
        pass
    assert "running as root" not in caplog.text  # reading creates nothing
    with Store(path):
        pass
    assert "running as root on store" in caplog.text and "sudo -u" in caplog.text
