"""Leases: several workers (`wandb-mirror run` processes) share a store's work, one unit at a time.

A unit of work (a project's sync, the organization, history compaction, plugin delivery) is held
by at most one worker until its lease runs out. A worker is `host:pid`. Taking a lease is one
conditional UPDATE in a write transaction, so two workers never both win it; the holder renews
its leases while it works (`renew`, from a thread, every third of the lease), and a worker that
dies (kill -9, a lost host) simply stops renewing: once `expires_at` has passed, any other worker
takes the unit over. Everything a unit wrote before is committed run by run, so nothing is lost,
and a unit done twice writes the same rows again.

Besides the lease, each row remembers who finished the unit last and when (`status --json` shows
it per project), which is also how workers avoid repeating each other: a unit another worker
finished since `fresh_since` is not due again yet.

Plain SQL (no SQLite-only forms), so the same statements run on PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..times import epoch, utcnow

if TYPE_CHECKING:
    from .catalog import Catalog

DEFAULT_LEASE = 60.0


def worker_name() -> str:
    """This process as a worker: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def project_key(entity: str, project: str) -> str:
    return f"project:{entity}/{project}"


@dataclass(frozen=True)
class Claim:
    """One row of `claims`: who holds a unit (until when) and who finished it last."""

    key: str
    worker: str | None
    claimed_at: str | None
    expires_at: float
    done_by: str | None
    done_at: str | None
    done_status: str | None


class Claims:
    """This worker's leases on `catalog`.

    `exclusive`: the caller holds the store lock alone (`sync`), so no other worker can be alive
    and a lease still running is a dead worker's: it is taken over at once.
    """

    def __init__(self, catalog: Catalog, *, worker: str | None = None, lease: float = DEFAULT_LEASE,
                 exclusive: bool = False, clock: Callable[[], float] = time.time):
        self.catalog = catalog
        self.worker = worker or worker_name()
        self.lease = float(lease)
        self.exclusive = exclusive
        self.clock = clock
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str, *, fresh_since: str | None = None) -> bool:
        """Take the lease on `key`. False when another live worker holds it, or (with
        `fresh_since`, a utcnow() stamp) when another worker finished it at or after that time."""
        now = self.clock()
        sql = ("UPDATE claims SET worker = ?, claimed_at = ?, expires_at = ? WHERE key = ?")
        params: list[Any] = [self.worker, utcnow(), now + self.lease, key]
        if not self.exclusive:
            sql += " AND (worker IS NULL OR worker = ? OR expires_at < ?)"
            params += [self.worker, now]
        if fresh_since is not None:
            sql += " AND (done_at IS NULL OR done_at < ? OR done_by = ?)"
            params += [fresh_since, self.worker]
        with self.catalog.transaction() as conn:
            conn.execute("INSERT INTO claims (key, expires_at) VALUES (?, 0) ON CONFLICT (key) DO NOTHING", [key])
            won = conn.execute(sql, params).rowcount == 1
        if won:
            with self._lock:
                self._held.add(key)
        return won

    def register(self) -> None:
        """Announce this worker for its lifetime (a lease renewed like the others, given back at stop)."""
        self.claim(f"worker:{self.worker}")

    def release(self, key: str, *, status: str | None = None) -> None:
        """Give `key` back; with `status` (ok | errors | failed) the unit is recorded as done by this
        worker. Without it (stopped, killed midway) the unit stays due for whoever comes next."""
        with self._lock:
            self._held.discard(key)
        with self.catalog.transaction() as conn:
            if status is None:
                conn.execute("UPDATE claims SET worker = NULL, expires_at = 0 WHERE key = ? AND worker = ?",
                             [key, self.worker])
            else:
                conn.execute("UPDATE claims SET worker = NULL, expires_at = 0, done_by = ?, done_at = ?, "
                             "done_status = ? WHERE key = ? AND worker = ?",
                             [self.worker, utcnow(), status, key, self.worker])

    def release_all(self) -> None:
        """Every lease this worker holds, given back (a clean stop)."""
        with self._lock:
            self._held.clear()
        with self.catalog.transaction() as conn:
            conn.execute("UPDATE claims SET worker = NULL, expires_at = 0 WHERE worker = ?", [self.worker])

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def renew(self) -> list[str]:
        """Extend this worker's leases and mark its running pass alive; returns the keys it lost
        (taken over because it was not seen for a whole lease: the unit is then done twice)."""
        now = self.clock()
        with self.catalog.transaction() as conn:
            conn.execute("UPDATE claims SET expires_at = ? WHERE worker = ?", [now + self.lease, self.worker])
            conn.execute("UPDATE passes SET renewed_at = ? WHERE worker = ? AND status = 'running'",
                         [now, self.worker])
            mine = {r[0] for r in conn.execute("SELECT key FROM claims WHERE worker = ?", [self.worker])}
        with self._lock:
            lost = sorted(self._held - mine)
            self._held &= mine
        return lost

    def stale_before(self) -> float:
        """A running pass not renewed since this time (epoch seconds) has lost its worker."""
        return self.clock() - self.lease


def claim_rows(catalog: Catalog) -> list[Claim]:
    """Every unit's lease and last completion, by key."""
    return [Claim(**r) for r in catalog.query(
        "SELECT key, worker, claimed_at, expires_at, done_by, done_at, done_status FROM claims ORDER BY key")]


def live_workers(catalog: Catalog, now: float | None = None) -> list[str]:
    """Workers alive now: each holds its own `worker:host:pid` lease for its life (`Claims.register`)."""
    now = time.time() if now is None else now
    return [r["worker"] for r in catalog.query(
        "SELECT worker FROM claims WHERE key LIKE 'worker:%' AND worker IS NOT NULL AND expires_at >= ? "
        "ORDER BY worker", [now])]


def work_status(catalog: Catalog, now: float | None = None) -> dict[str, Any]:
    """Who does the work (`status --json`'s `work`): the workers alive now, and per unit (each
    project, the organization, compaction, delivery) which worker ran it last and when, and who
    holds it now."""
    now = time.time() if now is None else now
    units: dict[str, dict[str, Any]] = {}
    for c in claim_rows(catalog):
        if c.key.startswith("worker:"):
            continue
        units[c.key.removeprefix("project:")] = {
            "last_worker": c.done_by, "last_at": c.done_at, "last_status": c.done_status,
            "held_by": c.worker if c.worker is not None and c.expires_at >= now else None}
    # with several workers the newest pass may be an idle worker's: how stale the mirror can be is
    # the age of the project finished longest ago
    projects = [(u["last_at"], k) for k, u in units.items() if "/" in k and u["last_at"]]
    stalest = None
    if projects:
        at, key = min(projects)
        done = epoch(at)
        stalest = {"unit": key, "last_at": at, "age_seconds": None if done is None else round(now - done, 1)}
    return {"workers": live_workers(catalog, now), "units": units, "stalest_project": stalest}


class Renewer:
    """A thread renewing `claims` every third of the lease until `stop()`."""

    def __init__(self, claims: Claims, *, on_lost: Callable[[list[str]], None] | None = None):
        self.claims = claims
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def start(self) -> Renewer:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = max(0.05, self.claims.lease / 3)
        while not self._stop.wait(interval):
            try:
                lost = self.claims.renew()
            except Exception as e:  # noqa: BLE001 - a busy or unreachable catalog: try again next time
                import logging

                logging.getLogger("wandb_mirror.claims").warning("renewing leases failed: %s", e)
                continue
            if lost and self.on_lost is not None:
                self.on_lost(lost)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
