"""Fault points: deterministic crash and disk-failure injection, for the reliability tests.

The store calls `hit(POINT)` at the moments that matter for crash safety. With nothing configured
that is one attribute check. A test configures faults through the environment variable
`WANDB_MIRROR_FAULTS` (read at import, so a subprocess inherits it) or `configure()`:

    WANDB_MIRROR_FAULTS="kill@catalog.commit#17"        SIGKILL this process at the 17th commit
    WANDB_MIRROR_FAULTS="enospc@objects.write#3+"       the 3rd object write and every later one fail
                                                        with ENOSPC (a disk that stays full)
    WANDB_MIRROR_FAULTS="dbfull@catalog.begin#5+"       from the 5th transaction on, the catalog may not
                                                        grow (PRAGMA max_page_count: SQLite's own
                                                        "database or disk is full")

Spec: `ACTION@POINT#N` (only the N-th hit) or `ACTION@POINT#N+` (the N-th and every later one),
several separated by commas. Hits are counted per process and per point.

Actions: `kill` (SIGKILL, no cleanup: what `kill -9` or a power cut does to the process),
`enospc`, `erofs`, `eio` (raise the OSError a full, read-only or failing disk raises),
`dbfull`, `dbro` (make the catalog connection of this transaction unable to grow / to write, so
SQLite itself raises SQLITE_FULL / SQLITE_READONLY; only at `catalog.begin`).

Points:
    objects.write      before each chunk is written to a temp file
    objects.fsync      before the temp file is fsynced
    objects.publish    before the temp file is renamed into place (complete, verified, unpublished)
    objects.published  after the rename and the directory fsync (an object no row references yet)
    catalog.begin      right after BEGIN IMMEDIATE of a catalog transaction
    catalog.commit     before COMMIT
    catalog.committed  after COMMIT
    migrate.copied     after each object `migrate-store` copied

`counts()` returns how often each point was hit since `configure()` (for calibrating kill moments).
Nothing here is meant for production use; without the variable it never does anything.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

ENV = "WANDB_MIRROR_FAULTS"
POINTS = ("objects.write", "objects.fsync", "objects.publish", "objects.published",
          "catalog.begin", "catalog.commit", "catalog.committed", "migrate.copied")
ACTIONS = ("kill", "enospc", "erofs", "eio", "dbfull", "dbro")
_ERRNO = {"enospc": errno.ENOSPC, "erofs": errno.EROFS, "eio": errno.EIO}


@dataclass(frozen=True)
class Fault:
    action: str
    point: str
    n: int
    onward: bool = False

    def due(self, count: int) -> bool:
        return count >= self.n if self.onward else count == self.n


def parse(spec: str) -> list[Fault]:
    """`ACTION@POINT#N[+]`, comma-separated; ValueError names the bad part."""
    out: list[Fault] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            action, rest = part.split("@", 1)
            point, n = rest.split("#", 1)
            onward = n.endswith("+")
            count = int(n.rstrip("+"))
        except ValueError:
            raise ValueError(f"{ENV}: expected ACTION@POINT#N[+], got {part!r}") from None
        if action not in ACTIONS:
            raise ValueError(f"{ENV}: unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
        if point not in POINTS:
            raise ValueError(f"{ENV}: unknown point {point!r} (expected one of {', '.join(POINTS)})")
        if count < 1:
            raise ValueError(f"{ENV}: N must be >= 1 in {part!r}")
        out.append(Fault(action, point, count, onward))
    return out


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.counts: dict[str, int] = {}
        self.counting = False


_state = _State()
active = False  # fast path for the callers: nothing configured, nothing counted


def configure(spec: str | None = None, *, count: bool = False) -> None:
    """Set the faults (None or "": none) and reset the counters; `count` keeps counting hits."""
    global active
    faults = parse(spec) if spec else []
    with _state.lock:
        _state.faults = faults
        _state.counts = {}
        _state.counting = count
        active = bool(faults) or count


def counts() -> dict[str, int]:
    with _state.lock:
        return dict(_state.counts)


def hit(point: str, conn: Any = None) -> None:
    """A fault point was reached. Callers guard with `if faults.active:`."""
    with _state.lock:
        n = _state.counts[point] = _state.counts.get(point, 0) + 1
        due = [f for f in _state.faults if f.point == point and f.due(n)]
    for f in due:
        if f.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif f.action in _ERRNO:
            code = _ERRNO[f.action]
            raise OSError(code, f"{os.strerror(code)} (injected at {point} #{n})")
        elif conn is not None and f.action == "dbfull":
            size = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {int(size)}")
        elif conn is not None and f.action == "dbro":
            conn.execute("PRAGMA query_only = 1")


def _from_env() -> None:
    spec = os.environ.get(ENV)
    if spec:
        configure(spec)


_from_env()

__all__ = ["configure", "counts", "hit", "parse", "Fault", "POINTS", "ACTIONS", "ENV"]
