"""cleanup: delete upstream files of finished runs once the mirror holds a verified copy.

Configuration (`[plugins.cleanup]`):

    enabled = true
    dry_run = false
    extensions = [".png", ".ckpt"]   # required: file names ending with one of these (case-insensitive)
    min_age = "7d"                   # only files whose run finished (heartbeat) at least this long ago
    max_per_pass = 100               # at most this many deletions per daemon cycle
    run_states = ["finished"]        # which run states count as "finished" for this purpose

Event hooks only queue candidates (durably, in the plugin's state); `cycle_finished` deletes up
to `max_per_pass` of them. Before each deletion the local object is re-hashed and must match the
file's md5 and size; the upstream writer checks that again, and journals every deletion. The
mirror keeps the file: its catalog row and bytes stay, and the next pass records the upstream
deletion as a tombstone.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from wandb_mirror.hooks import hookimpl, parse_duration, parse_time

PLUGIN_NAME = "cleanup"
WRITES = "upstream"  # deletes run files upstream
# [plugins.cleanup] keys and their defaults (config.example.toml shows the same)
CONFIG: dict[str, Any] = {
    "extensions": [],  # required when enabled: nothing is deleted without it
    "min_age": "7d",
    "max_per_pass": 100,
    "run_states": ["finished"],
}
log = logging.getLogger("wandb_mirror.plugins.cleanup")


@hookimpl
def check_config(config: dict[str, Any]) -> list[str]:
    problems = []
    ext = config.get("extensions")
    if config.get("enabled") and not ext:
        problems.append("extensions: required, e.g. [\".png\"] (nothing is deleted without it)")
    if ext is not None and (not isinstance(ext, list) or not all(isinstance(e, str) and e for e in ext)):
        problems.append(f"extensions: expected a list of suffixes like [\".png\"], got {ext!r}")
    if "min_age" in config:
        try:
            parse_duration(config["min_age"])
        except ValueError as e:
            problems.append(f"min_age: {e}")
    mpp = config.get("max_per_pass", 100)
    if not isinstance(mpp, int) or isinstance(mpp, bool) or mpp < 1:
        problems.append(f"max_per_pass: expected a positive integer, got {mpp!r}")
    st = config.get("run_states", ["finished"])
    if not isinstance(st, list) or not all(isinstance(s, str) for s in st):
        problems.append(f"run_states: expected a list of run states, got {st!r}")
    return problems


def _matches(name: str, config: dict[str, Any]) -> bool:
    lower = name.lower()
    return any(lower.endswith(e.lower()) for e in config.get("extensions") or [])


def _states(config: dict[str, Any]) -> list[str]:
    return list(config.get("run_states", ["finished"]))


def _queue(store, run, file) -> None:
    key = f"{run.entity}/{run.project}/{run.run_id}/{file.name}"
    done = store.state.get(f"done:{key}")
    if done is None or done.get("md5") != file.md5:  # a re-uploaded file (new content) counts again
        store.state.set(f"pending:{key}", {"md5": file.md5})


@hookimpl
def file_mirrored(run, file, config, store):
    if run.state in _states(config) and _matches(file.name, config):
        _queue(store, run, file)


@hookimpl
def run_state_changed(run, new, config, store):
    if new in _states(config):
        for f in store.files(run):
            if _matches(f.name, config):
                _queue(store, run, f)


@hookimpl
def run_created(run, config, store):
    if run.state in _states(config):
        for f in store.files(run):
            if _matches(f.name, config):
                _queue(store, run, f)


def _age_s(run) -> float | None:
    stamp = run.heartbeat_at or run.updated_at or run.created_at
    if not stamp:
        return None
    t = parse_time(stamp)
    if t is None:
        return None
    return (datetime.now(timezone.utc) - t).total_seconds()


@hookimpl
def cycle_finished(upstream, config, store):
    if not upstream.dry_run:
        # Candidates only journaled in dry-run earlier are deleted for real now.
        for key, val in store.state.items("done:").items():
            if val.get("dry_run"):
                store.state.delete(key)
                store.state.set("pending:" + key[len("done:"):], {"md5": val.get("md5")})
    limit = int(config.get("max_per_pass", 100))
    min_age = parse_duration(config.get("min_age", CONFIG["min_age"]))
    states = _states(config)
    deleted = 0
    for key in store.state.items("pending:"):
        if deleted >= limit:
            break
        path = key[len("pending:"):]
        entity, project, rest = path.split("/", 2)
        run_name, _, file_name = rest.partition("/")
        run = store.run(entity, project, run_name)
        file = store.file(run, file_name) if run is not None else None
        if run is None or file is None or file.tombstoned_at or run.state not in states or not _matches(file_name, config):
            store.state.delete(key)  # gone upstream already, no longer finished, or no longer matching
            continue
        if min_age and ((age := _age_s(run)) is None or age < min_age):
            continue  # stays queued until old enough
        if not store.verify_object(file.md5, file.size):
            log.error("cleanup: local copy of %s does not verify; NOT deleting it upstream", path)
            store.state.delete(key)  # the sync engine re-fetches it; a new file_mirrored event re-queues it
            continue
        upstream.delete_file(run, file)
        store.state.delete(key)
        store.state.set(f"done:{path}", {"md5": file.md5, "dry_run": upstream.dry_run})
        deleted += 1
    if deleted:
        log.info("cleanup: %s %d upstream file(s)", "would delete" if upstream.dry_run else "deleted", deleted)
