"""The daemon: sync on an interval, deliver events to plugins, reload on change, stop cleanly.

One cycle = one sync pass, then delivery of the new change rows to the enabled plugins, then
`cycle_finished`. Between cycles the daemon sleeps `poll_interval` (measured from the start of the
previous cycle) plus or minus a random `jitter`, waking early to stop, to reload, or to retry a
plugin whose backoff ran out.

- SIGTERM / SIGINT: stop. The write in hand finishes (a sync unit, a hook call up to `stop_grace`),
  nothing half-written remains, the store lock is released. A second signal does not force it.
- SIGHUP, or an edit of the config file or of a `*.py` in `plugins_dir` (watchdog): reload. A
  broken edit keeps the running configuration and logs why.
- Several daemons (workers) may share a store: the store lock is held shared for the daemon's
  lifetime (`sync` and the other writers take it alone), and the work is divided by leases in the
  catalog (store/claims.py): a project's sync, the organization, history compaction and plugin
  delivery are each done by one worker at a time; a 429 with Retry-After pauses every worker using
  that key (store/rate_pauses.py). A stopped worker gives its leases back; a killed one's run out
  after `[daemon] lease` and another worker takes the work over.
- systemd: READY=1 once started, STATUS= per phase, WATCHDOG=1 from a supervisor thread while the
  main loop makes progress, STOPPING=1 at the end (all no-ops without NOTIFY_SOCKET).
- Metrics: optional Prometheus text endpoint on `metrics_host:metrics_port` (loopback by default).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client.transport import Transport
from ..config import Config, load_config
from ..errors import UsageError
from ..hooks.delivery import DeliveryStats
from ..hooks.journal import RESULT_KIND_SQL
from ..hooks.types import CycleStats
from ..store import LocalObjects, Store
from ..store.claims import Claims, Renewer
from ..store.location import StoreLocation, open_store, plugin_objects
from ..times import utcnow
from .host import PluginHost
from .metrics import Metrics, MetricsServer
from .notify import Notifier, watchdog_interval
from .syncer import EngineRunner, PassOutcome, SyncPass, share_budget

log = logging.getLogger("wandb_mirror.daemon")

# beside other workers, a temp object nobody wrote to for this long was left by a killed one
STALE_TMP = 3600.0


@dataclass
class Schedule:
    """When the next cycle is due: `interval` after the previous start, +- up to `jitter` seconds."""

    interval: float
    jitter: float = 0.0
    rng: random.Random | None = None

    def delay(self) -> float:
        j = 0.0
        if self.jitter > 0:
            j = (self.rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, self.interval + j)

    def next_due(self, started_at: float) -> float:
        return started_at + self.delay()


class Daemon:
    def __init__(
        self,
        config_path: str | Path,
        *,
        sync_pass: SyncPass | None = None,
        notifier: Notifier | None = None,
        install_signals: bool = True,
        extra_plugins: dict[str, Any] | None = None,
        config_loader: Callable[[str | Path], Config] = load_config,
        max_cycles: int | None = None,
        watch: bool = True,
        stall_limit: float = 3600.0,
        waiter: Callable[[float], Any] | None = None,
    ):
        self.config_path = Path(config_path)
        self.sync_pass = sync_pass  # None: the sync engine (EngineRunner), created at start
        self.notifier = notifier or Notifier()
        self.install_signals = install_signals
        self.extra_plugins = extra_plugins
        self.config_loader = config_loader
        self.max_cycles = max_cycles
        self.watch = watch
        self.stall_limit = stall_limit
        # how the loop sleeps between cycles (tests pass a fake one that advances a frozen clock)
        self._wait = waiter or (lambda t: self.wake_event.wait(timeout=t))
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.wake_event = threading.Event()
        self.metrics = Metrics()
        self.cycle = 0
        self.heartbeat = time.monotonic()
        self.ready = threading.Event()
        self.config: Config | None = None
        self.store: Store | None = None
        self.host: PluginHost | None = None
        self._metrics_server: MetricsServer | None = None
        self._watcher: Any = None
        self._schedule = Schedule(60.0)
        self._runner: EngineRunner | None = None
        self.last_outcome: PassOutcome | None = None
        self.size_gauges_every = 300.0
        self._sizes_at: float | None = None
        self._sizes_seq: int | None = None  # the change log position the size gauges were computed at
        self.claims: Claims | None = None
        self._renewer: Renewer | None = None

    # -- public control (also used by signal handlers and tests) -----------------------------------
    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()

    def request_reload(self) -> None:
        self.reload_event.set()
        self.wake_event.set()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    # -- setup -------------------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        self.notifier.status(text)
        log.debug("status: %s", text)

    def _apply_schedule(self, cfg: Config) -> None:
        self._schedule = Schedule(cfg.daemon.poll_interval, cfg.daemon.jitter)

    def _upstream_transport(self, cfg: Config, host_needs: bool) -> Transport | None:
        """The engine client's transport for write-back, only when some plugin writes for real."""
        if not host_needs:
            return None
        from ..sync.engine import make_client

        # The engine's client: same key resolution, retry policy, rate limit and headers as the sync.
        t = make_client(cfg).t
        if self.claims is not None and self.store is not None:
            share_budget(t, self.store, self.claims.worker)
        return t

    def _start_metrics(self, cfg: Config) -> None:
        port = cfg.daemon.metrics_port
        host = cfg.daemon.metrics_host
        if self._metrics_server is not None:
            old = self._metrics_server
            if port is not None and old.httpd.server_address[1] == port and old.httpd.server_address[0] == host:
                return
            old.stop()
            self._metrics_server = None
        if port is None:
            return
        try:
            self._metrics_server = MetricsServer(self.metrics, host, port).start()
            log.info("metrics on %s", self._metrics_server.url)
        except OSError as e:
            log.error("metrics endpoint %s:%s could not start: %s (the daemon goes on without it)", host, port, e)

    def _start_watcher(self, cfg: Config) -> None:
        if not self.watch:
            return
        from .watch import ConfigWatcher

        if self._watcher is not None:
            self._watcher.stop()
        pdir = self.host.pc.plugins_dir if self.host else None
        try:
            self._watcher = ConfigWatcher(self.config_path, pdir, self.request_reload).start()
        except Exception as e:  # noqa: BLE001 - no inotify (or too many watches): SIGHUP still works
            log.warning("cannot watch %s for changes (%s); use SIGHUP to reload", self.config_path, e)
            self._watcher = None

    def _install_signals(self) -> list[tuple[int, Any]]:
        if not self.install_signals or threading.current_thread() is not threading.main_thread():
            return []
        old: list[tuple[int, Any]] = []

        def on_stop(signum: int, frame: Any) -> None:
            log.info("received %s: stopping after the work in hand", signal.Signals(signum).name)
            self.stop()

        def on_hup(signum: int, frame: Any) -> None:
            log.info("received SIGHUP: reloading the configuration")
            self.request_reload()

        for sig, fn in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup)):
            old.append((sig, signal.signal(sig, fn)))
        return old

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> int:
        old_handlers = self._install_signals()
        supervisor = None
        lock = None
        try:
            self._status("starting")
            cfg = self.config_loader(self.config_path)
            self.config = cfg
            self._apply_schedule(cfg)
            store = open_store(cfg)
            self.store = store
            lock = store.lock("daemon (wandb-mirror run)", shared=True).acquire()
            if lock.alone:  # no other worker: anything in tmp/ is from a killed writer
                removed = store.objects.clean_tmp()
            elif isinstance(store.objects, LocalObjects):  # the others' downloads in progress stay
                removed = store.objects.clean_tmp(untouched_for=STALE_TMP)
            else:
                removed = 0
            if removed:
                log.info("removed %d temp files left by an interrupted writer", removed)
            self.claims = Claims(store.catalog, lease=cfg.daemon.lease)
            self.claims.register()
            self._renewer = Renewer(self.claims, on_lost=self._leases_lost).start()
            # plugin configuration first: its problems are the user's to fix before anything runs
            self.host = PluginHost(store, cfg, extra=self.extra_plugins)
            # an object store offered by a plugin replaces the configured one before anything uses it
            # (the plugins need the store to load, so they are asked once it is open)
            backend = plugin_objects(StoreLocation.from_config(cfg), self.host.plugins)
            if backend is not None:
                store.objects = backend
                log.info("object store provided by a plugin: %r", backend)
            if self.sync_pass is None:
                self.sync_pass = self._runner = EngineRunner(cfg, store, on_progress=self.beat, claims=self.claims,
                                                             skip_fresh=self.max_cycles is None)
            transport = self._upstream_transport(cfg, _wants_upstream(cfg))
            if transport is not None:
                self.host.dispatcher.set_transport(transport)
            self._start_metrics(cfg)
            self._start_watcher(cfg)
            supervisor = self._start_supervisor()
            self.metrics.set("up", 1)
            self.metrics.set("ready", 1)
            self._refresh_gauges()
            self.ready.set()
            plugins = ", ".join(p.name + ("" if not p.dry_run else " (dry-run)") for p in self.host.plugins.enabled())
            log.info("daemon started: worker %s, store %s, every %gs, plugins: %s", self.claims.worker,
                     store.describe(), self._schedule.interval, plugins or "none enabled")
            self.notifier.ready(f"started; plugins: {plugins or 'none enabled'}")
            self._loop()
            return 0
        finally:
            self.notifier.stopping()
            self._status("stopping")
            self.stop_event.set()
            if self._watcher is not None:
                self._watcher.stop()
            if self.host is not None:
                self.host.close()
            if self._runner is not None:
                self._runner.close()
            if self._renewer is not None:
                self._renewer.stop()
            if self.claims is not None:
                try:  # a clean stop hands the work on at once instead of after the lease
                    self.claims.release_all()
                except Exception as e:  # noqa: BLE001 - the leases then simply run out
                    log.warning("giving the leases back failed: %s", e)
            if self._metrics_server is not None:
                self._metrics_server.stop()
            if supervisor is not None:
                supervisor.join(timeout=2)
            if lock is not None:
                lock.release()
            if self.store is not None:
                self.store.close()
            for sig, handler in old_handlers:
                signal.signal(sig, handler)
            self.notifier.close()
            log.info("daemon stopped")

    def _loop(self) -> None:
        due = time.monotonic()
        while not self.stop_event.is_set():
            if self.reload_event.is_set():
                self._reload()
            now = time.monotonic()
            if now >= due:
                started = now
                self._cycle()
                if self.max_cycles is not None and self.cycle >= self.max_cycles:
                    break
                due = self._schedule.next_due(started)
                continue
            # Between cycles: retry plugins whose backoff expired, else sleep until something happens.
            retry_in = self.host.dispatcher.next_retry_in() if self.host else None
            if retry_in is not None and retry_in <= 0:
                self._deliver_only()
                retry_in = self.host.dispatcher.next_retry_in() if self.host else None
            wait = due - time.monotonic()
            if retry_in is not None:
                wait = min(wait, retry_in)
            self.beat()
            self._wait(max(0.0, min(wait, 1.0)))
            self.wake_event.clear()

    def _cycle(self) -> None:
        assert self.store is not None and self.host is not None
        self.cycle += 1
        self.beat()
        started_at = utcnow()
        self._status(f"cycle {self.cycle}: syncing")
        outcome = self._run_pass()
        self.last_outcome = outcome
        self.beat()
        self._record_pass(outcome)
        stats = CycleStats(cycle=self.cycle, started_at=started_at, pass_id=outcome.pass_id,
                           pass_status=outcome.status, pass_duration_s=outcome.duration_s, sync=outcome.stats)
        if not self.stop_event.is_set():
            self._status(f"cycle {self.cycle}: delivering events")
            d = self._deliver()
            stats.events = d.events
            stats.plugin_failures = d.failures
            stats.changes = d.events + d.skipped
            self.metrics.inc("events_delivered_total", d.events)
        if not self.stop_event.is_set():
            stats.finished_at = utcnow()
            self.host.cycle_finished(stats, self.stop_event)
        self.beat()
        self._refresh_gauges()
        self.metrics.inc("cycles_total")
        self._status(
            f"cycle {self.cycle} done: pass {outcome.status} in {outcome.duration_s:.1f}s, "
            f"{stats.events} events delivered, {stats.plugin_failures} plugin failures"
        )

    def _run_pass(self) -> PassOutcome:
        assert self.store is not None and self.config is not None
        assert self.sync_pass is not None
        try:
            return self.sync_pass(self.config, self.store, self.stop_event)
        except Exception as e:  # noqa: BLE001 - never let a pass take the daemon down
            log.exception("sync pass raised")
            return PassOutcome(status="failed", error=f"{type(e).__name__}: {e}")

    def _deliver(self) -> DeliveryStats:
        """Plugin delivery under the `delivery` lease: one worker at a time walks the plugins'
        cursors, so each event reaches each plugin at least once, whichever worker synced it."""
        assert self.host is not None
        if self.claims is None:
            return self.host.deliver(self.stop_event)
        if not self.claims.claim("delivery"):
            return DeliveryStats()
        status = None
        try:
            d = self.host.deliver(self.stop_event)
            status = "errors" if d.failures else "ok"
            return d
        finally:
            self.claims.release("delivery", status=status)

    def _leases_lost(self, keys: list[str]) -> None:
        log.warning("worker %s was not seen for a whole lease and lost %s to another worker; that work "
                    "may be done twice (raise [daemon] lease if passes stall this long)",
                    self.claims.worker if self.claims else "?", ", ".join(keys))

    def _deliver_only(self) -> None:
        assert self.host is not None
        d = self._deliver()
        self.metrics.inc("events_delivered_total", d.events)
        self._refresh_gauges()

    def _record_pass(self, o: PassOutcome) -> None:
        m = self.metrics
        m.inc("sync_passes_total", result=o.status)
        m.set("sync_pass_duration_seconds", o.duration_s)
        m.inc("http_requests_total", o.requests)
        m.inc("http_retries_total", o.retries)
        m.inc("rate_limited_total", o.rate_limited)
        if o.status in ("ok", "errors"):
            m.last_ok_finished = time.time()
            m.set("last_successful_sync_timestamp_seconds", m.last_ok_finished)
        if o.status == "failed":
            log.error("cycle %d: sync pass failed: %s", self.cycle, o.error)

    def _refresh_gauges(self) -> None:
        """Catalog-derived gauges, computed between cycles (a scrape never touches the catalog).

        The store-size gauges scan big tables, so they are refreshed only when the change log moved
        (or every `size_gauges_every` seconds); the cheap ones every cycle.
        """
        if self.store is None or self.host is None:
            return
        cat = self.store.catalog
        m = self.metrics
        try:
            now = time.monotonic()
            seq = cat.scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
            if self._sizes_at is None or seq != self._sizes_seq or now - self._sizes_at >= self.size_gauges_every:
                self._sizes_at, self._sizes_seq = now, seq
                m.set("runs", cat.scalar("SELECT COUNT(*) FROM runs") or 0)
                m.set("history_rows", self.store.history.count())
                n_objects, n_bytes = cat.referenced_totals()
                m.set("objects", n_objects)
                m.set("bytes", n_bytes)
            for r in cat.query(
                f"SELECT {RESULT_KIND_SQL} AS k, COUNT(*) AS n FROM journal GROUP BY k"
            ):
                m.set("writebacks_total", r["n"], result=r["k"])
            disp = self.host.dispatcher
            m.set("plugin_failures_total", disp.failures_total)
            m.set("plugins_enabled", len(self.host.plugins.enabled()))
            m.set("plugins_disabled", sum(1 for rt in disp._rt.values() if rt.disabled))
            m.set("events_pending", disp.pending())
        except Exception as e:  # noqa: BLE001 - metrics must never break a cycle
            log.warning("refreshing metrics failed: %s", e)

    # -- reload ----------------------------------------------------------------------------------------
    def _reload(self) -> None:
        self.reload_event.clear()
        assert self.host is not None and self.store is not None and self.config is not None
        self.notifier.reloading()
        self._status("reloading the configuration")
        try:
            cfg = self.config_loader(self.config_path)
        except Exception as e:  # noqa: BLE001 - UsageError for a bad file, anything else for worse
            log.error("configuration reload failed, keeping the running configuration: %s", e)
            self.metrics.inc("config_reloads_total", result="error")
            self.notifier.ready("reload failed; running on the previous configuration")
            return
        old_loc, new_loc = StoreLocation.from_config(self.config), StoreLocation.from_config(cfg)
        if new_loc != old_loc:
            log.error("configuration reload: [store] changed (%s -> %s); that needs a restart, "
                      "keeping the running configuration", old_loc, new_loc)
            self.metrics.inc("config_reloads_total", result="error")
            self.notifier.ready("reload refused: store.path changed")
            return
        transport = None
        try:
            if _wants_upstream(cfg):
                transport = self.host.dispatcher.transport or self._upstream_transport(cfg, True)
        except UsageError as e:
            log.error("configuration reload failed, keeping the running configuration: %s", e)
            self.metrics.inc("config_reloads_total", result="error")
            self.notifier.ready("reload failed; running on the previous configuration")
            return
        problems = self.host.reload(cfg, transport=transport)
        if problems:
            log.error("configuration reload failed, keeping the running configuration: %s", "; ".join(problems))
            self.metrics.inc("config_reloads_total", result="error")
            self.notifier.ready("reload failed; running on the previous configuration")
            return
        old_pdir = self._watcher.plugins_dir if self._watcher is not None else None
        self.config = cfg
        self._apply_schedule(cfg)
        self._start_metrics(cfg)
        if self._watcher is None or old_pdir != self.host.pc.plugins_dir:
            self._start_watcher(cfg)
        self.metrics.inc("config_reloads_total", result="ok")
        self.notifier.ready("configuration reloaded")
        log.info("configuration reloaded from %s", self.config_path)

    # -- systemd watchdog -------------------------------------------------------------------------------
    def _start_supervisor(self) -> threading.Thread | None:
        interval = watchdog_interval()
        if interval is None or not self.notifier.enabled:
            return None
        main = threading.main_thread() if self.install_signals else threading.current_thread()

        def supervise() -> None:
            while not self.stop_event.wait(interval):
                # Ping only while the main loop is alive and has shown progress recently: a wedged
                # daemon must let the watchdog fire (systemd then restarts it).
                if main.is_alive() and time.monotonic() - self.heartbeat < self.stall_limit:
                    self.notifier.watchdog()
                    self.metrics.set("watchdog_last_ping_timestamp_seconds", time.time())
                else:
                    log.error("main loop made no progress for %.0fs; letting the systemd watchdog fire",
                              time.monotonic() - self.heartbeat)

        t = threading.Thread(target=supervise, name="watchdog", daemon=True)
        t.start()
        return t


def _wants_upstream(cfg: Config) -> bool:
    """Whether some enabled plugin writes upstream for real (then the daemon needs a key)."""
    return any(isinstance(s, dict) and s.get("enabled") and s.get("dry_run", True) is False
               for s in cfg.plugins.values())


