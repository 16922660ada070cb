"""`serve --include-deleted`: what upstream deleted, served as if it were live.

Every read of the server hides tombstoned rows (`tombstoned_at IS NULL`). Rather than teach each
query a second mode, a connection of an include-deleted server gets TEMP views named like the
tables that carry tombstones, each the table with `tombstoned_at` always NULL: SQLite resolves an
unqualified name in the temp schema first, so every query sees the deleted rows as live, and the
views are simple projections, so the tables' indexes still serve them. Such a server is read-only
(a view cannot be written, and serving deleted data as live must not change the store).
"""

from __future__ import annotations

import sqlite3


def show_deleted(conn: sqlite3.Connection) -> None:
    """Shadow every table that carries tombstones (whichever migrations added them)."""
    tables = [r[0] for r in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]
    for table in tables:
        cols = [r[1] for r in conn.execute(f'PRAGMA main.table_info("{table}")')]
        if "tombstoned_at" not in cols:
            continue
        select = ", ".join("NULL AS tombstoned_at" if c == "tombstoned_at" else f'"{c}"' for c in cols)
        conn.execute(f'CREATE TEMP VIEW IF NOT EXISTS "{table}" AS SELECT {select} FROM main."{table}"')
