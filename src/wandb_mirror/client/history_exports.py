"""A run's history through W&B's parquet exports: `parquetHistory`, then each exported file.

What the official client does first in `scan_history()`: ask `RunParquetHistory` for presigned
URLs of the run's exported Parquet files plus `liveData` (the steps not exported yet), download
the files, and read only the live steps through HistoryPage. For a finished run that is a constant
number of requests (one GraphQL question and one GET per file) instead of steps/1000 pages of JSON.

Nothing here is trusted: each file is streamed into a temp file under a size cap (and the
transport checks Content-Length), must parse as Parquet with a strictly increasing `_step` column,
and the files together must agree with `historyKeys.lastStep` and `liveData` (no step beyond the
last one, none that is also live, the last step present when nothing is live). A file that fails
is reported as ExportRejected and the caller reads that history through HistoryPage instead.
Values come out as the client would show them: a missing key is an empty cell, dropped here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import segments
from . import documents as D

MAX_FILE_BYTES = 8 << 30  # one exported file; a bigger one is refused, not buffered


class ExportRejected(Exception):
    def __init__(self, url: str, reason: str):
        super().__init__(reason)
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class ExportListing:
    urls: list[str]
    live_steps: list[int]  # sorted


@dataclass
class DownloadedExports:
    """Verified export files on local disk (temp files: call `close()`), in step order."""

    files: list[tuple[str, Path, int, int]] = field(default_factory=list)  # (url, path, first, last step)
    first_live: int | None = None  # where HistoryPage must take over; None when all is exported
    bytes: int = 0
    plans: dict[Path, Any] = field(default_factory=dict)  # segments.file_plan() of each file (None: rows only)

    @property
    def columnar(self) -> bool:
        """Whether every file's columns fit the segment layout as they are (`tables` can read them)."""
        return all(self.plans.get(path) is not None for _url, path, _f, _l in self.files)

    def rows(self, min_step: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        for _url, path, _first, last in self.files:
            if last >= min_step:
                yield from read_rows(path, min_step)

    def tables(self, min_step: int, stop: int) -> Iterator[tuple[Any, frozenset[str]]]:
        """The rows with min_step <= step < stop as segment-layout Arrow tables (when `columnar`)."""
        for _url, path, first, last in self.files:
            if last >= min_step and first < stop:
                yield from segments.tables(path, min_step=min_step, max_step=stop, plan=self.plans[path])

    def close(self) -> None:
        for _url, path, _first, _last in self.files:
            path.unlink(missing_ok=True)
        self.files.clear()


def list_exports(client: Any, entity: str, project: str, run: str) -> ExportListing | None:
    """The run's exports, or None when the upstream exports nothing for it (read it all via HistoryPage)."""
    data = client.t.graphql(D.RUN_PARQUET_HISTORY.name, D.RUN_PARQUET_HISTORY.text, {
        "entity": entity, "project": project, "runName": run, "liveKeys": ["_step"]})
    ph = ((data.get("project") or {}).get("run") or {}).get("parquetHistory") or {}
    urls = [u for u in ph.get("parquetUrls") or [] if isinstance(u, str) and u]
    if not urls:
        return None
    live = sorted({int(r["_step"]) for r in ph.get("liveData") or []
                   if isinstance(r, dict) and isinstance(r.get("_step"), (int, float))})
    return ExportListing(urls=urls, live_steps=live)


def download(client: Any, listing: ExportListing, last_step: int, tmp_dir: Path,
             max_bytes: int = MAX_FILE_BYTES) -> DownloadedExports:
    """Download and verify every exported file; raises ExportRejected (and keeps nothing) on the first bad one."""
    out = DownloadedExports()
    try:
        for url in listing.urls:
            path = _fetch(client, url, tmp_dir, max_bytes)
            out.files.append((url, path, 0, -1))
            out.bytes += path.stat().st_size
            got = segments.check(path)
            if isinstance(got, str):
                raise ExportRejected(url, got)
            _rows, first, last = got
            out.files[-1] = (url, path, first, last)
            out.plans[path] = segments.file_plan(path)
        out.files.sort(key=lambda f: f[2])
        out.first_live = _check_steps(out.files, listing.live_steps, last_step)
    except BaseException:
        out.close()
        raise
    return out


def _fetch(client: Any, url: str, tmp_dir: Path, max_bytes: int) -> Path:
    fd, name = tempfile.mkstemp(prefix="export-", suffix=".parquet", dir=tmp_dir)
    os.close(fd)
    path = Path(name)

    def consume(chunks: Iterator[bytes]) -> None:
        n = 0
        with open(path, "wb") as f:  # restartable: a retried download starts the file over
            for chunk in chunks:
                n += len(chunk)
                if n > max_bytes:
                    raise ExportRejected(url, f"larger than {max_bytes} bytes")
                f.write(chunk)
        if n == 0:
            raise ExportRejected(url, "empty file")

    try:
        client.t.download(url, "HistoryExport", consume)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _check_steps(files: list[tuple[str, Path, int, int]], live: list[int], last_step: int) -> int | None:
    """The files must not overlap, stay within lastStep and below the first live step."""
    prev = -1
    for url, _path, first, last in files:
        if first <= prev:
            raise ExportRejected(url, f"steps {first}..{last} overlap another exported file")
        if last > last_step:
            raise ExportRejected(url, f"step {last} is beyond historyKeys.lastStep {last_step}")
        if live and last >= live[0]:
            raise ExportRejected(url, f"step {last} is exported and also live data (from step {live[0]})")
        prev = last
    if not live and prev != last_step:
        raise ExportRejected(files[-1][0], f"the exports end at step {prev}, historyKeys.lastStep is {last_step}, "
                                           "and no step is live")
    return live[0] if live else None


def read_rows(path: Path, min_step: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """(step, row) from one export file, one row group at a time; empty cells are missing keys."""
    yield from segments.decode(path, min_step=min_step)
