"""summary_backfill: repair finished runs' summaries from their mirrored history.

Configuration (`[plugins.summary_backfill]`):

    enabled = true
    dry_run = false
    run_states = ["finished"]          # which runs to repair
    missing = "last"                   # keys history has and the summary lacks get their last value
                                       #   ("last", "min", "max", or "off" to leave missing keys alone)
    [plugins.summary_backfill.rules]   # per-metric rules the summary must agree with
    loss = "min"
    accuracy = "max"
    epoch = "last"

For each finished run, values are computed from the run's full mirrored history: "last" is the
last non-null value, "min"/"max" the extreme of its finite numbers. Keys starting with "_" are
only backfilled when a rule names them. If the summary lacks a key or disagrees with a rule, those
keys are set on upstream's summary as read just before the write (so edits made upstream since the
mirror's copy are kept) and the whole result is written back (as the official client does),
journaled with before and after. Running it again changes nothing: the corrected summary agrees with every rule, and a run
whose inputs did not change since the last write is not written twice while the mirror catches up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

from wandb_mirror.hooks import hookimpl

PLUGIN_NAME = "summary_backfill"
WRITES = "upstream"  # run summaries
log = logging.getLogger("wandb_mirror.plugins.summary_backfill")

RULES = ("last", "min", "max")
# [plugins.summary_backfill] keys and their defaults (config.example.toml shows the same)
CONFIG: dict[str, Any] = {
    "missing": "last",
    "run_states": ["finished"],
    "rules": {},
}


@hookimpl
def check_config(config: dict[str, Any]) -> list[str]:
    problems = []
    rules = config.get("rules", {})
    if not isinstance(rules, dict):
        problems.append(f"rules: expected a table of metric = \"last\"|\"min\"|\"max\", got {rules!r}")
    else:
        for k, v in rules.items():
            if v not in RULES:
                problems.append(f"rules.{k}: expected one of {', '.join(RULES)}, got {v!r}")
    if config.get("missing", "last") not in (*RULES, "off"):
        problems.append(f"missing: expected last, min, max or off, got {config.get('missing')!r}")
    st = config.get("run_states", ["finished"])
    if not isinstance(st, list) or not all(isinstance(s, str) for s in st):
        problems.append(f"run_states: expected a list of run states, got {st!r}")
    return problems


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if _finite(a) and _finite(b):
        return a == b
    return json.dumps(a, sort_keys=True, allow_nan=True) == json.dumps(b, sort_keys=True, allow_nan=True)


def compute(history, keys_rules: dict[str, str], default_rule: str | None) -> dict[str, Any]:
    """From history rows, the value each key should have: {key: value} for keys with a rule
    (or, with `default_rule`, for every non-underscore key)."""
    last: dict[str, Any] = {}
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for row in history:
        for k, v in row.items():
            if v is None:
                continue
            last[k] = v
            if _finite(v):
                if k not in lo or v < lo[k]:
                    lo[k] = v
                if k not in hi or v > hi[k]:
                    hi[k] = v
    out: dict[str, Any] = {}
    for k in last:
        rule = keys_rules.get(k) or (default_rule if not k.startswith("_") else None)
        if rule == "last":
            out[k] = last[k]
        elif rule == "min" and k in lo:
            out[k] = lo[k]
        elif rule == "max" and k in hi:
            out[k] = hi[k]
    return out


def corrected_summary(run, store, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(current summary, corrected summary) for a run."""
    rules = dict(config.get("rules") or {})
    missing = config.get("missing", "last")
    default_rule = None if missing == "off" else missing
    summary = run.summary_values()
    wanted = compute(store.history(run), rules, default_rule)
    new = dict(summary)
    for k, v in wanted.items():
        if k in rules:
            if k not in summary or not _same(summary[k], v):
                new[k] = v
        elif k not in summary:
            new[k] = v
    return summary, new


def repair(run, upstream, config: dict[str, Any], store) -> None:
    if run.state not in config.get("run_states", ["finished"]):
        return
    key = f"seen:{run.entity}/{run.project}/{run.run_id}"
    fingerprint = hashlib.sha256(
        json.dumps([run.summary, run.last_step, run.history_line_count, config.get("rules"), config.get("missing")],
                   sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    seen = store.state.get(key) or {}
    if seen.get("fp") == fingerprint and (not seen.get("dry_run") or upstream.dry_run):
        return  # same inputs as the last write (the mirror has not caught up yet) or nothing to do
    before, after = corrected_summary(run, store, config)
    changed = sorted(k for k in after if k not in before or not _same(before[k], after[k]))
    if changed:
        log.info("summary_backfill: %s: %s", run.path, ", ".join(changed))
        # only the keys it repairs, applied to upstream's summary as it is now: a key the user
        # added upstream since the mirror's copy stays
        upstream.update_summary(run, {k: after[k] for k in changed})
    store.state.set(key, {"fp": fingerprint, "dry_run": upstream.dry_run})


@hookimpl
def run_created(run, upstream, config, store):
    repair(run, upstream, config, store)


@hookimpl
def run_state_changed(run, upstream, config, store):
    repair(run, upstream, config, store)


@hookimpl
def run_updated(run, upstream, config, store):
    repair(run, upstream, config, store)


@hookimpl
def history_appended(run, upstream, config, store):
    repair(run, upstream, config, store)


@hookimpl
def cycle_finished(upstream, config, store):
    # Runs only journaled in dry-run get their write once the plugin is switched to real writes.
    if upstream.dry_run:
        return
    for key, seen in store.state.items("seen:").items():
        if seen.get("dry_run"):
            entity, project, name = key[len("seen:"):].split("/", 2)
            run = store.run(entity, project, name)
            if run is not None:
                repair(run, upstream, config, store)
