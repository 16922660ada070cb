"""The daemon loop in-process: schedule with jitter, sd_notify, reload on edits, metrics, one per store."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from freezegun import freeze_time
from test_plugins_support import seed_store

from wandb_mirror.daemon import Daemon, Notifier, Schedule
from wandb_mirror.daemon.syncer import PassOutcome, skipped_pass
from wandb_mirror.errors import StoreLocked
from wandb_mirror.hooks import hookimpl
from wandb_mirror.store import Store
from wandb_mirror.store_status import store_status


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("daemon") / "seed")


@pytest.fixture
def store_path(seeded: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(seeded, tmp_path / "store")
    return tmp_path / "store"


def config(tmp_path: Path, store: Path, body: str = "", daemon: str = 'poll_interval = "0.2s"') -> Path:
    p = tmp_path / "daemon.toml"
    p.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n[store]\npath = "{store}"\n[daemon]\n{daemon}\n{body}')
    return p


class Cycles:
    """A plugin recording each cycle's start (wall clock and monotonic)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, float]] = []

    @hookimpl
    def cycle_finished(self, stats):
        self.seen.append((stats.cycle, stats.started_at, time.monotonic()))


def run_in_thread(d: Daemon) -> threading.Thread:
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    assert d.ready.wait(10), "daemon did not start"
    return t


def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_schedule_interval_and_jitter_with_frozen_clock(store_path: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, store_path, "[plugins.cycles]\nenabled = true\n",
                 daemon='poll_interval = "60s"\njitter = "10s"')
    rec = Cycles()
    with freeze_time("2024-05-01 12:00:00") as frozen:
        d = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False, max_cycles=6,
                   extra_plugins={"cycles": rec}, waiter=lambda t: frozen.tick(max(t, 0.001)))
        assert d.run() == 0
    starts = [m for _, _, m in rec.seen]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 6
    assert all(50 <= g <= 71 for g in gaps), gaps  # 60s +- 10s (the loop sleeps in <= 1s steps)
    assert len({round(g) for g in gaps}) > 1  # jitter actually varies
    assert rec.seen[0][1].startswith("2024-05-01T12:00:00") and rec.seen[-1][1] > rec.seen[0][1]
    s = Schedule(60, 0)
    assert s.next_due(100.0) == 160.0


def test_sd_notify_ready_status_watchdog_stopping(store_path: Path, tmp_path: Path, monkeypatch) -> None:
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    d = Daemon(config(tmp_path, store_path), sync_pass=skipped_pass, install_signals=False, watch=False)
    t = run_in_thread(d)
    msgs: list[str] = []
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end and not (
                any(m.startswith("READY=1") for m in msgs) and sum(m == "WATCHDOG=1" for m in msgs) >= 2
                and any("cycle 2 done" in m for m in msgs)):
            msgs.append(srv.recv(4096).decode())
    finally:
        d.stop()
        t.join(10)
    srv.settimeout(0.5)
    try:
        while True:
            msgs.append(srv.recv(4096).decode())
    except TimeoutError:
        pass
    srv.close()
    assert not t.is_alive()
    ready = next(m for m in msgs if m.startswith("READY=1"))
    assert "STATUS=started" in ready
    assert any(m.startswith("STATUS=cycle 1: syncing") for m in msgs)
    assert any(m.startswith("STATUS=cycle 2 done: pass skipped") for m in msgs)
    assert msgs.count("WATCHDOG=1") >= 2
    assert "STOPPING=1" in msgs
    assert msgs.index("STOPPING=1") > msgs.index(ready)


def test_no_watchdog_pings_when_the_loop_is_stuck(store_path: Path, tmp_path: Path) -> None:
    sock_path = tmp_path / "n.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(0.3)
    release = threading.Event()

    def stuck_pass(cfg: Any, store: Any, stop: threading.Event) -> PassOutcome:
        release.wait(5)
        return PassOutcome(status="ok")

    import os

    os.environ["WATCHDOG_USEC"] = "100000"
    try:
        d = Daemon(config(tmp_path, store_path), sync_pass=stuck_pass, install_signals=False, watch=False,
                   notifier=Notifier(str(sock_path)), stall_limit=0.2)
        t = run_in_thread(d)
        time.sleep(0.5)  # the pass is stuck: after stall_limit the supervisor stops pinging
        msgs = []
        end = time.monotonic() + 2  # drain what was sent before the stall was noticed (bounded)
        try:
            while time.monotonic() < end:
                msgs.append(srv.recv(4096).decode())
        except TimeoutError:
            pass
        late = []
        try:
            while True:
                late.append(srv.recv(4096).decode())
        except TimeoutError:
            pass
        assert "WATCHDOG=1" not in late
        release.set()
        d.stop()
        t.join(10)
    finally:
        os.environ.pop("WATCHDOG_USEC", None)
        srv.close()


