"""Which upstream names the mirror accepts: the one place that decides.

The promise is that the official client sees no difference between an upstream and its mirror, so
a name the official client reads is kept *exactly*, whatever it holds (a backslash, a control
character, `a//b`, a run called `..`): objects are content-addressed and a name is only a value in
the catalog. Nothing in the store is ever named by it; the commands that do write names to a
filesystem (checkout, the export plugin, best_run's materialize, `dataset`) map them through
`fsnames` and say so.

Refused (quarantined and reported) are only the names the official client itself refuses, plus
what the catalog cannot hold:

- file and artifact entry paths: what wandb's `validate_relpath` refuses (wandb 0.31,
  wandb/sdk/lib/paths.py, called by `File.download` and by every artifact entry's download): the
  path `.`, a POSIX or Windows anchor (`/x`, `C:x`, `\\x`, `//host/share`), a `..` component in its
  POSIX or its Windows reading (`../x`, `a\\..\\x`); and, the mirror's own bounds, NUL (no
  filesystem and no SQL text can hold it faithfully) and more than 1024 UTF-8 bytes;
- run ids: empty, NUL, `/` (a run path is ENTITY/PROJECT/RUN_ID), more than 256 characters.

Entity, project, sweep, artifact type and collection names keep the stricter identifier rule: W&B
itself allows only a small alphabet there, and a mirror uses them as path segments.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

MAX_PATH_BYTES = 1024   # file and artifact entry paths
MAX_RUN_ID_CHARS = 256  # W&B's own limit on a run id
MAX_ID_BYTES = 256      # entity, project, sweep, artifact type and collection names


def _not_str(name: Any) -> str | None:
    return None if isinstance(name, str) else f"not a string ({type(name).__name__})"


def file_path_problem(name: Any) -> str | None:
    """Why the mirror refuses a run file name or artifact entry path (None: keep it exactly)."""
    if (bad := _not_str(name)) is not None:
        return bad
    if "\x00" in name:
        return "contains NUL"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes"
    # wandb's LogicalPath on a POSIX host: PurePosixPath(name); "" and "./" become "."
    posix = PurePosixPath(name)
    windows = PureWindowsPath(name)
    if str(posix) == ".":
        return "names no file (empty or '.')"
    if posix.anchor or windows.anchor:
        return "absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "contains a '..' component"
    return None


def run_id_problem(name: Any) -> str | None:
    """Why the mirror refuses a run id (None: keep it exactly, `..` included)."""
    if (bad := _not_str(name)) is not None:
        return bad
    if not name:
        return "empty"
    if "\x00" in name:
        return "contains NUL"
    if "/" in name:
        return "contains '/'"
    if len(name) > MAX_RUN_ID_CHARS:
        return f"longer than {MAX_RUN_ID_CHARS} characters"
    return None


def identifier_problem(name: Any) -> str | None:
    """Why the mirror refuses an entity, project, sweep, artifact type or collection name."""
    if (bad := _not_str(name)) is not None:
        return bad
    if not name:
        return "empty name"
    if "/" in name:
        return "contains '/'"
    if name in (".", ".."):
        return "is '.' or '..'"
    if "\x00" in name:
        return "contains NUL"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains control characters"
    if "\\" in name:
        return "contains a backslash"
    if re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"longer than {MAX_ID_BYTES} bytes"
    return None
