"""Event delivery: change rows -> plugin hooks, durable per plugin, never fatal to the mirror.

Contract:

- The sync engine commits typed rows into `changes` (seq order = commit order). Delivery reads
  them *after* the commit, so a hook never sees data the catalog does not hold.
- Each enabled plugin has a cursor in `plugin_cursors` (the last seq it acknowledged). An event is
  acknowledged (cursor committed) right after its hook returns, so after a crash or a stop at most
  the one unacknowledged event is delivered again: at-least-once, in seq order (so in order per
  run). Events a plugin has no hook for advance its cursor without a call.
- Hooks run in a per-plugin worker thread with a timeout. A hook that raises is logged (plugin,
  event, traceback) and retried after a backoff (exponential, capped); the plugin's later events
  wait, so order holds. After `max_failures` consecutive failures the plugin is disabled
  (`plugin_cursors.disabled_at`, with the last error) until reset. A hook that runs past its
  timeout is abandoned: its writer is revoked, its thread is left to finish on its own, and it
  counts as a failure. A hook that fails because its disk is full, read-only or failing (ENOSPC,
  EROFS, EIO, SQLite's "disk is full") is retried with the same backoff but never counts toward
  disabling: only plugin bugs do. Nothing a plugin does stops the mirror.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..client.transport import Transport
from ..config import DaemonConfig
from ..events import event_from_row
from ..store import Store
from ..store.failures import disk_failure
from ..times import stamp_in, utcnow
from .journal import settle_pending
from .manager import PluginInfo, PluginSet, parse_duration
from .store_view import StoreView
from .types import CycleStats
from .upstream import Upstream

log = logging.getLogger("wandb_mirror.delivery")


def _environmental(e: BaseException) -> str | None:
    """Why `e` (or what caused it) is a full, read-only or failing disk rather than a plugin bug."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 5:
        why = disk_failure(cur)
        if why:
            return why
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


# The [daemon] keys delivery reads; their defaults, types and meaning are declared in config.py.
DELIVERY_KEYS = ("hook_timeout", "max_failures", "retry_backoff", "retry_backoff_max", "stop_grace")
_DEFAULTS = DaemonConfig()


@dataclass
class DeliverySettings:
    hook_timeout: float = _DEFAULTS.hook_timeout
    max_failures: int = _DEFAULTS.max_failures
    retry_backoff: float = _DEFAULTS.retry_backoff
    retry_backoff_max: float = _DEFAULTS.retry_backoff_max
    stop_grace: float = _DEFAULTS.stop_grace
    batch: int = 500  # change rows read per plugin per round

    @classmethod
    def from_config(cls, daemon: DaemonConfig) -> DeliverySettings:
        return cls(**{key: getattr(daemon, key) for key in DELIVERY_KEYS})


@dataclass
class DeliveryStats:
    events: int = 0  # hook calls that succeeded
    skipped: int = 0  # change rows a plugin had no hook for
    failures: int = 0
    disabled: list[str] = field(default_factory=list)
    abandoned: int = 0
    stopped: bool = False


class _Job:
    __slots__ = ("fn", "done", "result", "error", "tb")

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.tb = ""