PLUGIN_V1 = '''
from pathlib import Path
from wandb_mirror.hooks import hookimpl

@hookimpl
def cycle_finished(config):
    Path(config["out"]).write_text("{word}" + config.get("suffix", ""))
'''


def test_plugin_file_and_config_edits_reload_broken_edits_keep_running(store_path: Path, tmp_path: Path,
                                                                       caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="wandb_mirror")
    pdir = tmp_path / "plugins"
    pdir.mkdir()
    out = tmp_path / "out.txt"
    (pdir / "marker.py").write_text(PLUGIN_V1.format(word="v1"))
    body = f'[plugins.marker]\nenabled = true\nout = "{out}"\n'
    cfg = config(tmp_path, store_path, body, daemon=f'poll_interval = "0.1s"\nplugins_dir = "{pdir}"')
    d = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=True)
    t = run_in_thread(d)
    try:
        wait_for(lambda: out.exists() and out.read_text() == "v1", what="v1")
        # edit the plugin file: picked up without a restart
        (pdir / "marker.py").write_text(PLUGIN_V1.format(word="v2"))
        wait_for(lambda: out.read_text() == "v2", what="v2 after the plugin file edit")
        # a broken edit keeps the running plugin and says why
        (pdir / "marker.py").write_text("def broken(:\n")
        wait_for(lambda: "configuration reload failed, keeping the running configuration" in caplog.text,
                 what="the reload failure message")
        assert "SyntaxError" in caplog.text
        out.write_text("x")
        wait_for(lambda: out.read_text() == "v2", what="v2 still running")
        # fix it again, and edit the config: both picked up
        (pdir / "marker.py").write_text(PLUGIN_V1.format(word="v3"))
        wait_for(lambda: out.read_text() == "v3", what="v3")
        cfg.write_text(cfg.read_text().replace(f'out = "{out}"', f'out = "{out}"\nsuffix = "!"'))
        wait_for(lambda: out.read_text() == "v3!", what="config edit")
        # a broken config edit keeps the running config
        caplog.clear()
        good = cfg.read_text()
        cfg.write_text(good + "\n[daemon\n")
        wait_for(lambda: "configuration reload failed" in caplog.text, what="bad TOML rejected")
        out.write_text("x")
        wait_for(lambda: out.read_text() == "v3!", what="still running after a bad config")
        # SIGHUP-style reload request works too
        cfg.write_text(good.replace('suffix = "!"', 'suffix = "?"'))
        d.request_reload()
        wait_for(lambda: out.read_text() == "v3?", what="reload request")
    finally:
        d.stop()
        t.join(10)
    assert not t.is_alive()


def test_metrics_endpoint(store_path: Path, tmp_path: Path, capsys) -> None:
    cfg = config(tmp_path, store_path, daemon=f'poll_interval = "0.1s"\nmetrics_port = {free_port()}')
    d = Daemon(cfg, sync_pass=lambda c, s, e: PassOutcome(status="ok", requests=7, retries=2, rate_limited=1,
                                                       duration_s=0.5),
               install_signals=False, watch=False)
    t = run_in_thread(d)
    try:
        wait_for(lambda: d.cycle >= 2, what="two cycles")
        url = d._metrics_server.url
        assert url.startswith("http://127.0.0.1:")
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        d.stop()
        t.join(10)
    lines = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines() if not ln.startswith("#")}
    assert lines["wandb_mirror_up"] == 1
    assert lines["wandb_mirror_runs"] == 5
    assert lines["wandb_mirror_bytes"] > 0
    assert lines['wandb_mirror_sync_passes_total{result="ok"}'] >= 2
    assert lines["wandb_mirror_http_requests_total"] >= 14
    assert lines["wandb_mirror_rate_limited_total"] >= 2
    # counters exist from the start (at 0), build_info and the process metrics are there
    assert lines['wandb_mirror_config_reloads_total{result="error"}'] == 0
    assert lines['wandb_mirror_writebacks_total{result="error"}'] == 0
    assert any(k.startswith("wandb_mirror_build_info{") for k in lines) and lines["process_cpu_seconds_total"] > 0
    # the object count is the one `status` and `gc` report
    from wandb_mirror.cli import main as cli_main

    with Store(store_path, create=False, readonly=True) as s:
        assert lines["wandb_mirror_objects"] == store_status(s)["objects_referenced"] > 0
    capsys.readouterr()
    assert cli_main(["gc", "--store", str(store_path), "--dry-run"]) == 0
    assert f"{int(lines['wandb_mirror_objects'])} referenced objects kept" in capsys.readouterr().out
    assert float(lines["wandb_mirror_sync_pass_duration_seconds"]) == 0.5
    assert "wandb_mirror_lag_seconds" in lines and "wandb_mirror_plugin_failures_total" in lines
    assert "# TYPE wandb_mirror_sync_passes_total counter" in text


