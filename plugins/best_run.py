"""best_run: track the best finished run of every sweep; optionally tag it, alias its artifact, copy its files.

Configuration (`[plugins.best_run]`):

    enabled = true
    dry_run = false
    tag = "best"                  # tag the best run upstream and untag the previous best ("" = off)
    source = "summary"            # "summary": the metric's summary value; "history": its min (minimize)
                                  # or max (maximize) over the run's mirrored history
    artifact_collection = "model" # add `artifact_alias` to the newest version of this collection the
    artifact_alias = "best"       #   best run logged (both needed; W&B moves the alias off other versions)
    materialize_dir = "/srv/best" # keep DIR/ENTITY/PROJECT/SWEEP/ = the best run's files (hard links
                                  #   into the store where possible, copies otherwise)

The best run is chosen among the sweep's runs in state "finished" (crashed, failed, killed and
running runs never count) by the sweep's metric and goal (`metric: {name, goal}` of the sweep
config; goal defaults to minimize). Runs without a finite value are skipped; ties go to the
earliest run. The choice is recorded in the catalog (the `best_runs` view) whether or not
upstream writes are enabled; upstream writes happen only when the choice changes (or when a choice
made in dry-run is first applied for real).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from wandb_mirror.hooks import hookimpl, safe_relpath, utcnow

PLUGIN_NAME = "best_run"
WRITES = "upstream"  # tags (and, with materialize_dir, files)
# [plugins.best_run] keys and their defaults (config.example.toml shows the same)
CONFIG: dict[str, Any] = {
    "tag": "best",
    "source": "summary",
    "artifact_collection": "",
    "artifact_alias": "",
    "materialize_dir": "",
}
log = logging.getLogger("wandb_mirror.plugins.best_run")


@hookimpl
def check_config(config: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("tag", "artifact_collection", "artifact_alias", "materialize_dir"):
        if key in config and not isinstance(config[key], str):
            problems.append(f"{key}: expected a string, got {config[key]!r}")
    if config.get("source", "summary") not in ("summary", "history"):
        problems.append(f"source: expected \"summary\" or \"history\", got {config.get('source')!r}")
    if bool(config.get("artifact_collection")) != bool(config.get("artifact_alias")):
        problems.append("artifact_alias: artifact_collection and artifact_alias go together (set both or neither)")
    return problems


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def run_value(store, run, metric: str, goal: str, source: str) -> float | None:
    """The run's value of `metric`: from its summary, or its best value over history."""
    if source == "history":
        best = None
        for row in store.history(run, keys=[metric]):
            v = _finite(row.get(metric))
            if v is None:
                continue
            if best is None or (v < best if goal == "minimize" else v > best):
                best = v
        return best
    return _finite(run.summary_values().get(metric))


def choose(store, sweep, source: str) -> tuple[Any, float | None, str | None, str]:
    """(best run or None, its value, metric, goal) for a sweep."""
    metric, goal = sweep.metric()
    if not metric:
        return None, None, None, goal
    best, best_v = None, None
    for run in store.runs(sweep=sweep, states=["finished"]):
        v = run_value(store, run, metric, goal, source)
        if v is None:
            continue
        if best_v is None or (v < best_v if goal == "minimize" else v > best_v):
            best, best_v = run, v
    return best, best_v, metric, goal


def _key(sweep) -> str:
    return f"best:{sweep.entity}/{sweep.project}/{sweep.name}"


