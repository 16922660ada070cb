"""What a store holds and how its last pass went (for `status`, the daemon and metrics)."""

from __future__ import annotations

from typing import Any

from . import jsontext, times
from .hooks.plugin_status import plugins_status
from .store import Store
from .store.claims import work_status


def store_status(store: Store) -> dict[str, Any]:
    cat, objs = store.catalog, store.objects
    by_state = {r["state"] or "unknown": r["n"] for r in cat.query(
        "SELECT state, COUNT(*) AS n FROM runs WHERE tombstoned_at IS NULL GROUP BY state ORDER BY state")}
    n_objects = 0
    physical = 0
    for obj in objs.iter_objects():
        n_objects += 1
        physical += obj.size
    logical = (cat.scalar("SELECT COALESCE(SUM(size), 0) FROM file_versions") or 0) + (
        cat.scalar("SELECT COALESCE(SUM(size), 0) FROM artifact_files WHERE md5 IS NOT NULL") or 0) + (
        cat.scalar("SELECT COALESCE(SUM(size), 0) FROM history_segments") or 0)
    last = cat.query_one("SELECT * FROM passes ORDER BY id DESC LIMIT 1")
    last_ok = cat.query_one("SELECT * FROM passes WHERE status IN ('ok', 'errors') ORDER BY id DESC LIMIT 1")
    now = times.now().timestamp()

    def seconds_between(a: str | None, b: str | None) -> float | None:
        ea, eb = times.epoch(a), times.epoch(b)
        return None if ea is None or eb is None else round(eb - ea, 3)

    last_pass = None
    if last:
        stats = jsontext.loads(last["stats"], {}) or {}
        retries = (stats.get("requests_pass") or {}).get("retries", 0)
        # one request figure: the pass's own (the engine also records its client's cumulative counters)
        stats = {k: v for k, v in stats.items() if k not in ("requests", "requests_pass")}
        last_pass = {
            "id": last["id"], "status": last["status"], "started_at": last["started_at"],
            "finished_at": last["finished_at"], "duration_seconds": seconds_between(last["started_at"], last["finished_at"]),
            "requests": last["requests"], "retries": retries, "stats": stats, "worker": last.get("worker"),
            "errors": jsontext.loads(last["errors"], []) or [],
        }
    lag = None
    finished = times.epoch(last_ok["finished_at"]) if last_ok else None
    if finished is not None:
        lag = round(now - finished, 1)
    plugins = plugins_status(store)
    work = work_status(cat)
    referenced, _ = cat.referenced_totals()
    return {
        "store": str(store.path.absolute()),
        "catalog": store.catalog.describe(),
        "objects_at": store.objects.describe(),
        "projects": cat.scalar("SELECT COUNT(*) FROM projects WHERE tombstoned_at IS NULL"),
        "runs": {"total": sum(by_state.values()), "by_state": by_state,
                 "tombstoned": cat.scalar("SELECT COUNT(*) FROM runs WHERE tombstoned_at IS NOT NULL")},
        "history_rows": store.history.count(),
        "history_segments": cat.scalar("SELECT COUNT(*) FROM history_segments"),
        "event_rows": cat.scalar("SELECT COUNT(*) FROM events"),
        "files": cat.scalar("SELECT COUNT(*) FROM files"),
        "artifacts": cat.scalar("SELECT COUNT(*) FROM artifacts"),
        "sweeps": cat.scalar("SELECT COUNT(*) FROM sweeps"),
        "reports": cat.scalar("SELECT COUNT(*) FROM reports"),
        # manifest entries that point outside W&B (s3://, gs://, https://...): recorded, never fetched
        "reference_entries": cat.scalar("SELECT COUNT(*) FROM artifact_files WHERE md5 IS NULL"),
        "objects": n_objects,
        "objects_referenced": referenced,
        "bytes": physical,
        "logical_bytes": logical,
        "dedup_ratio": round(logical / physical, 3) if physical else None,
        "quarantined": cat.scalar("SELECT COUNT(*) FROM quarantine"),
        "changes": cat.scalar("SELECT COUNT(*) FROM changes"),
        "write_backs": plugins["journal"],
        "plugins": plugins,
        "last_pass": last_pass,
        "lag_seconds": lag,
        "work": work,
    }


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def format_status(s: dict[str, Any]) -> str:
    runs = s["runs"]
    states = ", ".join(f"{n} {k}" for k, n in runs["by_state"].items()) or "none"
    unreferenced = s["objects"] - s["objects_referenced"]
    lines = [
        f"store      {s['store']}",
        f"projects   {s['projects']}",
        f"runs       {runs['total']} ({states}); {runs['tombstoned']} tombstoned",
        f"history    {plural(s['history_rows'], 'row')}, {plural(s['event_rows'], 'system-metrics sample')}",
        f"files      {plural(s['files'], 'run file')}, {plural(s['artifacts'], 'artifact version')}, "
        f"{plural(s['sweeps'], 'sweep')}, {plural(s['reports'], 'report')}",
        f"objects    {plural(s['objects'], 'object')}, {_human(s['bytes'])} on disk, {_human(s['logical_bytes'])} "
        "referenced" + (f", dedup {s['dedup_ratio']:.2f}x" if s["dedup_ratio"] else "")
        + (f"; {unreferenced} unreferenced (gc removes them)" if unreferenced > 0 else ""),
        f"quarantine {plural(s['quarantined'], 'item')}",
    ]
    if s["reference_entries"]:
        lines.append(f"references {plural(s['reference_entries'], 'artifact entry', 'artifact entries')} "
                     f"{'points' if s['reference_entries'] == 1 else 'point'} outside W&B: recorded, not fetched")
    wb = s["write_backs"]
    if wb:
        lines.append("write-back " + ", ".join(f"{n} {k}" for k, n in sorted(wb.items())))
    for c in s["plugins"]["cursors"]:
        state = f"DISABLED since {c['disabled_at']}: {c['last_error']}" if c["disabled_at"] else (
            f"{plural(c['pending'], 'event')} pending" + (f", {plural(c['failures'], 'failure')}" if c["failures"] else ""))
        lines.append(f"plugin     {c['name']}: {state}")
    lp = s["last_pass"]
    if lp:
        dur = f"{lp['duration_seconds']:.1f}s" if lp["duration_seconds"] is not None else "in progress"
        lines.append(f"last pass  #{lp['id']} {lp['status']} at {lp['started_at']}, {dur}, "
                     f"{plural(lp['requests'] or 0, 'request')}, {plural(len(lp['errors']), 'error')}")
        for e in lp["errors"][:5]:
            lines.append(f"           error: {e}")
    else:
        lines.append("last pass  never")
    if s["lag_seconds"] is not None:
        lines.append(f"lag        {s['lag_seconds']:.0f}s since the last completed pass")
    work = s.get("work") or {}
    if work.get("workers"):
        lines.append(f"workers    {len(work['workers'])} alive: {', '.join(work['workers'])}")
    ran = sorted({u["last_worker"] for u in (work.get("units") or {}).values() if u["last_worker"]})
    if len(ran) > 1:
        lines.append(f"shared     the last passes of {plural(len(work['units']), 'unit')} ran on {', '.join(ran)}")
    return "\n".join(lines)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
