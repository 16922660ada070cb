"""Garbage collection: mark every object the catalog references, sweep the rest once they are
older than a grace period. Runs under the store lock, so no writer can be publishing meanwhile."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .store import Store


@dataclass
class GcReport:
    referenced: int = 0
    unreferenced: int = 0
    removed: int = 0
    removed_bytes: int = 0
    kept_young: int = 0
    temp_removed: int = 0
    removed_keys: list[str] = field(default_factory=list)


def collect(store: Store, *, grace_seconds: float = 24 * 3600, dry_run: bool = False, max_delete: int | None = None) -> GcReport:
    """Mark, list, mark again, sweep: an object a catalog row came to reference while the objects
    were being listed (another writer on a shared catalog and bucket) is never removed."""
    rep = GcReport()
    marked = {md5 for md5, _ in store.catalog.referenced_objects()}
    rep.referenced = len(marked)
    now = time.time()
    candidates: list[tuple[str, int]] = []
    for obj in store.objects.iter_objects():
        if obj.md5 in marked:
            continue
        rep.unreferenced += 1
        if now - obj.mtime < grace_seconds:
            rep.kept_young += 1
            continue
        if max_delete is None or len(candidates) < max_delete:
            candidates.append((obj.md5, obj.size))
    if candidates:
        marked = {md5 for md5, _ in store.catalog.referenced_objects()}
    for key, size in candidates:
        if key in marked:
            continue
        rep.removed += 1
        rep.removed_bytes += size
        rep.removed_keys.append(key)
        if not dry_run:
            store.objects.remove(key)
    if not dry_run:
        rep.temp_removed = store.objects.clean_tmp()  # under the lock no writer is running: leftovers are dead
    return rep
