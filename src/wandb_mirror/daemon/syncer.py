"""The daemon's view of the sync engine: one pass in, a `PassOutcome` out.

`EngineRunner` keeps one `sync.SyncEngine` (and its HTTP client) across passes, as `sync` does, and
makes a pass stoppable from outside: the daemon's stop event is handed to the engine's HTTP
transport, so that once it is set every further upstream call (and every chunk of a download in
progress) raises `PassAborted`. The engine then winds down the way it handles any aborted pass: the work already
committed stays (each run/file/artifact is committed atomically), a download in progress is
discarded by the object store (its temp file removed), the pass is recorded as failed and
applies no tombstones, and the next pass resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .. import times
from ..client.transport import Transport
from ..config import Config
from ..store import Store
from ..store.claims import Claims
from ..store.rate_pauses import PauseGate, catalog_salt
from ..times import stamp

log = logging.getLogger("wandb_mirror.daemon")


@dataclass
class PassOutcome:
    status: str = "skipped"  # ok | errors | failed | stopped | skipped (no engine)
    pass_id: int | None = None
    duration_s: float = 0.0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# (config, store, stop) -> PassOutcome
SyncPass = Callable[[Config, Store, threading.Event], PassOutcome]


def outcome_from(result: Any, duration: float, before: dict[str, Any] | None = None) -> PassOutcome:
    """A PassOutcome from the engine's PassResult; request counters as deltas against `before`."""
    stats = dict(getattr(result, "stats", {}) or {})
    if isinstance(stats.get("requests_pass"), dict):  # the engine's own per-pass deltas
        req, before = stats["requests_pass"], {}
    else:
        req = stats.get("requests") if isinstance(stats.get("requests"), dict) else {}
        before = before or {}

    def delta(key: str) -> int:
        return max(0, int(req.get(key, 0) or 0) - int(before.get(key, 0) or 0))

    return PassOutcome(
        status=str(getattr(result, "status", "ok")),
        pass_id=getattr(result, "pass_id", None),
        duration_s=float(getattr(result, "seconds", 0.0) or duration),
        requests=int(getattr(result, "requests", 0) or 0),
        retries=delta("retries"),
        rate_limited=delta("rate_limited"),
        stats=stats,
        error=(getattr(result, "errors", None) or [None])[0],
    )


def share_budget(transport: Transport, store: Store, worker: str) -> None:
    """With other workers on this store, this key's rate pauses are theirs too (and theirs ours)."""
    transport.shared_pause = PauseGate(store.catalog, transport.key_fingerprint(catalog_salt(store.catalog)),
                                       worker=worker)


class EngineRunner:
    """Runs sync passes for the daemon with one SyncEngine; `__call__` matches `SyncPass`."""

    def __init__(self, config: Config, store: Store, *, on_progress: Callable[[], None] | None = None,
                 claims: Claims | None = None, skip_fresh: bool = True):
        from ..sync.engine import SyncEngine, make_client

        self.config = config
        self.on_progress = on_progress
        self.claims = claims
        self.skip_fresh = skip_fresh  # False for `run --once`: one whole cycle, whoever did what lately
        self.raw_client = make_client(config)
        self._share_budget(store)
        self.engine = SyncEngine(config, store, self.raw_client, claims=claims)

    def _share_budget(self, store: Store) -> None:
        if self.claims is not None:
            share_budget(self.raw_client.t, store, self.claims.worker)

    def __call__(self, config: Config, store: Store, stop: threading.Event) -> PassOutcome:
        if config is not self.config:
            self.reconfigure(config, store)
        # the transport checks the daemon's stop before every request and download chunk, in every
        # worker thread of the engine
        self.raw_client.t.stop = stop
        self.raw_client.t.on_activity = self.on_progress
        before = self.raw_client.stats.snapshot()
        t0 = time.monotonic()
        try:
            result = self.engine.run_pass(fresh_since=self._fresh_since(config))
        except Exception as e:  # noqa: BLE001 - AuthError etc.: logged, retried next cycle
            log.error("sync pass failed: %s", e)
            return PassOutcome(status="failed", duration_s=time.monotonic() - t0, error=str(e))
        out = outcome_from(result, time.monotonic() - t0, before.get("requests", before))
        if stop.is_set() and out.status in ("failed", "stopped"):
            out.status = "stopped"
            log.info("pass %s stopped by the daemon's shutdown after %.1fs (%d requests); the next pass resumes",
                     result.pass_id, out.duration_s, out.requests)
        else:
            log.info("%s", result.summary())
        return out

    def _fresh_since(self, config: Config) -> str | None:
        """Units another worker finished within the last half interval are not due again yet, so
        workers out of phase do not repeat each other's passes (their own are always due)."""
        if self.claims is None or not self.skip_fresh:
            return None
        return stamp(times.now() - timedelta(seconds=config.daemon.poll_interval / 2))

    def reconfigure(self, config: Config, store: Store) -> None:
        from ..sync.engine import SyncEngine, make_client

        old = self.raw_client
        self.config = config
        self.raw_client = make_client(config)
        self._share_budget(store)
        self.engine = SyncEngine(config, store, self.raw_client, claims=self.claims)
        old.close()

    def close(self) -> None:
        self.raw_client.close()


def skipped_pass(config: Config, store: Store, stop: threading.Event) -> PassOutcome:
    """A SyncPass that does nothing (plugins-only operation, tests)."""
    return PassOutcome(status="skipped")
