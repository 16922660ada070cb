"""Which failures mean the store's disk is full, read-only or failing (the environment, not a bug)."""

from __future__ import annotations

import errno
import os
import sqlite3

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
SQLITE_DISK = ("database or disk is full", "attempt to write a readonly database", "disk i/o error",
               "unable to open database file")


def disk_failure(e: BaseException) -> str | None:
    """Why `e` means the disk cannot be written (full, read-only, I/O error), else None."""
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        return e.strerror or os.strerror(e.errno or 0)
    if isinstance(e, sqlite3.Error):
        text = str(e)
        if any(m in text.lower() for m in SQLITE_DISK):
            return f"catalog: {text}"
    return None
