"""Turning what goes wrong when a store is opened or created into one line and its exit code."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MirrorError, UsageError, WorkFailed
from .failures import disk_failure

if TYPE_CHECKING:
    from .catalog import Catalog

SIDE_FILES = ("-wal", "-shm", ".migrate-lock")
# a path that cannot hold a store: the user must pick another one (exit 2)
_BAD_PATH = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.ENOTDIR: "a file is in the way", errno.EEXIST: "a file is in the way",
             errno.ENOENT: "no such directory (a virtual filesystem such as /proc or /sys cannot hold a store)",
             errno.ENAMETOOLONG: "the path is too long"}


class StoreUnusable(WorkFailed):
    """The store's disk is full, read-only or failing (exit 1: the work could not be done)."""


def open_error(path: Path, e: BaseException, *, creating: bool) -> MirrorError:
    what = "created" if creating else "opened"
    disk = disk_failure(e)
    if isinstance(e, OSError) and e.errno in _BAD_PATH:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
        return UsageError(f"store {path} cannot be {what}: {_BAD_PATH[e.errno]}{where}")
    if disk and "unable to open" not in disk:
        return StoreUnusable(f"store {path} cannot be {what}: {disk}; nothing was left half-made"
                             if creating else f"store {path} cannot be {what}: {disk}")
    if isinstance(e, sqlite3.DatabaseError) and not disk:
        return UsageError(f"{path / 'catalog.db'} is not a wandb-mirror catalog: {e}")
    reason = getattr(e, "strerror", None) or str(e)
    return StoreUnusable(f"store {path} cannot be {what}: {reason}")


def upgrade_for_reader(path: Path) -> None:
    """A read-only command on a store an older version made brings its schema up to date first, as
    any writer would (the migration changes names and views, never mirrored data): otherwise `serve`
    or `status` after an upgrade would fail on a column the old schema named differently."""
    from . import migrations
    from .catalog import Catalog

    probe = Catalog(path, readonly=True)
    try:
        tables = {r[0] for r in probe.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        behind = migrations.pending(probe.conn) if {"runs", "projects", "journal"} <= tables else 0
    except sqlite3.DatabaseError:
        return  # check_catalog says what is wrong with it
    finally:
        probe.close()
    if not behind:
        return
    try:
        Catalog(path).close()
    except (OSError, sqlite3.Error) as e:
        raise StoreUnusable(f"{path} was made by an older wandb-mirror ({behind} schema migration(s) to apply) "
                            f"and cannot be upgraded here ({e}): run `wandb-mirror sync` on it once") from None


def pg_pending(catalog: Catalog) -> int:
    from . import pg_schema

    return pg_schema.pending(catalog.conn)


def pg_open_error(url: str, e: BaseException) -> MirrorError:
    """A PostgreSQL catalog that cannot be opened: a wrong name or role is the user's to fix (exit 2),
    a server that does not answer is the environment (exit 1)."""
    from .connections import describe

    text = str(e)
    if any(m in text for m in ("does not exist", "authentication failed", "no password supplied",
                               "permission denied", "invalid", "role")):
        return UsageError(f"catalog {describe(url)} cannot be opened: {text}")
    return StoreUnusable(f"catalog {describe(url)} cannot be opened: {text}")


def check_catalog(catalog: Catalog) -> None:
    """Refuse a catalog.db that is not ours (garbage, another program's database, or a store whose
    creation was interrupted by an older version and has no tables)."""
    if catalog.url is not None:
        catalog.conn  # noqa: B018 - a server that cannot be reached is not a verdict on the catalog
    try:
        tables = {r[0] for r in catalog.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        if disk_failure(e):  # cannot be opened at all (permissions, a failing disk): not a verdict on it
            raise StoreUnusable(f"store {catalog.path.parent} cannot be opened: {e}") from None
        raise UsageError(f"{catalog.describe()} is not a wandb-mirror catalog: {e}") from None
    if not {"runs", "projects", "journal"} <= tables:
        raise UsageError(f"{catalog.describe()} is not a wandb-mirror catalog (it has none of the store's tables)")
