"""One download per object at a time: a worker that needs bytes another worker is fetching waits
for that download instead of starting its own.

Artifact versions share most of their files, and a first mirror takes several versions at once
(one per run worker): each checked `objects.has(md5)` before the other's download of the same
bytes had landed, so the bench's 20 versions of 20 files (96 distinct contents) cost ~290 file
GETs. Keyed by the md5 the manifest announces, so only verified, content-addressed downloads are
shared; a waiter checks the store again afterwards and downloads itself if the first one failed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    @contextmanager
    def lead(self, key: str) -> Iterator[bool]:
        """True inside: this caller fetches `key` (others wait until it leaves). False: another
        caller was fetching it and has finished (successfully or not): check the result and ask again."""
        with self._lock:
            done = self._running.get(key)
            if done is None:
                done = self._running[key] = threading.Event()
                leader = True
            else:
                leader = False
        if not leader:
            done.wait()
            yield False
            return
        try:
            yield True
        finally:
            with self._lock:
                del self._running[key]
            done.set()
