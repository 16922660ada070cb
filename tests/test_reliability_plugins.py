"""Reliability 7: plugins cannot corrupt or stall the mirror.

The real daemon (sync engine against the real server, plugins from a plugins directory) runs
three cycles with upstream activity in between, alongside three misbehaving plugins:
- `raiser` raises on every event;
- `hanger` sleeps far past its hook timeout, then tries to write upstream;
- `sneaky` stays in dry-run (the default) and tries every kind of upstream write;
plus `recorder`, a well-behaved plugin. Every cycle completes on schedule, the store verifies and
equals the upstream, the upstream is untouched (no mutation reached the server), the good plugin
gets every event exactly in order, the bad ones are disabled with their reason, and the dry-run
writes are journaled as such.

tests/test_plugins_delivery.py covers the dispatcher's retry, timeout and disable mechanics with
synthetic events; this runs them inside the daemon with a real pass.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from reliability_support import (
    KEY,
    RECORDER,
    expected_lines,
    grow_upstream,
    mirror_state,
    seed_store,
    state_diff,
    store_problems,
    verify_deep,
    write_config,
)

from wandb_mirror.store import Store

RAISER = '''from wandb_mirror.hooks import hookimpl


@hookimpl
def run_created(run):
    raise RuntimeError("raiser always fails")


@hookimpl
def cycle_finished(stats):
    raise ValueError("and at the end of every cycle too")
'''

HANGER = '''import time

from wandb_mirror.hooks import hookimpl


@hookimpl
def run_created(run, upstream):
    time.sleep(30)
    upstream.add_tags(run, "too-late")
'''

SNEAKY = '''from wandb_mirror.hooks import hookimpl


@hookimpl
def run_created(run, upstream, store):
    upstream.add_tags(run, "sneaky")
    upstream.remove_tags(run, *run.tag_list())
    upstream.set_summary(run, {"sneaky": 1})
    upstream.set_notes(run, "sneaky was here")
    for f in store.files(run):
        upstream.delete_file(run, f)
'''


def test_misbehaving_plugins_neither_corrupt_nor_stall_the_mirror(tmp_path: Path, start_mirror_server,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb_mirror.daemon import Daemon

    up = seed_store(tmp_path / "up")
    server = start_mirror_server(up, writable=True)  # writable: a write that got through would show
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, text in (("raiser", RAISER), ("hanger", HANGER), ("sneaky", SNEAKY), ("recorder", RECORDER)):
        (plugins / f"{name}.py").write_text(text)
    cfg = write_config(tmp_path, server.url, extra=(
        '[daemon]\nplugins_dir = "plugins"\npoll_interval = "300ms"\nhook_timeout = "500ms"\nmax_failures = 2\n'
        'retry_backoff = "0s"\nstop_grace = "200ms"\n\n'
        "[plugins.raiser]\nenabled = true\ndry_run = false\n\n[plugins.hanger]\nenabled = true\ndry_run = false\n\n"
        '[plugins.sneaky]\nenabled = true\n\n[plugins.recorder]\nenabled = true\nout = "events"\n'))
    monkeypatch.setenv("WANDB_API_KEY", KEY)

    cycles: list[float] = []
    from wandb_mirror.daemon.syncer import EngineRunner

    def sync_pass(config, store, stop):
        cycles.append(time.monotonic())
        if len(cycles) > 1:
            grow_upstream(up, len(cycles))  # upstream activity between cycles
        runner = EngineRunner(config, store)
        try:
            return runner(config, store, stop)
        finally:
            runner.close()

    server.reset_log()
    t0 = time.monotonic()
    d = Daemon(cfg, install_signals=False, watch=False, max_cycles=3, sync_pass=sync_pass)
    assert d.run() == 0
    took = time.monotonic() - t0
    assert len(cycles) == 3 and d.last_outcome.status == "ok"
    assert took < 15, f"the daemon took {took:.1f}s: a plugin stalled it"

    mirror = tmp_path / "mirror"
    assert store_problems(mirror) == [] and verify_deep(mirror) == []
    assert state_diff(mirror_state(up), mirror_state(mirror)) == []
    mutations = [e for e in server.request_log() if e["operation"] in (
        "UpsertBucket", "DeleteFiles", "AddAliases", "DeleteAliases", "upsertBucket", "deleteFiles")]
    assert mutations == [], mutations  # nothing was written upstream
    with Store(up, create=False) as s:
        assert s.catalog.scalar("SELECT COUNT(*) FROM runs WHERE tags LIKE '%sneaky%' OR tags LIKE '%too-late%' "
                                "OR notes = 'sneaky was here' OR summary LIKE '%sneaky%'") == 0
        assert s.catalog.scalar("SELECT COUNT(*) FROM files WHERE tombstoned_at IS NOT NULL") == 0

    with Store(mirror, create=False) as s:
        cur = {r["plugin"]: r for r in s.catalog.query("SELECT * FROM plugin_cursors")}
        last = s.catalog.scalar("SELECT MAX(seq) FROM changes")
        assert cur["recorder"]["seq"] == last and cur["recorder"]["disabled_at"] is None
        assert cur["sneaky"]["seq"] == last and cur["sneaky"]["disabled_at"] is None
        assert cur["raiser"]["disabled_at"] and "raiser always fails" in cur["raiser"]["last_error"]
        assert cur["hanger"]["disabled_at"] and ("timed out" in cur["hanger"]["last_error"]
                                                 or "still running" in cur["hanger"]["last_error"])
        journal = s.catalog.query("SELECT plugin, action, dry_run, result FROM journal")
        sneaky = [j for j in journal if j["plugin"] == "sneaky"]
        assert sneaky and all(j["dry_run"] == 1 and j["result"] in ("dry-run", "unchanged") or
                              j["result"].startswith("refused") for j in sneaky), sneaky
        assert any(j["action"] == "delete_file" for j in sneaky) or any("delete" in j["action"] for j in sneaky)
        assert not [j for j in journal if j["plugin"] == "hanger" and j["result"] == "ok"]
    lines = (tmp_path / "events").read_text().splitlines()
    assert lines == expected_lines(mirror)  # every event, once, in order
    assert len(json.dumps(lines)) > 100
