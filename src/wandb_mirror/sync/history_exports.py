"""A run unit's history from W&B's parquet exports, before HistoryPage reads what is still live.

Used by the run unit when it fetches history: the exported files are downloaded and verified
(client/history_exports.py), their rows in [start, stop) are written straight into history
segments (column by column when the run has no segments from `start` on, as a new run has not,
and the files' column types fit the segment layout; else row by row, merged with what is stored),
and the caller pages through HistoryPage only from `next_step`. An upstream that exports
nothing for the run, or a file that fails verification, leaves `next_step` at `start`: the caller
reads everything through HistoryPage as before (and quarantines the rejected file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import history_exports as X
from ..store.history import History


@dataclass
class ExportOutcome:
    next_step: int              # HistoryPage from here (== stop when the exports held everything)
    rows: int = 0
    first: int | None = None    # first and last step stored from the exports
    last: int | None = None
    files: int = 0
    bytes: int = 0
    rejected: X.ExportRejected | None = None


def mirror_history_exports(client: Any, history: History, tmp_dir: Path, entity: str, project: str, run: str,
                           run_pk: int, start: int, stop: int) -> ExportOutcome:
    """Store the exported rows with start <= step < stop; see ExportOutcome for what is left to page."""
    listing = X.list_exports(client, entity, project, run)
    if listing is None:
        return ExportOutcome(next_step=start)
    try:
        got = X.download(client, listing, stop - 1, tmp_dir)
    except X.ExportRejected as e:
        return ExportOutcome(next_step=start, rejected=e)
    try:
        out = ExportOutcome(next_step=stop if got.first_live is None else max(start, got.first_live),
                            files=len(got.files), bytes=got.bytes)
        if got.columnar and history.appendable(run_pk, start):
            # column by column into new segments: no Python object per cell (store/segment_writer.py)
            out.rows, out.first, out.last = history.put_tables(run_pk, got.tables(start, stop))
            return out

        def rows() -> Any:
            for step, row in got.rows(start):
                if step >= stop:
                    return
                out.first = step if out.first is None else out.first
                out.last = step
                yield step, row

        out.rows = history.put_rows(run_pk, rows())
        return out
    finally:
        got.close()
