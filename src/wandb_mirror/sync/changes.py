"""The change log as sync writes it: one typed event (wandb_mirror.events) per change.

`emit` takes a sink, the `Scope` (pass and project) of the unit that saw the change, and the event.
The sink is either a list, which collects the changes for the catalog method that records their
data (so an event exists if and only if its data does), or the open connection of a catalog
transaction, which writes it at once. The catalog keeps seq order = commit order, so events of one
run are in the order they happened. The kinds and their payloads are declared in events.py.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from typing import Any

from ..events import Event
from ..store.changelog import Change, Scope, encode, insert_change, select_changes
from ..times import utcnow

# where a change goes: collected for a catalog record method, or written in an open transaction
Sink = list[Change] | sqlite3.Connection


def change_of(scope: Scope, event: Event) -> Change:
    """The change-log row of `event`, seen in `scope` (which gives it its entity and project)."""
    event = dataclasses.replace(event, entity=scope.entity, project=scope.project)
    return Change(scope, event.kind, event.payload(), run=event.run, subject=event.subject)


def emit(sink: Sink, scope: Scope, event: Event) -> int:
    """Add one change to `sink`; returns its seq when written at once (0 when collected)."""
    change = change_of(scope, event)
    if isinstance(sink, list):
        sink.append(change)
        return 0
    return insert_change(sink, change, utcnow())


# ---------------------------------------------------------------------------------------------
# diffs for run_updated / sweep_updated
# ---------------------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    # NaN != NaN, so compare encodings; also tells 1 from 1.0 only where JSON does (it does not).
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return encode(a) == encode(b)


def dict_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """{"before": {changed keys: old}, "after": {changed keys: new}} or None when equal."""
    b: dict[str, Any] = {}
    a: dict[str, Any] = {}
    for k in before.keys() | after.keys():
        if k in before and k in after and _same(before[k], after[k]):
            continue
        if k in before:
            b[k] = before[k]
        if k in after:
            a[k] = after[k]
    if not a and not b:
        return None
    return {"before": b, "after": a}


def changes_feed(conn: sqlite3.Connection, after_seq: int = 0, *, limit: int = 1000,
                 kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Change events after `after_seq`, oldest first, with payloads decoded (for readers and tests)."""
    return select_changes(conn, after_seq, limit=limit, kinds=kinds)


__all__ = ["Change", "Scope", "Sink", "change_of", "emit", "dict_diff", "changes_feed"]
