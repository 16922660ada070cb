"""A run's history, fetched through HistoryPage windows that follow its rows, not its step span.

W&B answers `history(minStep, maxStep, samples)` with every row of [minStep, maxStep) when there
are at most `samples` of them, and a downsampled subset otherwise. A window no wider than the page
size can never hold more rows than that, so it is always exact; a wider one is exact when it comes
back less than full. `Windows` starts at one page of steps and, after each exact answer, sizes the
next window to about half a page of rows at the density just seen (growing fast over empty
spans), and narrows a window that came back full. A run logging 4 rows at steps 0, 1e9, 2e9 and
3e9 costs a handful of requests instead of 3,000,000; dense steps cost rows / page, as before.

`fetch` writes the rows in idempotent chunks (INSERT OR REPLACE) under the pk it is given (the
run's, or a staging pk for a new run or a replacement). With `expect` = (step, stored row), the
first window starts at the mirror's last step and that row must come back unchanged: if it is gone
or different, upstream rewrote the history (a run resumed from an earlier step) and
`HistoryRewritten` is raised before anything is written.

Another source of history (parquet exports) plugs in here, beside `fetch`, returning `Fetched`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..client.convert import parse_history_row
from .context import Context, ProjectRef

HISTORY_CHUNK_ROWS = 5000


class HistoryRewritten(Exception):
    """The row at the mirror's last step is gone or different upstream."""


@dataclass
class Fetched:
    first: int | None = None
    last: int | None = None
    rows: int = 0


class Windows:
    """Step windows [lo, hi) over [start, stop) and the `samples` to ask each with."""

    def __init__(self, start: int, stop: int, page: int) -> None:
        self.lo = start
        self.stop = stop
        self.page = max(1, page)
        self.span = self.page

    @property
    def done(self) -> bool:
        return self.lo >= self.stop

    def current(self) -> tuple[int, int, int]:
        hi = min(self.stop, self.lo + self.span)
        return self.lo, hi, min(hi - self.lo, self.page)

    def answered(self, n: int, steps: list[int] | None = None) -> bool:
        """Record that the current window returned `n` rows (at `steps`); False if it may have been
        downsampled: it is then narrowed and must be asked again. An even downsample's second row
        lies about n / samples rows in, so the window shrinks to end there."""
        lo, hi, samples = self.current()
        if hi - lo > samples and n >= samples:
            inside = sorted(s for s in steps or () if lo < s < hi)
            self.span = max(self.page, inside[0] - lo if inside else self.span // 8)
            if self.span >= hi - lo:
                self.span = max(self.page, (hi - lo) // 8)
            return False
        self.lo = hi
        self.span = self.span * 16 if n == 0 else max(self.page, (hi - lo) * self.page // (2 * n))
        return True


def _same_row(a: str, b: str) -> bool:
    try:
        return json.dumps(json.loads(a), sort_keys=True) == json.dumps(json.loads(b), sort_keys=True)
    except ValueError:
        return a == b


def fetch(cx: Context, proj: ProjectRef, run: str, run_pk: int, start: int, stop: int,
          expect: tuple[int, str] | None = None) -> Fetched:
    """Rows with start <= _step < stop of `run`, stored under `run_pk` (module docstring)."""
    where = f"{proj.where}/{run}"
    out = Fetched()
    buf: list[tuple[int, str]] = []
    bad = 0
    windows = Windows(start, stop, cx.settings.history_page_size)
    checked = expect is None
    while not windows.done:
        lo, hi, samples = windows.current()
        raw_rows = cx.client.history_page(proj.entity, proj.name, run, lo, hi, samples)
        parsed = [(raw, *parse_history_row(raw)) for raw in raw_rows]
        if not windows.answered(len(parsed), [p[1] for p in parsed if isinstance(p[1], int)]):
            continue
        for raw, step, text, problem in parsed:
            if problem or step is None or text is None or not (lo <= step < hi):
                bad += 1
                if bad <= 5:
                    cx.ledger.quarantine("history_row", f"{where}@{lo}-{hi}",
                                         problem or f"step {step} outside the requested window", str(raw)[:4096])
                continue
            if not checked and expect is not None:
                if step != expect[0] or not _same_row(text, expect[1]):
                    raise HistoryRewritten(f"{where}: the row at step {expect[0]} changed upstream")
                checked = True
                continue  # already stored
            buf.append((step, text))
            out.first = step if out.first is None else min(out.first, step)
            out.last = step if out.last is None else max(out.last, step)
        if not checked:
            raise HistoryRewritten(f"{where}: the row at step {expect[0] if expect else '?'} is gone upstream")
        if len(buf) >= HISTORY_CHUNK_ROWS:
            out.rows += _flush(cx, run_pk, buf)
    out.rows += _flush(cx, run_pk, buf)
    return out


def _flush(cx: Context, run_pk: int, buf: list[tuple[int, str]]) -> int:
    if not buf:
        return 0
    n = len(buf)
    cx.catalog.append_history(run_pk, buf)
    cx.ledger.stats.add("history_rows", n)
    cx.progress.add(rows=n)
    buf.clear()
    return n