def test_a_worker_beside_others_removes_only_stale_temp_objects(store_path: Path, tmp_path: Path) -> None:
    """Alone, a starting daemon removes every temp object (a killed writer's); beside other workers
    only those nobody wrote to for an hour: the others' downloads in progress keep theirs fresh."""
    import os

    cfg = config(tmp_path, store_path)
    first = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False)
    t = run_in_thread(first)
    try:
        tmp = store_path / "objects" / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "fresh").write_bytes(b"x")
        (tmp / "stale").write_bytes(b"x")
        os.utime(tmp / "stale", (time.time() - 7200, time.time() - 7200))
        assert Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False, max_cycles=1).run() == 0
        assert sorted(p.name for p in tmp.iterdir()) == ["fresh"]
    finally:
        first.stop()
        t.join(10)
    assert Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False, max_cycles=1).run() == 0
    assert list(tmp.iterdir()) == []


def test_daemons_share_a_store_other_writers_wait(store_path: Path, tmp_path: Path) -> None:
    """Daemons are workers that share a store (tests/test_workers.py); `sync` needs it alone."""
    cfg = config(tmp_path, store_path)
    d = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False)
    t = run_in_thread(d)
    try:
        other = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False, max_cycles=1)
        assert other.run() == 0
        with Store(store_path) as s, pytest.raises(StoreLocked, match="is in use by another wandb-mirror process"):
            s.lock("sync").acquire()
    finally:
        d.stop()
        t.join(10)
    # released: the next one starts
    d2 = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False, max_cycles=1)
    assert d2.run() == 0


def test_bad_plugin_config_refuses_to_start(store_path: Path, tmp_path: Path, capsys) -> None:
    from wandb_mirror.cli import main

    cfg = config(tmp_path, store_path, '[plugins.cleanup]\nenabled = true\nextensions = "png"\n')
    assert main(["run", "--config", str(cfg), "--once"]) == 2
    err = capsys.readouterr().err
    assert "plugins.cleanup.extensions: expected a list" in err and "Traceback" not in err


BAD_PLUGINS = {
    "raiser.py": "from wandb_mirror.hooks import hookimpl\n\n@hookimpl\ndef cycle_finished(stats):\n"
                 "    raise RuntimeError('raiser is broken')\n",
    "hanger.py": "import time\nfrom wandb_mirror.hooks import hookimpl\n\n@hookimpl\ndef run_created(run):\n"
                 "    time.sleep(30)\n",
}


def test_broken_plugins_never_stop_the_mirror(store_path: Path, tmp_path: Path) -> None:
    from test_plugins_support import emit_runs_created

    from wandb_mirror.store import Store

    with Store(store_path) as s:
        emit_runs_created(s)
    pdir = tmp_path / "p"
    pdir.mkdir()
    for name, src in BAD_PLUGINS.items():
        (pdir / name).write_text(src)
    rec = Cycles()
    cfg = config(tmp_path, store_path,
                 "[plugins.raiser]\nenabled = true\n[plugins.hanger]\nenabled = true\n[plugins.cycles]\nenabled = true\n",
                 daemon=f'poll_interval = "0.05s"\nplugins_dir = "{pdir}"\nhook_timeout = "0.2s"\n'
                        'max_failures = 2\nretry_backoff = "0s"\nstop_grace = "0.1s"')
    d = Daemon(cfg, sync_pass=skipped_pass, install_signals=False, watch=False, extra_plugins={"cycles": rec})
    t = run_in_thread(d)
    try:
        with Store(store_path) as s:
            wait_for(lambda: s.catalog.scalar("SELECT COUNT(*) FROM plugin_cursors WHERE disabled_at IS NOT NULL") == 2,
                     what="both broken plugins disabled")
            rows = {r["plugin"]: r for r in s.catalog.query("SELECT * FROM plugin_cursors")}
        n = len(rec.seen)
        wait_for(lambda: len(rec.seen) >= n + 3, what="cycles going on")
    finally:
        t0 = time.monotonic()
        d.stop()
        t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 3
    assert "RuntimeError: raiser is broken" in rows["raiser"]["last_error"]
    assert "timed out after 0.2s" in rows["hanger"]["last_error"] or "still running" in rows["hanger"]["last_error"]
    assert rows["cycles"]["disabled_at"] is None
