"""Plugin delivery state and recent write-backs, for `status`, `plugins` and metrics."""

from __future__ import annotations

from typing import Any

from ..store import Store
from .journal import RESULT_KIND_SQL


def effect(info: Any) -> str:
    """What an enabled plugin does, from its module's `WRITES` ("files" or "upstream"; unset: it may
    write upstream): "off", "on, writes files only", "on, dry-run (journals upstream writes)" or
    "on, WRITES UPSTREAM"."""
    if not info.enabled:
        return "off"
    if getattr(info.module, "WRITES", None) == "files":
        return "on, writes files only"
    return "on, dry-run (journals upstream writes)" if info.dry_run else "on, WRITES UPSTREAM"


def plugin_rows(store: Store) -> list[dict[str, Any]]:
    """One row per plugin that ever had a cursor: seq, pending, failures, disabled_at, last_error."""
    last = store.catalog.scalar("SELECT COALESCE(MAX(seq), 0) FROM changes") or 0
    rows = store.catalog.query("SELECT * FROM plugin_cursors ORDER BY plugin")
    out = []
    for r in rows:
        pending = store.catalog.scalar("SELECT COUNT(*) FROM changes WHERE seq > ?", [r["seq"]]) if r["seq"] < last else 0
        out.append({
            "name": r["plugin"], "seq": r["seq"], "pending": pending, "failures": r["failures"],
            "disabled_at": r["disabled_at"], "last_error": r["last_error"], "retry_at": r.get("retry_at"),
            "updated_at": r.get("updated_at"),
        })
    return out


def plugins_status(store: Store, *, recent: int = 20) -> dict[str, Any]:
    """The `plugins` object of `status --json`.

    {"cursors": [plugin_rows...], "journal": {"ok": n, "dry_run": n, "error": n},
     "recent_writes": [{"at", "plugin", "action", "target", "dry_run", "result"} ...newest first]}
    """
    journal = {r["k"]: r["n"] for r in store.catalog.query(
        f"SELECT {RESULT_KIND_SQL} AS k, COUNT(*) AS n FROM journal GROUP BY k")}
    recent_rows = store.catalog.query(
        "SELECT at, plugin, action, target, dry_run, result FROM journal ORDER BY pk DESC LIMIT ?", [recent])
    for r in recent_rows:
        r["dry_run"] = bool(r["dry_run"])
    return {"cursors": plugin_rows(store), "journal": journal, "recent_writes": recent_rows}
