"""The daemon's view of the sync engine: one pass in, a `PassOutcome` out.

`EngineRunner` keeps one `sync.Engine` (and its HTTP client) across passes, as `sync` does, and
makes a pass stoppable from outside: the engine's client is wrapped so that once the daemon is
told to stop, every further upstream call (and every chunk of a download in progress) raises
`PassAborted`. The engine then winds down the way it handles any aborted pass: the work already
committed stays (each run/file/artifact is committed atomically), a download in progress is
discarded by the object store (its temp file removed), the pass is recorded as failed and
applies no tombstones, and the next pass resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
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


# (config, store, stop) -> PassOutcome
SyncPass = Callable[[Any, Store, threading.Event], PassOutcome]


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


class _Stopping(Exception):
    pass


class StoppableClient:
    """Proxy over the engine's WandbClient: after `stop` is set, calls raise PassAborted."""

    def __init__(self, client: Any, stop: threading.Event, on_progress: Callable[[], None] | None = None):
        self._client = client
        self._stop = stop
        self._beat = on_progress or (lambda: None)

    def _check(self) -> None:
        if self._stop.is_set():
            from ..sync.engine import PassAborted

            raise PassAborted("the daemon is stopping")
        self._beat()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name in ("close",):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            if name == "fetch_to_store" and len(args) >= 2:
                args = (args[0], _StoppableObjects(args[1], self), *args[2:])
            elif name == "fetch_to_store" and "objects" in kwargs:
                kwargs["objects"] = _StoppableObjects(kwargs["objects"], self)
            result = attr(*args, **kwargs)
            if isinstance(result, Iterator):
                return self._iterate(result)
            return result

        return call

    def _iterate(self, it: Iterator[Any]) -> Iterator[Any]:
        for item in it:
            yield item
            self._check()


class _StoppableObjects:
    """ObjectStore proxy whose streamed writes abort (and so discard their temp file) on stop."""

    def __init__(self, objects: Any, client: StoppableClient):
        self._objects = objects
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objects, name)

    def put_stream(self, chunks: Any, **kwargs: Any) -> Any:
        def guarded() -> Iterator[bytes]:
            for chunk in chunks:
                self._client._check()
                yield chunk

        return self._objects.put_stream(guarded(), **kwargs)


class EngineRunner:
    """Runs sync passes for the daemon with one Engine; `__call__` matches `SyncPass`."""

    def __init__(self, config: Any, store: Store, *, on_progress: Callable[[], None] | None = None):
        from ..sync.engine import Engine, make_client

        self.config = config
        self.on_progress = on_progress
        self._stop = threading.Event()
        self.raw_client = make_client(config)
        self.engine = Engine(config, store, StoppableClient(self.raw_client, self._stop, on_progress))

    def __call__(self, config: Any, store: Store, stop: threading.Event) -> PassOutcome:
        if config is not self.config:
            self.reconfigure(config, store)
        # The pass runs in this (the main) thread; a watcher thread turns the daemon's stop into
        # the client's stop flag, so the engine's own worker threads see it too.
        self._stop.clear()
        done = threading.Event()

        def relay() -> None:
            while not done.is_set():
                if stop.wait(0.1):
                    self._stop.set()
                    return

        t = threading.Thread(target=relay, name="stop-relay", daemon=True)
        t.start()
        before = self.raw_client.stats.snapshot()
        t0 = time.monotonic()
        try:
            result = self.engine.run_pass()
        except Exception as e:  # noqa: BLE001 - AuthError etc.: logged, retried next cycle
            log.error("sync pass failed: %s", e)
            return PassOutcome(status="failed", duration_s=time.monotonic() - t0, error=str(e))
        finally:
            done.set()
            t.join(timeout=1)
        out = outcome_from(result, time.monotonic() - t0, before.get("requests", before))
        if stop.is_set() and out.status == "failed":
            out.status = "stopped"
        return out

    def reconfigure(self, config: Any, store: Store) -> None:
        from ..sync.engine import Engine, make_client

        old = self.raw_client
        self.config = config
        self.raw_client = make_client(config)
        self.engine = Engine(config, store, StoppableClient(self.raw_client, self._stop, self.on_progress))
        old.close()

    def close(self) -> None:
        self.raw_client.close()


def skipped_pass(config: Any, store: Store, stop: threading.Event) -> PassOutcome:
    """A SyncPass that does nothing (plugins-only operation, tests)."""
    return PassOutcome(status="skipped")