def evaluate(sweep, upstream, config: dict[str, Any], store) -> None:
    source = config.get("source", "summary")
    best, value, metric, goal = choose(store, sweep, source)
    key = _key(sweep)
    prev = store.state.get(key)
    if best is None:
        return
    if prev and prev.get("run") == best.run_id and prev.get("value") == value:
        if prev.get("applied") or upstream.dry_run:
            return  # nothing new; a choice made in dry-run is applied once writes are enabled
    prev_run_name = prev.get("run") if prev else None
    previous = prev_run_name if prev_run_name != best.run_id else (prev or {}).get("previous_run")
    log.info("best_run: sweep %s: best run %s (%s %s = %s)", sweep.path, best.run_id, goal, metric, value)

    tag = config.get("tag") or ""
    if tag:
        upstream.add_tags(best, tag)
        if previous and previous != best.run_id:
            old = store.run(sweep.entity, sweep.project, previous)
            if old is not None:
                upstream.remove_tags(old, tag)
    artifact_name = None
    if config.get("artifact_collection") and config.get("artifact_alias"):
        arts = store.artifacts(run=best, collection=config["artifact_collection"])
        if arts:
            art = arts[-1]  # the newest version this run logged
            upstream.add_alias(art, config["artifact_alias"])
            artifact_name = art.qualified_name
        else:
            log.warning("best_run: run %s logged no version of %r; no alias set", best.path, config["artifact_collection"])
    if config.get("materialize_dir"):
        materialize(store, best, Path(config["materialize_dir"]).expanduser() / sweep.entity / sweep.project / sweep.name)

    store.state.set(key, {
        "entity": sweep.entity, "project": sweep.project, "sweep": sweep.name, "run": best.run_id,
        "metric": metric, "goal": goal, "value": value, "source": source,
        "previous_run": previous if previous != best.run_id else None,
        "artifact": artifact_name,
        "chosen_at": (prev or {}).get("chosen_at") if prev and prev.get("run") == best.run_id
        else utcnow(),
        "applied": not upstream.dry_run,
    })


MARKER = ".wandb-run"  # materialize's own file in the directory: the run's path


def _free(root: Path, rel: str) -> bool:
    if (root / rel).exists():
        return False
    return all(not (root / p).exists() or (root / p).is_dir() for p in Path(rel).parents)


def materialize(store, run, dest: Path) -> None:
    """Make `dest` hold exactly the run's files, swapped in whole (build aside, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp"
    old = dest.parent / f".{dest.name}.old"
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    tmp.mkdir()
    linked = copied = 0
    for f in store.files(run):
        # names are kept exactly as upstream has them (`a\\b`, `a//b`, control characters...); on
        # disk each gets fsnames' one-to-one safe path, never one outside `dest`
        rel = safe_relpath(f.name)
        if rel == MARKER:
            rel = f"files/{rel}"
        if not _free(tmp, rel):  # a file `d` beside a file `d/x`: the later one goes flat, with a suffix
            base = rel = rel.replace("/", "%2F")
            n = 1
            while not _free(tmp, rel):
                rel, n = f"{base}~{n}", n + 1
        if rel != f.name:
            log.info("best_run: mapped %r -> %r", f.name, rel)
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = store.object_path(f.md5)
        try:
            if src is None:  # objects in a bucket: nothing to link to
                raise OSError
            os.link(src, target)
            linked += 1
        except OSError:
            with store.open_object(f.md5) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            copied += 1
    (tmp / MARKER).write_text(f"{run.path}\n")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.exists():
        shutil.rmtree(old)
    log.info("best_run: %s holds %s (%d hard links, %d copies)", dest, run.path, linked, copied)


def _sweep_of(store, run):
    if not run.sweep_name:
        return None
    return store.sweep(run.entity, run.project, run.sweep_name)


@hookimpl
def sweep_updated(sweep, upstream, config, store):
    evaluate(sweep, upstream, config, store)


@hookimpl
def sweep_finished(sweep, upstream, config, store):
    evaluate(sweep, upstream, config, store)


@hookimpl
def run_created(run, upstream, config, store):
    if run.state == "finished" and (sweep := _sweep_of(store, run)):
        evaluate(sweep, upstream, config, store)


@hookimpl
def run_state_changed(run, old, new, upstream, config, store):
    # A run leaving "finished" (rare: resumed) or entering it can change the best.
    if "finished" in (old, new) and (sweep := _sweep_of(store, run)):
        evaluate(sweep, upstream, config, store)


@hookimpl
def run_updated(run, changes, upstream, config, store):
    if run.state == "finished" and "summary" in changes and (sweep := _sweep_of(store, run)):
        evaluate(sweep, upstream, config, store)


@hookimpl
def history_appended(run, upstream, config, store):
    if config.get("source") == "history" and run.state == "finished" and (sweep := _sweep_of(store, run)):
        evaluate(sweep, upstream, config, store)


@hookimpl
def cycle_finished(upstream, config, store):
    # Choices made while in dry-run are applied once the plugin is switched to real writes.
    if upstream.dry_run:
        return
    for rec in store.state.items("best:").values():
        if not rec.get("applied"):
            sweep = store.sweep(rec["entity"], rec["project"], rec["sweep"])
            if sweep is not None:
                evaluate(sweep, upstream, config, store)
