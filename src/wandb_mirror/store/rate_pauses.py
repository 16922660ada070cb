"""One request budget per API key, shared by every worker of a store.

When the upstream answers 429 with Retry-After, the worker that saw it records a pause for the key
in `rate_pauses`; every worker using that key checks the pause before each request and waits it
out, so a rate limit stops all of them at once instead of each one finding it alone. The key is
never stored: rows are keyed by a salted sha256 of it (`Transport.key_fingerprint`), the salt
being a random value of this catalog (`meta.rate_salt`).

`[sync] rate_limit` is the store's budget, not each worker's: a worker sends at most
rate_limit / N requests per second while N workers are alive (their `worker:` leases,
store/claims.py), so N workers together stay within it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger("wandb_mirror.client")

SALT_KEY = "rate_salt"


def catalog_salt(catalog: Catalog) -> str:
    """This catalog's fingerprint salt, created on first use (every worker then reads the same one)."""
    with catalog.transaction() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                     [SALT_KEY, secrets.token_hex(16)])
        return str(conn.execute("SELECT value FROM meta WHERE key = ?", [SALT_KEY]).fetchone()[0])


class PauseGate:
    """The shared pause of one key. `wait` before a request; `pause` on a 429 with Retry-After.

    The pause is re-read at most every `check_every` seconds (a pass sends many requests a
    second; a rate limit lasts seconds to minutes), and at once after this worker sets one.
    """

    def __init__(self, catalog: Catalog, fingerprint: str, *, worker: str = "", check_every: float = 1.0,
                 clock: Callable[[], float] = time.time):
        self.catalog = catalog
        self.fingerprint = fingerprint
        self.worker = worker
        self.check_every = check_every
        self.clock = clock
        self._until = 0.0
        self._workers = 1
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds this worker spent waiting for pauses (for tests and metrics)

    def until(self) -> float:
        """Epoch seconds before which no request may be sent with this key (0: no pause)."""
        self._refresh()
        return self._until

    def share(self) -> int:
        """How many live workers share the configured rate limit (at least 1)."""
        self._refresh()
        return self._workers

    def _refresh(self) -> None:
        now = self.clock()
        with self._lock:
            if now - self._read_at < self.check_every:
                return
        try:
            value = self.catalog.scalar("SELECT until_at FROM rate_pauses WHERE key_fingerprint = ?",
                                        [self.fingerprint])
            workers = self.catalog.scalar("SELECT COUNT(*) FROM claims WHERE key LIKE 'worker:%' "
                                          "AND worker IS NOT NULL AND expires_at >= ?", [now])
        except Exception as e:  # noqa: BLE001 - a busy catalog must not fail a request: use the last answer
            log.debug("reading the shared rate pause failed: %s", e)
            return
        with self._lock:
            self._until, self._workers, self._read_at = float(value or 0.0), max(1, int(workers or 0)), now

    def wait(self, stop: threading.Event | None = None) -> None:
        """Block until the key's pause is over, or `stop` is set (the caller checks it)."""
        while True:
            left = self.until() - self.clock()
            if left <= 0:
                return
            step = min(left, self.check_every)
            self.waited += step
            if stop is not None:
                if stop.wait(step):
                    return
            else:
                time.sleep(step)

    def pause(self, seconds: float, reason: str = "HTTP 429") -> None:
        """Pause every worker using this key for `seconds` (a later end already set is kept)."""
        until = self.clock() + max(0.0, seconds)
        try:
            with self.catalog.transaction() as conn:
                conn.execute(
                    "INSERT INTO rate_pauses (key_fingerprint, until_at, set_by, reason) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key_fingerprint) DO UPDATE SET "
                    "until_at = CASE WHEN excluded.until_at > rate_pauses.until_at "
                    "THEN excluded.until_at ELSE rate_pauses.until_at END, "
                    "set_by = excluded.set_by, reason = excluded.reason",
                    [self.fingerprint, until, self.worker, reason])
        except Exception as e:  # noqa: BLE001 - the local backoff still applies
            log.warning("recording the shared rate pause failed: %s", e)
            return
        with self._lock:
            self._read_at = float("-inf")
        log.info("upstream rate limit: every worker with this key pauses %.1fs (%s)", seconds, reason)
