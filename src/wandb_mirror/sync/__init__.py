"""The sync engine: mirror passes (engine.py), the change log (changes.py), progress (progress.py)."""

from __future__ import annotations

from .engine import Engine, PassResult, make_client, run_pass
from .progress import Progress

__all__ = ["Engine", "PassResult", "Progress", "make_client", "run_pass"]
