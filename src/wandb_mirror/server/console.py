"""A run's console output: `Run.logLines` as the official client's `run.console_logs()` reads it.

`wandb-core` sends two documents: RunConsoleLogPage (`logLines(first, after,
useImprovedPagination: true)`, paged by an opaque cursor) and RunConsoleLogTail (`logLines(last)`,
one request). Lines are served by their number, oldest first; a tail is capped like W&B's.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from . import nodes as N

TAIL_CAP = 10_000


def line_count(conn: sqlite3.Connection, run_pk: int) -> int:
    return conn.execute("SELECT count(*) FROM console_lines WHERE run_pk = ?", [run_pk]).fetchone()[0]


def log_lines(conn: sqlite3.Connection, run_pk: int, *, first: int | None = None, after: str | None = None,
              last: int | None = None) -> dict[str, Any]:
    sql, args = "SELECT number, timestamp, level, label, line FROM console_lines WHERE run_pk = ?", [run_pk]
    if last is not None:
        rows = conn.execute(sql + " ORDER BY number DESC LIMIT ?", [*args, min(max(int(last), 0), TAIL_CAP)]).fetchall()
        rows.reverse()
        has_next = False
    else:
        start = N.decode_cursor(after, "loglines")
        if start is not None:
            sql += " AND number > ?"
            args.append(int(start))
        sql += " ORDER BY number"
        if first is not None:
            sql += f" LIMIT {max(int(first), 0) + 1}"
        rows = conn.execute(sql, args).fetchall()
        has_next = first is not None and len(rows) > int(first)
        rows = rows[: int(first)] if first is not None else rows
    page = [({"number": r["number"], "timestamp": r["timestamp"], "level": r["level"] or "",
              "label": r["label"] or "", "line": r["line"]}, N.encode_cursor("loglines", r["number"])) for r in rows]
    return N.connection(page, has_next)
