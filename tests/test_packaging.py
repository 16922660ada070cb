"""Packaging: every subpackage ships (pyproject lists packages explicitly, to map plugins/)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = {"wandb_mirror"} | {
        "wandb_mirror." + ".".join(p.parent.relative_to(ROOT / "src" / "wandb_mirror").parts)
        for p in (ROOT / "src" / "wandb_mirror").rglob("__init__.py") if p.parent != ROOT / "src" / "wandb_mirror"
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert conf["package-dir"]["wandb_mirror_plugins"] == "plugins"
