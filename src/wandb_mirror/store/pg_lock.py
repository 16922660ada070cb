"""One writer per store on a PostgreSQL catalog: a session advisory lock instead of an flock.

PostgreSQL releases it when the holding connection ends, and a process killed with kill -9
ends its connection (the kernel closes the socket), so a dead writer never keeps the store.
Whoever holds it is found through pg_locks and the holder's application_name."""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import StoreLocked
from .connections import describe


class PgStoreLock:
    """As StoreLock: exclusive (`sync`, `gc`, `repair`...), or `shared` by daemon workers, which an
    exclusive holder and they exclude each other."""

    def __init__(self, url: str, purpose: str = "write", *, shared: bool = False):
        self.url = url
        self.purpose = purpose
        self.shared = shared
        # whether this process was the only holder when it took the lock (store/lock.py says why)
        self.alone = False
        self._conn: Any = None

    def acquire(self) -> PgStoreLock:
        from .pg import LOCK_STORE, PgConnection

        conn = PgConnection(self.url, application_name=f"wandb-mirror pid {os.getpid()} {self.purpose}")
        key = [conn.lock_class, LOCK_STORE]
        got = conn.raw.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", key).fetchone()[0]
        self.alone = bool(got)
        if self.shared:
            # another worker may hold it exclusively for a moment, between taking it alone and holding
            # it shared: a shared request waits that moment out (a second), not an exclusive writer
            deadline = time.monotonic() + 1.0
            while not got:
                got = conn.raw.execute("SELECT pg_try_advisory_lock_shared(%s::int4, %s::int4)", key).fetchone()[0]
                if got or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if self.alone:
                # alone: hold it shared from now on, so that other workers may join
                conn.raw.execute("SELECT pg_advisory_lock_shared(%s::int4, %s::int4)", key)
                conn.raw.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", key)
        if not got:
            row = conn.raw.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid::bigint = (%s::bigint & 4294967295) "
                "AND l.objid::bigint = %s AND l.granted LIMIT 1", key).fetchone()
            conn.close()
            holder = row[0] if row and row[0] else ""
            raise StoreLocked(f"catalog {describe(self.url)} is in use by another wandb-mirror process"
                              + (f" ({holder.removeprefix('wandb-mirror ')})" if holder else "")
                              + ("; workers (`wandb-mirror run`) share a store, other writers need it alone"
                                 if self.shared else "; only one writer may run at a time (several "
                                 "`wandb-mirror run` workers may share it)"))
        self._conn = conn
        return self

    def release(self) -> None:
        if self._conn is not None:
            # unlocked before the session ends: a backend exits a moment after its client leaves,
            # and the next writer (often this process) must not find the lock still held
            try:
                self._conn.raw.execute("SELECT pg_advisory_unlock_all()")  # exclusive or shared: this session's
            except Exception:  # noqa: BLE001 - a connection already gone has released it anyway
                pass
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PgStoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
