"""The long-running daemon (`wandb-mirror run`): sync loop, plugin delivery, reload, systemd, metrics."""

from __future__ import annotations

from .core import Daemon, Schedule
from .notify import Notifier
from .syncer import PassOutcome

__all__ = ["Daemon", "Schedule", "Notifier", "PassOutcome"]
