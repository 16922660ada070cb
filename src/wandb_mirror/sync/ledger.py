"""What one pass learns: counters, errors, quarantined items, tombstone candidates, and whether it
must stop. Every unit of work (a project, a run, a collection...) runs inside `Ledger.unit(where)`,
the one error policy of the engine:

- fatal for the pass (AuthError, RetryBudgetExhausted, PassAborted): re-raised, the pass stops;
- a store that cannot be written (disk full, read-only, I/O error: `store_failure`): re-raised as
  StoreUnwritable, which also marks the pass aborted so queued units are skipped;
- bytes that did not verify (IntegrityError), in a unit given a `quarantine` label: the item is
  quarantined, the unit marked failed, the pass goes on;
- any other MirrorError (an upstream call that failed for good): recorded as an error of `where`,
  the unit is marked failed and the pass goes on;
- anything else is a bug: logged with its traceback, recorded as `where: Type: message`, and the
  pass goes on.

The ledger is created by the engine and handed down; units never reach back up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..client import AuthError, Problem, RetryBudgetExhausted
from ..errors import IntegrityError, MirrorError, PassAborted, Stopping
from ..store.failures import disk_failure
from ..store.sync_records import Tombstone

if TYPE_CHECKING:
    from ..store import Catalog

log = logging.getLogger("wandb_mirror.sync")

FATAL = (AuthError, RetryBudgetExhausted, PassAborted)


class StoreUnwritable(PassAborted):
    """The store's disk is full, read-only or failing: every further write would fail the same way,
    so the pass stops at once (what was committed stays; nothing half-written is kept)."""


# errno values that mean "the store's filesystem cannot take writes", not "this item is bad"
def store_failure(e: BaseException) -> str | None:
    """Why `e` means the store cannot be written (disk full, read-only, I/O error), else None."""
    if isinstance(e, StoreUnwritable):
        return str(e)
    return disk_failure(e)


class Stats:
    """Thread-safe counters of a pass."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n

    def get(self, key: str) -> int:
        with self.lock:
            return self.values.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


class Unit:
    """One unit of work under the ledger's error policy; `failed` tells whether it was cut short."""

    def __init__(self, ledger: Ledger, where: str, on_fail: Callable[[], None] | None,
                 quarantine: tuple[str, str, str] | None) -> None:
        self.ledger = ledger
        self.where = where
        self.on_fail = on_fail
        self.quarantine = quarantine
        self.failed = False

    def __enter__(self) -> Unit:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if e is None or not isinstance(e, Exception) or isinstance(e, FATAL):
            return False
        if store_failure(e):
            raise self.ledger.unwritable(e) from None
        self.failed = True
        if self.quarantine is not None and isinstance(e, IntegrityError):
            what, path, prefix = self.quarantine
            self.ledger.quarantine(what, path, f"{prefix}{e}")
        elif isinstance(e, MirrorError):
            self.ledger.error(self.where, e)
        else:
            log.error("%s failed", self.where, exc_info=(type(e), e, tb))
            self.ledger.error(self.where, f"{type(e).__name__}: {e}")
        if self.on_fail is not None:
            self.on_fail()
        return True


class Ledger:
    """What a pass learns. `catalog` receives quarantined items as they are found."""

    def __init__(self, catalog: Catalog, pass_id: int | None, store_path: Any) -> None:
        self.catalog = catalog
        self.pass_id = pass_id
        self.store_path = store_path
        self.stats = Stats()
        self.errors: list[str] = []
        self.tombstones: list[Tombstone] = []
        self.aborted: PassAborted | None = None  # set when the pass must stop: queued units are skipped
        self._lock = threading.Lock()

    def unit(self, where: str, on_fail: Callable[[], None] | None = None, *,
             quarantine: tuple[str, str, str] | None = None) -> Unit:
        """`with ledger.unit(where) as u:` runs a unit under the error policy (module docstring);
        `on_fail` is called when it fails; `quarantine` = (kind, upstream path, reason prefix) for
        an IntegrityError."""
        return Unit(self, where, on_fail, quarantine)

    def error(self, where: str, message: str | BaseException) -> None:
        text = f"{where}: {message}"
        # asked to stop (SIGTERM): an outcome, not an error
        log.log(logging.INFO if isinstance(message, Stopping) else logging.ERROR, "%s", text)
        with self._lock:
            self.errors.append(text)

    def unwritable(self, e: BaseException) -> StoreUnwritable:
        """The StoreUnwritable to raise for a disk-level failure `e`; later units skip their work."""
        if isinstance(e, StoreUnwritable):
            return e
        err = StoreUnwritable(f"store {self.store_path} cannot be written: {store_failure(e)}; the pass stopped "
                              "(what was committed stays, nothing half-written was kept): free space or fix the "
                              "filesystem, then run again")
        self.aborted = err
        return err

    def quarantine(self, kind: str, upstream_path: str, reason: str, detail: str | None = None) -> None:
        """Record an item that failed verification or was unsafe; it is reported and not stored."""
        self.catalog.quarantine(self.pass_id, kind, upstream_path, reason, detail)
        self.stats.add("quarantined")
        self.error(f"quarantined {kind} {upstream_path}", reason)

    def problems(self, items: list[Problem]) -> None:
        for p in items:
            self.quarantine(p.kind, p.upstream_path, p.reason, p.detail)

    def tombstone(self, t: Tombstone) -> None:
        """A candidate, applied at the end of a pass without errors."""
        with self._lock:
            self.tombstones.append(t)
