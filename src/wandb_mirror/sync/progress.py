"""Progress of a pass: a \\r-updated status line on a terminal, plain log lines otherwise.

Thread-safe; the engine's workers call `add(...)` and `run_done()`. On a terminal the line is
redrawn at most every `interval` seconds; elsewhere (a log file, journald) one line is written
every `log_every` seconds, so long passes show they are alive without flooding the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger("wandb_mirror.sync")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class Progress:
    def __init__(self, *, stream: TextIO | None = None, mode: str = "auto", interval: float = 0.2,
                 log_every: float = 15.0, requests: Callable[[], int] | None = None):
        self.stream = stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = mode != "never"
        self.tty = (mode == "always") or (mode == "auto" and tty)
        self.interval = interval
        self.log_every = log_every
        self.requests = requests  # callable returning the request count so far
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.project = ""
        self.runs_total = 0
        self.runs_done = 0
        self.rows = 0
        self.files = 0
        self.bytes = 0
        self.artifacts = 0
        self._width = 0

    # -- updates -----------------------------------------------------------------------------
    def set_project(self, name: str, runs_total: int | None = None) -> None:
        with self.lock:
            self.project = name
            if runs_total is not None:
                self.runs_total += runs_total
        self._maybe_draw(force=True)

    def add_runs(self, n: int) -> None:
        with self.lock:
            self.runs_total += n
        self._maybe_draw()

    def run_done(self) -> None:
        with self.lock:
            self.runs_done += 1
        self._maybe_draw()

    def add(self, *, rows: int = 0, files: int = 0, bytes: int = 0, artifacts: int = 0) -> None:
        with self.lock:
            self.rows += rows
            self.files += files
            self.bytes += bytes
            self.artifacts += artifacts
        self._maybe_draw()

    # -- drawing -----------------------------------------------------------------------------
    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        reqs = self.requests() if self.requests else None
        parts = [f"{self.project}" if self.project else "sync",
                 f"runs {self.runs_done}/{self.runs_total}",
                 f"rows {self.rows}",
                 f"files {self.files} ({human_bytes(self.bytes)}, {human_bytes(self.bytes / elapsed)}/s)"]
        if self.artifacts:
            parts.append(f"artifacts {self.artifacts}")
        if reqs is not None:
            parts.append(f"{reqs} requests ({reqs / elapsed:.1f}/s)")
        parts.append(f"{elapsed:.0f}s")
        return " | ".join(parts)

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        every = self.interval if self.tty else self.log_every
        with self.lock:
            if not force and now - self.last_draw < every:
                return
            if not self.tty and force is False and now - self.start < self.log_every:
                return
            self.last_draw = now
            text = self.line()
        if self.tty:
            pad = max(self._width - len(text), 0)
            self._width = len(text)
            try:
                self.stream.write("\r" + text + " " * pad)
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False
        elif not force:
            log.info("progress: %s", text)

    def finish(self) -> None:
        """Clear the status line (the caller prints the summary)."""
        if self.enabled and self.tty and self._width:
            try:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._width = 0


class NullProgress(Progress):
    def __init__(self) -> None:
        super().__init__(mode="never")
