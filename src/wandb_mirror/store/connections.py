"""Which engine a catalog reference names, and a connection to it.

A catalog is a SQLite file (a path) or a PostgreSQL database (`postgresql://USER@HOST:PORT/DB`;
the password comes from libpq's usual places: PGPASSWORD, ~/.pgpass, PGSERVICE). Both connections
speak sqlite3's interface (store/pg.py), so everything above this module has one code path.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

SCHEMES = ("postgresql://", "postgres://")


def is_postgres(ref: str | Path | None) -> bool:
    return isinstance(ref, str) and ref.startswith(SCHEMES)


def describe(ref: str | Path) -> str:
    """A catalog reference fit for messages and logs: a URL never shows a password."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", str(ref)) if is_postgres(ref) else str(ref)


def connect_postgres(url: str, *, readonly: bool = False, implicit: bool = True,
                     application_name: str | None = None) -> Any:
    from .pg import PgConnection

    return PgConnection(url, readonly=readonly, implicit=implicit, application_name=application_name)


def connect(ref: str | Path, *, readonly: bool = False, implicit: bool = True) -> Any:
    """A connection to the catalog `ref` names (sqlite3's, or the PostgreSQL one dressed as it).

    SQLite connections here are the server's kind: no implicit transactions when `implicit` is
    False (isolation_level None), WAL for writers."""
    if is_postgres(ref):
        return connect_postgres(str(ref), readonly=readonly, implicit=implicit)
    path = Path(ref)
    iso: Any = "" if implicit else None
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=iso,
                               timeout=30)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=iso, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
