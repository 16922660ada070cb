"""The daemon's view of the sync engine: one pass in, a `PassOutcome` out.

The daemon calls `engine_pass(config, store, stop)`. It wraps the engine helper's pass function
(src/wandb_mirror/sync/) and turns whatever it returns into a `PassOutcome`. A pass that raises
becomes a "failed" outcome: the daemon logs it and tries again next cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store import Store

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


SyncPass = Callable[[Any, Store, threading.Event], PassOutcome]


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def outcome_from(result: Any, duration: float) -> PassOutcome:
    """Normalise the engine's result object (dataclass or dict) into a PassOutcome."""
    if isinstance(result, PassOutcome):
        result.duration_s = result.duration_s or duration
        return result
    stats = _get(result, "stats", default={}) or {}
    if hasattr(stats, "__dataclass_fields__"):
        from dataclasses import asdict

        stats = asdict(stats)
    if not isinstance(stats, dict):
        stats = {"value": str(stats)}
    req = _get(result, "requests", default=None)
    if isinstance(req, dict):
        requests_total = int(req.get("total", 0) or 0)
        retries = int(req.get("retries", 0) or 0)
        limited = int(req.get("rate_limited", 0) or 0)
    else:
        reqstats = stats.get("requests") if isinstance(stats.get("requests"), dict) else {}
        requests_total = int(req or reqstats.get("total", 0) or 0)
        retries = int(_get(result, "retries", default=None) or reqstats.get("retries", 0) or 0)
        limited = int(_get(result, "rate_limited", default=None) or reqstats.get("rate_limited", 0) or 0)
    return PassOutcome(
        status=str(_get(result, "status", default="ok") or "ok"),
        pass_id=_get(result, "pass_id", "id", default=None),
        duration_s=float(_get(result, "duration_s", "duration", default=None) or duration),
        requests=requests_total,
        retries=retries,
        rate_limited=limited,
        stats=stats,
    )


def engine_pass(config: Any, store: Store, stop: threading.Event) -> PassOutcome:
    """One sync pass through the engine helper's API; "skipped" if the engine is not installed."""
    try:
        from .. import sync as sync_pkg  # noqa: F401
    except ImportError:
        return PassOutcome(status="skipped", error="the sync engine is not available")
    fn = _find_engine_function()
    if fn is None:
        return PassOutcome(status="skipped", error="the sync engine has no pass function")
    t0 = time.monotonic()
    try:
        result = fn(config, store, stop)
    except Exception as e:  # noqa: BLE001 - the daemon logs and retries next cycle
        log.error("sync pass failed: %s: %s", type(e).__name__, e)
        return PassOutcome(status="failed", duration_s=time.monotonic() - t0, error=f"{type(e).__name__}: {e}")
    return outcome_from(result, time.monotonic() - t0)


def _find_engine_function() -> Callable[[Any, Store, threading.Event], Any] | None:
    import importlib
    import inspect

    for modname, fname in (("wandb_mirror.sync", "run_pass"), ("wandb_mirror.sync.engine", "run_pass"),
                           ("wandb_mirror.sync", "sync_once"), ("wandb_mirror.sync.engine", "sync_once")):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        fn = getattr(mod, fname, None)
        if fn is None:
            continue
        params = inspect.signature(fn).parameters

        def call(config: Any, store: Store, stop: threading.Event, _fn=fn, _params=params) -> Any:
            kwargs: dict[str, Any] = {}
            if "stop" in _params:
                kwargs["stop"] = stop
            elif "should_stop" in _params:
                kwargs["should_stop"] = stop.is_set
            if "store" in _params:
                kwargs["store"] = store
                return _fn(config, **kwargs)
            return _fn(config, **kwargs)

        return call
    return None
