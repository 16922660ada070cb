"""Progress of a pass: a tqdm bar on a terminal (runs done of runs listed, rate, ETA, what was
fetched; it fits the terminal's width), plain log lines otherwise.

Thread-safe; the engine's workers call `add(...)` and `run_done()`. On a terminal the bar is
redrawn at most every `interval` seconds; elsewhere (a log file, journald) one line is written
every `log_every` seconds, so long passes show they are alive without flooding the log.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

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
        self._bar: Any = None

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

    def fetched(self) -> str:
        """What the pass fetched so far, for the bar's right-hand side."""
        elapsed = max(time.monotonic() - self.start, 1e-6)
        parts = [f"{self.rows} rows", f"{self.files} files", f"{human_bytes(self.bytes)} ({human_bytes(self.bytes / elapsed)}/s)"]
        if self.artifacts:
            parts.append(f"{self.artifacts} artifacts")
        if self.requests:
            parts.append(f"{self.requests()} requests")
        return ", ".join(parts)

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            return shutil.get_terminal_size((80, 24)).columns

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
            if not self.tty:
                text = self.line()
            else:
                try:
                    self._draw_bar()
                except (OSError, ValueError):
                    self.enabled = False
                return
        if not force:
            log.info("progress: %s", text)

    def _draw_bar(self) -> None:
        from tqdm import tqdm

        if self._bar is None:
            # the line is cut at the terminal's width: the fetched figures go last
            self._bar = tqdm(total=0, file=self.stream, leave=False, unit="run", mininterval=0, maxinterval=0,
                             ncols=self._columns(), dynamic_ncols=False, desc=self.project or "sync",
                             bar_format="{desc} {n_fmt}/{total_fmt} runs |{bar:12}| "
                                        "[{elapsed}<{remaining}]{postfix}")
        bar = self._bar
        bar.ncols = self._columns()
        bar.total = max(self.runs_total, self.runs_done)
        bar.n = self.runs_done
        bar.set_description_str(self.project or "sync", refresh=False)
        bar.set_postfix_str(self.fetched(), refresh=False)
        bar.refresh()

    def finish(self) -> None:
        """Clear the bar (the caller prints the summary)."""
        with self.lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            try:
                bar.close()
            except (OSError, ValueError):
                pass


class NullProgress(Progress):
    def __init__(self) -> None:
        super().__init__(mode="never")