class _Worker:
    """One daemon thread per plugin running its hook calls; replaced when a call is abandoned."""

    def __init__(self, name: str):
        self.q: queue.Queue[_Job | None] = queue.Queue()
        self.abandoned = False
        self.thread = threading.Thread(target=self._loop, name=f"plugin-{name}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.q.get()
            if job is None:
                return
            try:
                job.result = job.fn()
            except BaseException as e:  # noqa: BLE001 - reported to the dispatcher, never raised here
                job.error = e
                job.tb = traceback.format_exc()
            job.done.set()
            if self.abandoned:
                return

    def submit(self, fn: Callable[[], Any]) -> _Job:
        job = _Job(fn)
        self.q.put(job)
        return job

    def close(self) -> None:
        self.q.put(None)


@dataclass
class _PluginRuntime:
    info: PluginInfo
    view: StoreView
    upstream: Upstream
    worker: _Worker | None = None
    hung: list[_Worker] = field(default_factory=list)
    retry_at: float = 0.0  # monotonic time before which the plugin is not called again
    env_failures: int = 0  # consecutive failures of its disk (full, read-only, I/O): never disable it
    failures: int = 0
    disabled: bool = False


class Dispatcher:
    """Delivers change rows to the enabled plugins of a `PluginSet`."""

    def __init__(
        self,
        store: Store,
        plugins: PluginSet,
        *,
        transport: Transport | None = None,
        settings: DeliverySettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.plugins = plugins
        self.transport = transport
        self.settings = settings or DeliverySettings()
        self.clock = clock
        self.write_stats: dict[str, int] = {}
        self.failures_total = 0
        self._rt: dict[str, _PluginRuntime] = {}
        self._sync_runtimes()
        self._settle_journal()

    # -- setup -------------------------------------------------------------------------------
    def replace_plugins(self, plugins: PluginSet) -> None:
        """Switch to a reloaded plugin set; plugins whose source changed get a fresh start."""
        old = self._rt
        self.plugins = plugins
        self._rt = {}
        for name, rt in old.items():
            new = plugins.get(name)
            if new is not None and new.digest and new.digest != rt.info.digest:
                self.reset(name, reason="its source changed")
        self._sync_runtimes()
        # Keep each plugin's worker thread (and so its catalog connection) across reloads.
        for name, rt in old.items():
            if name in self._rt:
                self._rt[name].worker, self._rt[name].hung = rt.worker, rt.hung
            elif rt.worker is not None:
                rt.worker.close()

    def set_transport(self, transport: Transport | None) -> None:
        """Use `transport` for every plugin's upstream writes from now on."""
        self.transport = transport
        for rt in self._rt.values():
            rt.upstream._transport = transport
        self._settle_journal()

    def _settle_journal(self) -> None:
        """Settle the writes a killed process journaled as intents, by reading upstream (hooks/journal.py)."""
        transport = self.transport
        if transport is not None:
            settle_pending(self.store, lambda doc, variables: transport.graphql(doc.name, doc.text, variables))

    def _sync_runtimes(self) -> None:
        for info in self.plugins.enabled():
            if info.name in self._rt:
                continue
            row = self._cursor_row(info.name)
            rt = _PluginRuntime(
                info=info,
                view=StoreView(self.store, info.name),
                upstream=Upstream(info.name, self.store, self.transport, dry_run=info.dry_run, stats=self.write_stats),
                failures=row["failures"],
                disabled=row["disabled_at"] is not None,
            )
            self._rt[info.name] = rt

    def _cursor_row(self, name: str) -> dict[str, Any]:
        cat = self.store.catalog
        with cat.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO plugin_cursors (plugin, seq, failures, updated_at) VALUES (?, 0, 0, ?)",
                         [name, utcnow()])
        return cat.query_one("SELECT * FROM plugin_cursors WHERE plugin = ?", [name]) or {}

    def reset(self, name: str, *, reason: str = "reset") -> None:
        """Clear a plugin's failure count and disabled mark (its cursor stays)."""
        with self.store.catalog.transaction() as conn:
            conn.execute(
                "UPDATE plugin_cursors SET failures = 0, disabled_at = NULL, retry_at = NULL, updated_at = ? WHERE plugin = ?",
                [utcnow(), name],
            )
        if name in self._rt:
            self._rt[name].failures = 0
            self._rt[name].disabled = False
            self._rt[name].retry_at = 0.0
        log.info("plugin %s re-enabled: %s", name, reason)

    def close(self) -> None:
        for rt in self._rt.values():
            if rt.worker is not None:
                rt.worker.close()
                rt.worker = None

    # -- delivery ----------------------------------------------------------------------------
    def active(self) -> list[_PluginRuntime]:
        return [rt for rt in self._rt.values() if not rt.disabled]

    def next_retry_in(self) -> float | None:
        """Seconds until a plugin waiting after a failure may be retried (None if none waits)."""
        now = self.clock()
        waits = [rt.retry_at - now for rt in self.active() if rt.retry_at > now]
        return max(0.0, min(waits)) if waits else None

    def pending(self) -> int:
        """Change rows not yet acknowledged by the slowest active plugin."""
        if not self.active():
            return 0
        low = min(self._cursor(rt.info.name) for rt in self.active())
        return int(self.store.catalog.scalar("SELECT COUNT(*) FROM changes WHERE seq > ?", [low]) or 0)

    def _cursor(self, name: str) -> int:
        return int(self.store.catalog.scalar("SELECT seq FROM plugin_cursors WHERE plugin = ?", [name]) or 0)

    def deliver(self, stop: threading.Event | None = None) -> DeliveryStats:
        """Deliver every pending change row to every active plugin (until caught up or stopped)."""
        stop = stop or threading.Event()
        stats = DeliveryStats()
        progressing = True
        while progressing and not stop.is_set():
            progressing = False
            for rt in list(self.active()):
                if stop.is_set():
                    break
                if rt.retry_at > self.clock():
                    continue
                n = self._deliver_batch(rt, stop, stats)
                progressing = progressing or n > 0
        stats.stopped = stop.is_set()
        return stats

    def _deliver_batch(self, rt: _PluginRuntime, stop: threading.Event, stats: DeliveryStats) -> int:
        name = rt.info.name
        cursor = self._cursor(name)
        rows = self.store.catalog.query(
            "SELECT * FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", [cursor, self.settings.batch]
        )
        advanced = cursor
        done = 0
        for row in rows:
            if stop.is_set():
                break
            event = event_from_row(row)
            if event is None or event.hook not in rt.info.hooks:
                advanced = row["seq"]
                stats.skipped += 1
                done += 1
                continue
            try:
                kwargs = event.hook_args(rt.view)
            except LookupError as e:
                # The subject vanished from the catalog (should not happen: tombstones keep rows).
                log.warning("plugin %s: skipping change %d (%s): %s", name, row["seq"], row["kind"], e)
                advanced = row["seq"]
                done += 1
                continue
            if advanced != cursor:  # acknowledge the skipped rows before a call that may hang
                self._ack(name, advanced)
                cursor = advanced
            outcome = self._call(rt, event.hook, kwargs, stop, event=f"change {row['seq']} {event.describe()}")
            if outcome == "ok":
                self._ack(name, row["seq"])
                cursor = advanced = row["seq"]
                stats.events += 1
                done += 1
            elif outcome == "stopped":
                stats.abandoned += 1
                break
            else:
                stats.failures += 1
                if rt.disabled:
                    stats.disabled.append(name)
                break
        if advanced != cursor:
            self._ack(name, advanced)
        return done

    def _ack(self, name: str, seq: int) -> None:
        with self.store.catalog.transaction() as conn:
            conn.execute(
                "UPDATE plugin_cursors SET seq = ?, failures = 0, last_error = NULL, retry_at = NULL, updated_at = ? "
                "WHERE plugin = ?",
                [seq, utcnow(), name],
            )
        rt = self._rt.get(name)
        if rt is not None:
            rt.failures = 0

    # -- one hook call -------------------------------------------------------------------------
    def _call(self, rt: _PluginRuntime, hook: str, args: dict[str, Any], stop: threading.Event, *, event: str) -> str:
        """Run one hook of one plugin; returns "ok", "failed" or "stopped"."""
        info = rt.info
        # A previous call of this plugin that was abandoned and is still running: do not pile up.
        rt.hung = [w for w in rt.hung if w.thread.is_alive()]
        if rt.hung:
            self._failed(rt, hook, event, "its previous hook call is still running after the timeout", "")
            return "failed"
        upstream = rt.upstream.bind()
        call_kwargs = dict(args)
        call_kwargs.update(upstream=upstream, config=dict(info.config), store=rt.view)
        caller = self.plugins.hook_caller(info, hook)
        if rt.worker is None:
            rt.worker = _Worker(info.name)
        job = rt.worker.submit(lambda: caller(**call_kwargs))
        timeout = self._timeout(info)
        start = time.monotonic()  # real time, even when tests freeze the wall clock
        stop_seen: float | None = None
        while not job.done.wait(0.05):
            now = time.monotonic()
            if stop.is_set() and stop_seen is None:
                stop_seen = now
            if stop_seen is not None and now - stop_seen >= self.settings.stop_grace:
                self._abandon(rt, upstream)
                log.warning("plugin %s: %s abandoned at shutdown; it will be delivered again", info.name, event)
                return "stopped"
            if now - start >= timeout:
                self._abandon(rt, upstream)
                self._failed(rt, hook, event, f"timed out after {timeout:g}s (abandoned)", "")
                return "failed"
        if job.error is not None:
            env = _environmental(job.error)
            if env:
                self._env_failed(rt, hook, event, env)
            else:
                self._failed(rt, hook, event, f"{type(job.error).__name__}: {job.error}", job.tb)
            return "failed"
        rt.env_failures = 0
        return "ok"

    def _timeout(self, info: PluginInfo) -> float:
        if "hook_timeout" in info.config:
            try:
                return parse_duration(info.config["hook_timeout"])
            except ValueError:
                pass
        return self.settings.hook_timeout

    def _abandon(self, rt: _PluginRuntime, upstream: Upstream) -> None:
        upstream.revoke()
        if rt.worker is not None:
            rt.worker.abandoned = True
            rt.worker.close()
            rt.hung.append(rt.worker)
            rt.worker = None

    def _env_failed(self, rt: _PluginRuntime, hook: str, event: str, reason: str) -> None:
        """The disk (or filesystem) the plugin writes to is full, read-only or failing: not the
        plugin's fault. Retried with the same capped backoff, for as long as it takes, without
        counting toward disabling it."""
        rt.env_failures += 1
        delay = min(self.settings.retry_backoff * (2 ** (rt.env_failures - 1)), self.settings.retry_backoff_max)
        rt.retry_at = self.clock() + delay
        err = f"{hook} on {event}: {reason} (the environment, not the plugin: retried in {delay:g}s)"
        log.warning("plugin %s could not finish: %s", rt.info.name, err)
        with self.store.catalog.transaction() as conn:
            conn.execute("UPDATE plugin_cursors SET last_error = ?, retry_at = ?, updated_at = ? WHERE plugin = ?",
                         [err[:4000], stamp_in(delay), utcnow(), rt.info.name])

    def _failed(self, rt: _PluginRuntime, hook: str, event: str, message: str, tb: str) -> None:
        name = rt.info.name
        rt.failures += 1
        self.failures_total += 1
        limit = int(rt.info.config.get("max_failures", self.settings.max_failures))
        delay = min(self.settings.retry_backoff * (2 ** (rt.failures - 1)), self.settings.retry_backoff_max)
        rt.retry_at = self.clock() + delay
        err = f"{hook} on {event}: {message}"
        log.error("plugin %s failed (%d/%d) in %s\n%s", name, rt.failures, limit, err, tb.rstrip() or "(no traceback)")
        retry_wall = stamp_in(delay)
        disabled_at = None
        if rt.failures >= limit:
            rt.disabled = True
            disabled_at = utcnow()
            log.error(
                "plugin %s DISABLED after %d consecutive failures; the mirror goes on without it. Last error: %s. "
                "Fix it, then `wandb-mirror plugins --config FILE --reset %s` (or edit its file) to re-enable.",
                name, rt.failures, err, name,
            )
        with self.store.catalog.transaction() as conn:
            conn.execute(
                "UPDATE plugin_cursors SET failures = ?, last_error = ?, retry_at = ?, "
                "disabled_at = COALESCE(?, disabled_at), updated_at = ? WHERE plugin = ?",
                [rt.failures, (err + ("\n" + tb if tb else ""))[:4000], retry_wall, disabled_at, utcnow(), name],
            )

    # -- cycle_finished ----------------------------------------------------------------------------
    def cycle_finished(self, stats: CycleStats, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        for rt in list(self.active()):
            if "cycle_finished" not in rt.info.hooks or stop.is_set():
                continue
            if rt.retry_at > self.clock():
                continue
            outcome = self._call(rt, "cycle_finished", {"stats": stats}, stop, event=f"cycle {stats.cycle}")
            if outcome == "ok":
                if rt.failures:
                    self._ack(rt.info.name, self._cursor(rt.info.name))
            elif outcome == "failed":
                stats.plugin_failures += 1

