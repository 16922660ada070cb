"""What the official client sees of a served store, as one comparable value (issue 11).

`client_view(api, entity)` reads every project of `entity` the way a user's script does: runs
listed in several orders, each run's config, summary, tags, notes, history (scan and sampled),
system metrics, files (their bytes' md5, downloaded), logged and used artifacts; every artifact
version with its aliases and manifest entries, and what each alias resolves to; sweeps and reports
in the order the client lists them. Two servers holding the same data give equal views.

Normalised only where the client itself is not deterministic or not exact: NaN (never equal to
itself) reads "NaN", and a history row's keys holding None are dropped (the client fills keys a
row lacks with None when it reads a parquet export, and leaves them out when it pages HistoryPage).
URLs and the server's own host are never part of the view.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Any

# W&B lists runs newest first unless told; a tie in the asked order is where stores can differ
RUN_ORDERS = ("-created_at", "+created_at")


def clean(v: Any) -> Any:
    """NaN as "NaN", recursively (NaN != NaN would make equal views unequal)."""
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def history_rows(rows: Any) -> list[dict[str, Any]]:
    return clean([{k: v for k, v in r.items() if v is not None} for r in rows])


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _attempt(fn: Any) -> Any:
    """A value, or the kind of error the client raised: both servers must agree on either."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the error's type is the observation
        return f"error: {type(e).__name__}"


def run_view(run: Any, scratch: Path, *, history: bool = True) -> dict[str, Any]:
    files = {}
    for f in run.files():
        got = f.download(root=str(scratch / run.id), replace=True)
        got.close()
        files[f.name] = {"size": f.size, "md5": f.md5, "bytes_md5": _md5(Path(got.name))}
    view = {
        "name": run.name,
        "state": run.state,
        "created_at": run.created_at,
        "config": clean(dict(run.config)),
        "summary": clean(dict(run.summary._json_dict)),
        "tags": list(run.tags),
        "notes": run.notes,
        "group": run.group,
        "job_type": run.job_type,
        "sweep": run.sweep.name if run.sweep else None,
        "last_step": run.lastHistoryStep,
        "files": files,
        "file_order": list(files),  # dicts compare without order; listings must agree on it too
        "logged": _attempt(lambda: [f"{a.name}:{a.state}" for a in run.logged_artifacts()]),
        "used": _attempt(lambda: [a.name for a in run.used_artifacts()]),
    }
    if history:
        # use_cache=False: the client caches history exports by entity/project/run, whatever the server.
        # One page spanning every step: the client pays one call per page_size steps, rows or not, and a
        # run at steps 0..3e9 would take it an hour at the default 1,000 (docs/history.md, sparse steps).
        span = max(1000, (run.lastHistoryStep or 0) + 1)
        view["history"] = history_rows(run.scan_history(page_size=span, use_cache=False))
        view["sampled"] = clean(run.history(samples=500, pandas=False))
        view["system"] = clean(run.history(stream="system", samples=1_000_000, pandas=False))
        # sampledHistory by keys: only rows holding every asked key (two keys: rows must hold both)
        keys = sorted(k for k in (run.history_keys or {}).get("keys", {}) if not k.startswith("_"))[:2]
        view["sampled_by_keys"] = clean(run.history(keys=keys, samples=500, pandas=False)) if keys else None
    view["console"] = _attempt(lambda: [(ln.number, ln.level, ln.timestamp, ln.content) for ln in run.console_logs()])
    return view


def artifacts_view(api: Any, path: str, scratch: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"order": []}  # types, collections and versions as the client lists them
    for t in api.artifact_types(path):
        for coll in t.collections():
            versions, aliases = {}, set()
            for a in coll.artifacts():
                manifest = a.manifest.to_manifest_json()
                root = Path(a.download(root=str(scratch / "artifacts" / coll.name / a.version)))
                aliases.update(a.aliases)
                versions[a.version] = {
                    "state": a.state,
                    "digest": a.digest,
                    "aliases": sorted(a.aliases),
                    "metadata": clean(a.metadata),
                    "description": a.description,
                    "created_at": a.created_at,
                    "entries": {p: (e["digest"], e.get("size"), _md5(root / p)) for p, e in manifest["contents"].items()},
                    "logged_by": _attempt(lambda a=a: a.logged_by().id if a.logged_by() else None),
                    "used_by": _attempt(lambda a=a: sorted(r.id for r in a.used_by())),
                }
            # versions the listing leaves out (drafts, deleted ones) must fail alike when asked for by name
            top = max((int(v[1:]) for v in versions), default=-1) + 3
            resolved = {al: _attempt(lambda al=al, c=coll.name: api.artifact(f"{path}/{c}:{al}").version)
                        for al in sorted(aliases | {"latest"} | {f"v{i}" for i in range(top)})}
            out[f"{t.name}/{coll.name}"] = {"description": coll.description, "versions": versions,
                                            "resolved": resolved}
            out["order"].append([t.name, coll.name, list(versions)])
    return out


def project_view(api: Any, entity: str, project: str, scratch: Path, *, history: bool = True) -> dict[str, Any]:
    path = f"{entity}/{project}"
    runs = {r.id: run_view(r, scratch, history=history) for r in api.runs(path, per_page=1000)}
    keys = sorted({("config", k) for r in runs.values() for k in r["config"]}
                  | {("summary_metrics", k) for r in runs.values() for k in r["summary"] if not k.startswith("_")})
    orders = [*RUN_ORDERS, *(f"{sign}{where}.{k}" for where, k in keys[:6] for sign in "+-")]
    p = api.project(project, entity=entity)
    return {
        "description": p.description if hasattr(p, "description") else None,
        "runs": runs,
        "run_orders": {o: [r.id for r in api.runs(path, order=o, per_page=1000)] for o in orders},
        "artifacts": artifacts_view(api, path, scratch),
        "sweeps": [{"name": s.name, "state": s.state, "config": clean(dict(s.config)),
                    "runs": sorted(r.id for r in s.runs), "best": _attempt(lambda s=s: getattr(s.best_run(), "id", None))}
                   for s in p.sweeps()],
        "reports": [{"name": r.name, "display_name": r.display_name, "description": r.description,
                     "spec": clean(r.spec), "updated_at": r.updated_at} for r in api.reports(path)],
    }


def client_view(api: Any, entity: str, *, history: bool = True) -> dict[str, Any]:
    """Every project of `entity` as the official client `api` sees it."""
    with tempfile.TemporaryDirectory(prefix="client-view-") as tmp:
        return {p.name: project_view(api, entity, p.name, Path(tmp), history=history)
                for p in sorted(api.projects(entity), key=lambda p: p.name)}


def diff(a: Any, b: Any, where: str = "", limit: int = 20) -> list[str]:
    """Readable differences (the first `limit`) between two views: `a` upstream, `b` the mirror."""
    out: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'the mirror' if k in b else 'upstream'}")
            else:
                out += diff(a[k], b[k], f"{where}/{k}", limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a != b:
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{where}[{i}]", limit)
    elif a != b:
        out.append(f"{where}: upstream {str(a)[:200]} != mirror {str(b)[:200]}")
    return out[:limit]
