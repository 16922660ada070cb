"""The sync engine: one mirror pass (engine.py) and its units (project.py, runs.py, artifacts.py),
the ledger of a pass (ledger.py), listing reconciliation (reconcile.py), the change log's kinds
(changes.py), progress (progress.py)."""

from __future__ import annotations

from .engine import PassResult, SyncEngine, make_client, run_pass
from .progress import Progress

__all__ = ["SyncEngine", "PassResult", "Progress", "make_client", "run_pass"]
