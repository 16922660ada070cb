"""Event delivery: once, in order, durable cursors, failing and hanging plugins, reload."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from test_plugins_support import ENTITY, PROJECT, Recorder, emit, seed_store

from wandb_mirror.hooks import hookimpl
from wandb_mirror.hooks.delivery import DeliverySettings, Dispatcher
from wandb_mirror.hooks.manager import PluginSet
from wandb_mirror.store import Store


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("plugins") / "seed")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, seeded: Path, tmp_path: Path):
    """The seeded store: a copy of the SQLite one, or the same seed in a PostgreSQL catalog."""
    import shutil

    if request.param == "postgresql":
        pytest.importorskip("psycopg")
        url = request.getfixturevalue("pg_url")
        seed_store(tmp_path / "store", catalog=url)
        s = Store(tmp_path / "store", catalog=url)
    else:
        shutil.copytree(seeded, tmp_path / "store")
        s = Store(tmp_path / "store")
    yield s
    s.close()


def reopen(store: Store) -> Store:
    return Store(store.path, catalog=store.catalog_url) if store.catalog_url else Store(store.path)


def plugin_set(**plugins) -> PluginSet:
    ps = PluginSet.load(builtins=False, entrypoints=False, extra=plugins)
    assert ps.configure({name: {"enabled": True} for name in plugins}) == []
    return ps


def fast(**kw) -> DeliverySettings:
    base = dict(hook_timeout=2.0, max_failures=3, retry_backoff=0.0, retry_backoff_max=0.0, stop_grace=0.5)
    base.update(kw)
    return DeliverySettings(**base)


def emit_mixed(store: Store) -> list[int]:
    art = store.catalog.scalar("SELECT id FROM artifacts ORDER BY pk LIMIT 1")
    return [
        emit(store, "run_created", {"state": "running"}, run="a1"),
        emit(store, "history_appended", {"first_step": 0, "last_step": 2, "rows": 3}, run="a1"),
        emit(store, "run_created", {"state": "finished"}, run="a2"),
        emit(store, "file_mirrored", {"name": "plot.png", "md5": "x", "size": 1, "changed": True}, run="a1",
             subject="plot.png"),
        emit(store, "run_state_changed", {"old": "running", "new": "finished"}, run="a1"),
        emit(store, "run_updated", {"changes": {"summary": {"before": {"loss": 1}, "after": {"loss": 0.3}},
                                                "tags": {"before": [], "after": ["keep"]}}}, run="a1"),
        emit(store, "artifact_version_mirrored", {"id": art}, subject=art, run="a1"),
        emit(store, "artifact_aliases_changed", {"id": art, "added": ["best"], "removed": []}, subject=art),
        emit(store, "sweep_updated", {"name": "sw"}, subject="sw"),
        emit(store, "sweep_finished", {"name": "sw"}, subject="sw"),
        emit(store, "tombstoned", {"kind": "run", "key": f"{ENTITY}/{PROJECT}/b1"}, run="b1",
             subject=f"{ENTITY}/{PROJECT}/b1"),
    ]


EXPECTED = [
    ("run_created", "a1"),
    ("history_appended", ("a1", 0, 2)),
    ("run_created", "a2"),
    ("file_mirrored", ("a1", "plot.png", None)),  # md5 filled in below from the catalog
    ("run_state_changed", ("a1", "running", "finished")),
    ("run_updated", ("a1", ["summary", "tags"])),
    ("artifact_version_mirrored", f"{ENTITY}/{PROJECT}/weights:v0"),
    ("artifact_aliases_changed", (f"{ENTITY}/{PROJECT}/weights:v0", ["best"], [])),
    ("sweep_updated", "sw"),
    ("sweep_finished", "sw"),
    ("tombstoned", ("run", f"{ENTITY}/{PROJECT}/b1")),
]


def expected(store: Store) -> list:
    md5 = store.catalog.scalar(
        "SELECT f.md5 FROM files f JOIN runs r ON r.pk = f.run_pk WHERE r.run_id = 'a1' AND f.name = 'plot.png'")
    out = list(EXPECTED)
    out[3] = ("file_mirrored", ("a1", "plot.png", md5))
    return out


def test_hooks_fire_once_in_order_with_catalog_objects(store: Store) -> None:
    rec = Recorder()
    emit_mixed(store)
    d = Dispatcher(store, plugin_set(rec=rec), settings=fast())
    stats = d.deliver()
    assert rec.calls == expected(store)
    assert stats.events == len(EXPECTED) and stats.failures == 0
    # nothing new: a second delivery calls nothing
    d.deliver()
    assert len(rec.calls) == len(EXPECTED)
    # new rows are delivered, and only they
    emit(store, "run_state_changed", {"old": "finished", "new": "running"}, run="a2")
    d.deliver()
    assert rec.calls[-1] == ("run_state_changed", ("a2", "finished", "running"))
    assert len(rec.calls) == len(EXPECTED) + 1
    d.close()


def test_event_objects_are_plain_catalog_dataclasses(store: Store) -> None:
    seen = {}

    class P:
        @hookimpl
        def run_updated(self, run, changes, upstream, config, store):
            seen.update(run=run, changes=changes, upstream=upstream, config=config, store=store)

    emit(store, "run_updated", {"changes": {"summary": {"before": {"loss": 1}, "after": {"loss": 0.3}}}}, run="a1")
    d = Dispatcher(store, plugin_set(p=P()), settings=fast())
    d.deliver()
    run = seen["run"]
    assert (run.entity, run.project, run.run_id, run.state, run.sweep_name) == (ENTITY, PROJECT, "a1", "finished", "sw")
    assert run.summary_values()["loss"] == 0.3 and run.is_finished and run.path == f"{ENTITY}/{PROJECT}/a1"
    assert seen["changes"]["summary"].before == {"loss": 1} and seen["changes"]["summary"].after == {"loss": 0.3}
    assert seen["config"] == {"enabled": True}
    assert seen["upstream"].dry_run is True  # every plugin is dry-run unless configured
    hist = list(seen["store"].history(run))
    assert [r["loss"] for r in hist] == [0.9, 0.05, 0.3]
    assert {f.name for f in seen["store"].files(run)} == {"plot.png", "notes.txt", "media/x.PNG"}
    d.close()


def test_cursor_survives_restart_without_loss_or_replay(store: Store) -> None:
    emit_mixed(store)
    stop = threading.Event()

    class StopAfterFile(Recorder):
        @hookimpl
        def file_mirrored(self, run, file):
            super().file_mirrored(run, file)
            stop.set()  # the daemon is told to stop while handling the 4th event

    rec = StopAfterFile()
    d1 = Dispatcher(store, plugin_set(rec=rec), settings=fast())
    d1.deliver(stop)
    d1.close()
    assert len(rec.calls) == 4
    cursor = store.catalog.scalar("SELECT seq FROM plugin_cursors WHERE plugin = 'rec'")
    # "restart": a new dispatcher over a reopened store continues exactly after the acknowledged row
    store.close()
    store2 = reopen(store)
    rec2 = Recorder()
    d2 = Dispatcher(store2, plugin_set(rec=rec2), settings=fast())
    d2.deliver()
    d2.close()
    assert rec.calls + rec2.calls == expected(store2)
    assert store2.catalog.scalar("SELECT seq FROM plugin_cursors WHERE plugin = 'rec'") > cursor
    store2.close()


def test_unacknowledged_event_is_redelivered_once_after_crash(store: Store) -> None:
    """A hook that was running when the process died is the only event delivered again."""
    emit_mixed(store)
    rec = Recorder()
    d = Dispatcher(store, plugin_set(rec=rec), settings=fast())
    d.deliver()
    d.close()
    # simulate a crash between the 3rd hook returning and its acknowledgement
    seqs = [r["seq"] for r in store.catalog.query("SELECT seq FROM changes ORDER BY seq")]
    store.catalog.conn.execute("UPDATE plugin_cursors SET seq = ? WHERE plugin = 'rec'", [seqs[1]])
    store.catalog.conn.commit()
    rec2 = Recorder()
    d2 = Dispatcher(store, plugin_set(rec=rec2), settings=fast())
    d2.deliver()
    d2.close()
    assert rec2.calls == expected(store)[2:]


def test_raising_plugin_is_retried_then_disabled_and_others_go_on(store: Store, caplog) -> None:
    attempts = []

    class Bad:
        @hookimpl
        def run_created(self, run):
            attempts.append(run.run_id)
            raise RuntimeError("boom")

    rec = Recorder()
    emit(store, "run_created", {}, run="a1")
    emit(store, "run_created", {}, run="a2")
    d = Dispatcher(store, plugin_set(bad=Bad(), rec=rec), settings=fast(max_failures=3))
    caplog.set_level(logging.ERROR, logger="wandb_mirror.delivery")
    for _ in range(5):
        d.deliver()
    # the good plugin got everything, the bad one was tried 3 times on its first event and disabled
    assert [c for c in rec.calls] == [("run_created", "a1"), ("run_created", "a2")]
    assert attempts == ["a1", "a1", "a1"]
    row = store.catalog.query_one("SELECT * FROM plugin_cursors WHERE plugin = 'bad'")
    assert row["disabled_at"] and row["failures"] == 3 and row["seq"] == 0
    assert "RuntimeError: boom" in row["last_error"] and "Traceback" in row["last_error"]
    text = caplog.text
    assert "plugin bad failed (1/3) in run_created on change" in text and "RuntimeError: boom" in text
    assert "plugin bad DISABLED after 3 consecutive failures" in text
    # disabled survives a restart; reset re-enables it and it resumes at its cursor
    d.close()
    d2 = Dispatcher(store, plugin_set(bad=Bad(), rec=Recorder()), settings=fast(max_failures=3))
    d2.deliver()
    assert attempts == ["a1"] * 3
    d2.reset("bad")
    d2.deliver()
    assert attempts == ["a1"] * 4
    d2.close()


def test_backoff_delays_retries(store: Store) -> None:
    calls = []
    now = [1000.0]

    class Flaky:
        @hookimpl
        def run_created(self, run):
            calls.append(now[0])
            if len(calls) < 3:
                raise ValueError("not yet")

    emit(store, "run_created", {}, run="a1")
    d = Dispatcher(store, plugin_set(flaky=Flaky()), clock=lambda: now[0],
                   settings=fast(retry_backoff=10.0, retry_backoff_max=15.0, max_failures=5))
    d.deliver()
    assert len(calls) == 1 and d.next_retry_in() == 10.0
    now[0] += 5
    d.deliver()
    assert len(calls) == 1  # still backing off
    now[0] += 5
    d.deliver()
    assert len(calls) == 2 and d.next_retry_in() == 15.0  # doubled, capped
    now[0] += 15
    d.deliver()
    assert len(calls) == 3 and d.next_retry_in() is None
    assert store.catalog.scalar("SELECT failures FROM plugin_cursors WHERE plugin = 'flaky'") == 0
    d.close()


def test_hanging_plugin_is_abandoned_its_writes_refused_and_disabled(store: Store) -> None:
    release = threading.Event()
    results = []

    class Hang:
        @hookimpl
        def run_created(self, run, upstream):
            release.wait(10)
            try:
                upstream.add_tags(run, "late")
            except Exception as e:  # noqa: BLE001
                results.append(type(e).__name__)

    rec = Recorder()
    emit(store, "run_created", {}, run="a1")
    emit(store, "run_created", {}, run="a2")
    d = Dispatcher(store, plugin_set(hang=Hang(), rec=rec), settings=fast(hook_timeout=0.3, max_failures=2))
    t0 = time.monotonic()
    d.deliver()
    d.deliver()  # second attempt: the first call is still hung -> counts as a failure without a new thread
    assert time.monotonic() - t0 < 3
    assert len(rec.calls) == 2
    row = store.catalog.query_one("SELECT * FROM plugin_cursors WHERE plugin = 'hang'")
    assert row["disabled_at"] and "still running after the timeout" in row["last_error"]
    release.set()
    for _ in range(50):
        if results:
            break
        time.sleep(0.05)
    assert results == ["UpstreamWriteError"]  # the abandoned call's writer was revoked
    j = store.catalog.query_one("SELECT * FROM journal WHERE plugin = 'hang'")
    assert j["result"].startswith("error: hook call abandoned")
    d.close()


def test_stop_abandons_slow_hook_without_acknowledging(store: Store) -> None:
    started = threading.Event()

    class Slow:
        @hookimpl
        def run_created(self, run):
            started.set()
            time.sleep(3)

    emit(store, "run_created", {}, run="a1")
    d = Dispatcher(store, plugin_set(slow=Slow()), settings=fast(hook_timeout=30, stop_grace=0.2))
    stop = threading.Event()
    threading.Thread(target=lambda: (started.wait(5), stop.set()), daemon=True).start()
    t0 = time.monotonic()
    stats = d.deliver(stop)
    assert time.monotonic() - t0 < 2 and stats.stopped
    row = store.catalog.query_one("SELECT * FROM plugin_cursors WHERE plugin = 'slow'")
    assert row["seq"] == 0 and row["failures"] == 0 and row["disabled_at"] is None  # delivered again later
    d.close()


def test_plugins_see_only_their_own_config_and_state(store: Store) -> None:
    got = {}

    class A:
        @hookimpl
        def run_created(self, run, config, store):
            store.state.set("k", {"from": "a"})
            got["a"] = (config, store.state.get("k"))

    class B:
        @hookimpl
        def run_created(self, run, config, store):
            got["b"] = (config, store.state.get("k"))

    ps = PluginSet.load(builtins=False, entrypoints=False, extra={"a": A(), "b": B()})
    assert ps.configure({"a": {"enabled": True, "x": 1}, "b": {"enabled": True, "dry_run": False}}) == []
    emit(store, "run_created", {}, run="a1")
    d = Dispatcher(store, ps, settings=fast())
    d.deliver()
    assert got["a"] == ({"enabled": True, "x": 1}, {"from": "a"})
    assert got["b"] == ({"enabled": True, "dry_run": False}, None)
    d.close()


def test_disabled_by_default_plugins_get_nothing(store: Store) -> None:
    rec = Recorder()
    ps = PluginSet.load(builtins=False, entrypoints=False, extra={"rec": rec})
    ps.configure({})
    emit(store, "run_created", {}, run="a1")
    d = Dispatcher(store, ps, settings=fast())
    d.deliver()
    assert rec.calls == [] and not ps.get("rec").enabled and ps.get("rec").dry_run
    assert store.catalog.scalar("SELECT COUNT(*) FROM plugin_cursors") == 0
    d.close()
