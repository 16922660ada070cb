"""How to run this same wandb-mirror again, for the commands a command suggests next.

`wandb-mirror` when that name on PATH is this program; else the path it was started by (a
checkout's `.venv/bin/wandb-mirror`), relative to the working directory when under it; else
`python -m wandb_mirror.cli` with this interpreter. Hints printed that way run as printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def program() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if Path(argv0).name == "wandb-mirror":
        me = Path(argv0).absolute()
        on_path = shutil.which("wandb-mirror")
        if on_path and os.path.realpath(on_path) == os.path.realpath(me):
            return "wandb-mirror"
        try:
            rel = me.relative_to(Path.cwd())
        except ValueError:
            return shlex.quote(str(me))
        return shlex.quote(str(rel) if "/" in str(rel) else f"./{rel}")
    return f"{shlex.quote(sys.executable)} -m wandb_mirror.cli"


def command(*args: str | Path) -> str:
    """A shell line running wandb-mirror with `args` (each quoted as needed)."""
    return " ".join([program(), *(shlex.quote(str(a)) for a in args)])
