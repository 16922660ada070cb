"""Listed upstream vs stored here: which items are new, changed or gone, and when a listing proves a
deletion. Matching only; acting on the answer (fetching, recording, tombstoning) is the units' job.

A listing proves that an absent item was deleted only if it is complete: it ended without an error,
refused none of its entries (a refused entry might be the "missing" one), and, for runs, the server's
own count agrees and no page repeated another (W&B's pagination can skip rows when it repeats some).
Even then a deletion is only a candidate: the engine applies tombstones at the end of a pass that had
no errors, never otherwise, and never deletes local data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from enum import Enum
from typing import Generic, TypeVar

from ..client import Problem
from ..events import Tombstoned
from ..store.sync_records import Tombstone
from . import changes as ch

K = TypeVar("K")
S = TypeVar("S")
L = TypeVar("L")


class Verdict(Enum):
    NEW = "new"
    CHANGED = "changed"
    SAME = "same"


def judge(listed: L, stored: S | None, differs: Callable[[L, S], bool]) -> Verdict:
    """NEW when nothing is stored under the listed key, CHANGED when `differs`, else SAME."""
    if stored is None:
        return Verdict.NEW
    return Verdict.CHANGED if differs(listed, stored) else Verdict.SAME


def gone(stored: Mapping[K, S], listed: Collection[K]) -> Iterator[tuple[K, S]]:
    """The stored items a listing no longer holds."""
    for key, row in stored.items():
        if key not in listed:
            yield key, row


def proves_deletions(*, complete: bool = True, problems: Collection[Problem] = ()) -> bool:
    """Whether a listing may tombstone what it does not hold (module docstring)."""
    return complete and not problems


class Listing(Generic[K]):
    """Keys a streamed listing held, and whether it can prove deletions."""

    def __init__(self) -> None:
        self.keys: set[K] = set()
        self.complete = True

    def add(self, key: K) -> None:
        self.keys.add(key)

    def refused(self) -> None:
        """An entry was refused (unsafe, malformed) or could not be followed: no deletions."""
        self.complete = False

    def gone(self, stored: Mapping[K, S]) -> Iterator[tuple[K, S]]:
        """What `stored` has that this listing lacks; nothing unless the listing is complete."""
        if self.complete:
            yield from gone(stored, self.keys)


def tombstone(table: str, pk: int, scope: ch.Scope, kind: str, key: str, run: str | None = None) -> Tombstone:
    """A tombstone candidate for the row `pk` of `table`, with its `tombstoned` change."""
    return Tombstone(table, pk, ch.change_of(scope, Tombstoned(what=kind, key=key, run=run)))
