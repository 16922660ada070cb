"""The systemd units: restart policy, hardening, the read-only serve, and the example's paths
writable under ProtectSystem=strict."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wandb_mirror.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "systemd").glob("*.service"))


def keys(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in re.findall(r"^(\w+)=(.*)$", unit.read_text(), flags=re.M):
        out.setdefault(k, []).append(v)
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_hardening_and_restart_policy(unit: Path) -> None:
    k = keys(unit)
    assert k["RestartPreventExitStatus"] == ["2"]  # bad input is not retried in a loop
    for key, value in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("ProtectProc", "invisible"),
                       ("PrivateMounts", "yes"), ("SystemCallErrorNumber", "EPERM"), ("DynamicUser", "yes"),
                       ("User", "wandb-mirror")):
        assert k[key] == [value], key
    assert any("@resources" in v for v in k["SystemCallFilter"])
    assert "ProcSubset" not in k and "MemoryDenyWriteExecute" not in k  # they break pyarrow / ctypes
    if shutil.which("systemd-analyze"):
        out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
        problems = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip() and "is not executable" not in ln]
        assert problems == [], problems


def test_serve_unit_is_read_only_on_loopback() -> None:
    k = keys(ROOT / "systemd" / "wandb-mirror-serve.service")
    cmd = k["ExecStart"][0]
    assert " serve " in cmd and "--read-only" in cmd and "--host 127.0.0.1" in cmd and "--writable" not in cmd
    assert k["IPAddressDeny"] == ["any"]


def test_the_example_writes_only_where_the_unit_may() -> None:
    k = keys(ROOT / "systemd" / "wandb-mirror.service")
    writable = [Path("/var/lib") / d for d in k["StateDirectory"]] + [Path(p) for p in k.get("ReadWritePaths", [])]
    text = (ROOT / "config.example.toml").read_text()
    cfg = parse_config(text, ROOT / "config.example.toml")
    paths = [cfg.store_path, Path(cfg.plugins["export"]["out"])]
    # commented-out paths are what a user enables by uncommenting: they must work too
    paths += [Path(p) for p in re.findall(r'^#\s*materialize_dir = "([^"]+)"', text, flags=re.M)]
    assert len(paths) == 3
    for p in paths:
        assert any(p == w or w in p.parents for w in writable), p
