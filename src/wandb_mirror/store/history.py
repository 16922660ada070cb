"""A run's history: Parquet segments in the object store, indexed in the catalog, plus a tail.

Layout. Finished history lives in segments (store/segments.py): content-addressed objects like
every other (md5-keyed, published before the catalog row that names them), indexed in
`history_segments` (run, first and last step, rows, keys, object). Rows still arriving (a running
run, a pass in progress) go to the `history` table, the tail: one JSON text row per step, cheap to
append. `compact` moves a run's tail into segments when the run has finished or its tail has grown
past `TAIL_ROWS`; the segments of a run never overlap, and a step in the tail wins over the same
step in a segment (W&B rewrites a step now and then; the next compaction folds it in).

Reading. `History.rows` / `History.texts` are the one reader every consumer uses (serve's
HistoryPage, sampledHistory and parquetHistory, the plugins' store view, export, status): they
merge segments and tail by step, read only the columns asked for, and stream segments row group
by row group. They never yield a step beyond the run's `lastStep` (`runs.last_step`): a pass
writes a run's rows before it moves the run's marker (and a crash between leaves them there), and
no reader may serve rows the run does not have yet (`within_last=False` reads them all).

Without pyarrow nothing is compacted: history stays in the tail and is read from there, as before.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .. import jsontext
from ..jsontext import from_catalog
from ..times import utcnow
from . import segments
from .catalog import Catalog
from .object_api import Objects
from .segment_writer import MAX_SEGMENT_BYTES, SegmentWriter
from .segments import Segment

log = logging.getLogger(__name__)

SEGMENT_ROWS = 100_000   # rows per segment (a segment is decoded one 64k-row group at a time)
# ... and at most MAX_SEGMENT_BYTES (16 MiB) encoded when written from Arrow tables (put_tables)
TAIL_ROWS = 10_000       # a running run's tail is compacted once it holds this many rows
ALIGN = 1000             # ... up to a step that is a multiple of this
FINAL_STATES_SQL = "r.state IS NOT NULL AND r.state NOT IN ('running', 'pending', 'preempting')"

Row = tuple[int, dict[str, Any]]
# Runs whose history is decoded and encoded at once (put_tables). Arrow releases the GIL there, so
# this many keep both cores busy; more would only add their buffers to the peak RSS while the
# other workers wait on the network anyway.
_ARROW_WRITERS = threading.BoundedSemaphore(2)


_SEG_COLS = "run_pk, first_step, last_step, rows, keys, md5, size"


def row_text(row: dict[str, Any]) -> str:
    """A history row as W&B's HistoryPage sends it (compact JSON, NaN/Infinity as bare tokens)."""
    return json.dumps(row, allow_nan=True, separators=(",", ":"), ensure_ascii=False)


def _parse(text: str) -> dict[str, Any] | None:
    """A tail row (catalog JSON: jsontext) as a dict, NaN and infinities as floats."""
    try:
        row = jsontext.loads(text)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


T = TypeVar("T")


def _merge(base: Iterator[tuple[int, T]], over: Iterator[tuple[int, T]]) -> Iterator[tuple[int, T]]:
    """Two step-ordered streams as one; on the same step, `over` wins."""
    x, y = next(base, None), next(over, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            yield x
            x = next(base, None)
        else:
            if x is not None and x[0] == y[0]:
                x = next(base, None)
            yield y
            y = next(over, None)


def _columns(keys: Iterable[str] | None) -> set[str] | None:
    """The top-level columns that hold `keys` (a dotted key lives in its first part's column)."""
    if keys is None:
        return None
    out = {"_step"}
    for k in keys:
        out.add(k)
        out.add(k.split(".", 1)[0])
    return out


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class History:
    """A store's history. Readers need only a connection (serve lends one per request from its
    pool); writers (append, compaction) need the catalog for its transactions."""

    def __init__(self, catalog: Catalog | None, objects: Objects,
                 connect: Callable[[], sqlite3.Connection] | None = None):
        self._catalog = catalog
        self.objects = objects
        self._connect = connect or (lambda: catalog.conn)  # type: ignore[union-attr]

    @property
    def cat(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("this History reads only (it was made over a bare connection)")
        return self._catalog

    def _scalar(self, sql: str, args: list[Any]) -> Any:
        row = self._connect().execute(sql, args).fetchone()
        return row[0] if row else None

    # -- index ----------------------------------------------------------------------------
    def segments(self, run_pk: int) -> list[Segment]:
        cur = self._connect().execute(f"SELECT {_SEG_COLS} FROM history_segments WHERE run_pk = ? ORDER BY first_step",
                                    [run_pk])
        return [Segment.from_db(r) for r in cur.fetchall()]

    def all_segments(self) -> Iterator[Segment]:
        cur = self._connect().execute(f"SELECT {_SEG_COLS} FROM history_segments ORDER BY run_pk, first_step")
        for r in cur.fetchall():
            yield Segment.from_db(r)

    def count(self, run_pk: int | None = None) -> int:
        where, args = ("WHERE run_pk = ?", [run_pk]) if run_pk is not None else ("", [])
        seg = self._scalar(f"SELECT COALESCE(SUM(rows), 0) FROM history_segments {where}", args) or 0
        if run_pk is None:
            tail = self._scalar("SELECT COUNT(*) FROM history", []) or 0
            return seg + tail  # a rewritten step in both counts twice until the next compaction: rare
        # steps in the tail that a segment already holds are the same step, counted once
        tail = self._scalar(
            "SELECT COUNT(*) FROM history h WHERE h.run_pk = ? AND NOT EXISTS (SELECT 1 FROM history_segments s "
            "WHERE s.run_pk = h.run_pk AND h.step BETWEEN s.first_step AND s.last_step)", [run_pk]) or 0
        return seg + tail

    def stop(self, run_pk: int, max_step: int | None = None) -> int | None:
        """The exclusive max step a reader may serve: `max_step`, never beyond the run's lastStep.
        A run whose lastStep is unknown (NULL or negative, a staging pk) is not bounded."""
        last = self._scalar("SELECT last_step FROM runs WHERE pk = ?", [run_pk])
        if isinstance(last, int) and last >= 0:
            return last + 1 if max_step is None else min(max_step, last + 1)
        return max_step

    def last_step(self, run_pk: int) -> int | None:
        a = self._scalar("SELECT MAX(last_step) FROM history_segments WHERE run_pk = ?", [run_pk])
        b = self._scalar("SELECT MAX(step) FROM history WHERE run_pk = ?", [run_pk])
        return max((v for v in (a, b) if v is not None), default=None)

    # -- writing ----------------------------------------------------------------------------
    def append(self, run_pk: int, rows: Iterable[tuple[int, str]]) -> int:
        """Add (step, row JSON) pairs to the run's tail; a step already present is replaced."""
        return self.cat.append_history(run_pk, rows)

    def delete(self, run_pk: int) -> None:
        """Forget a run's history (seeding a fixture replaces it). Objects stay until gc."""
        with self.cat.transaction() as conn:
            conn.execute("DELETE FROM history WHERE run_pk = ?", [run_pk])
            conn.execute("DELETE FROM history_segments WHERE run_pk = ?", [run_pk])

    # -- reading ----------------------------------------------------------------------------
    def rows(self, run_pk: int, *, min_step: int | None = None, max_step: int | None = None,
             keys: Iterable[str] | None = None, within_last: bool = True) -> Iterator[Row]:
        """(step, row) in step order, `min_step` inclusive, `max_step` exclusive (as HistoryPage),
        never beyond the run's lastStep unless `within_last` is False (module docstring).

        With `keys`, rows hold only the columns those keys live in (plus `_step`); rows are not
        dropped, so the caller decides what a row without the keys means.
        """
        if within_last:
            max_step = self.stop(run_pk, max_step)
        cols = _columns(keys)
        segs, tail = self._snapshot(run_pk, min_step, max_step)
        tail_rows: list[Row] = []
        for step, text in tail:
            row = _parse(text)
            if row is None:
                continue
            if cols is not None:
                row = {k: v for k, v in row.items() if k in cols}
            tail_rows.append((step, row))
        yield from _merge(self._segment_rows(segs, min_step, max_step, cols), iter(tail_rows))

    def texts(self, run_pk: int, *, min_step: int | None = None, max_step: int | None = None,
              within_last: bool = True) -> Iterator[tuple[int, str]]:
        """(step, row JSON text): tail rows exactly as mirrored, segment rows re-encoded; bounded
        as `rows`."""
        if within_last:
            max_step = self.stop(run_pk, max_step)
        segs, tail = self._snapshot(run_pk, min_step, max_step)
        seg_texts = ((s, row_text(r)) for s, r in self._segment_rows(segs, min_step, max_step, None))
        yield from _merge(seg_texts, ((s, from_catalog(t)) for s, t in tail))

    def _snapshot(self, run_pk: int, min_step: int | None, max_step: int | None) -> tuple[list[Segment], list[tuple[int, str]]]:
        """The segments and tail rows in range, read consistently: a compaction that moves rows from
        the tail into a segment between the two reads is seen (the segment list changed) and retried."""
        sql, args = "SELECT step, row FROM history WHERE run_pk = ?", [run_pk]
        if min_step is not None:
            sql += " AND step >= ?"
            args.append(min_step)
        if max_step is not None:
            sql += " AND step < ?"
            args.append(max_step)
        while True:
            before = self.segments(run_pk)
            tail = self._connect().execute(sql + " ORDER BY step", args).fetchall()
            if self.segments(run_pk) == before:
                break
        segs = [s for s in before if (min_step is None or s.last_step >= min_step)
                and (max_step is None or s.first_step < max_step)]
        return segs, tail

    def _segment_rows(self, segs: list[Segment], min_step: int | None, max_step: int | None,
                      cols: set[str] | None) -> Iterator[Row]:
        for s in segs:
            with self.objects.open(s.md5) as f:
                # Parquet reads its footer first: a stream that cannot seek (an S3 body) is read whole
                # (a segment is bounded by the compaction size)
                src = f if _seekable(f) else io.BytesIO(f.read())
                yield from segments.decode(src, min_step=min_step, max_step=max_step, columns=cols)

    # -- compaction -------------------------------------------------------------------------
    def compact(self, run_pk: int, *, below: int | None = None) -> int:
        """Move the run's tail (its steps < `below`, if given) into segments; returns the rows moved
        (0 without pyarrow).

        Each batch of up to SEGMENT_ROWS tail rows is one transaction (objects first, then the
        index rows and the tail deletion), so an interrupted compaction resumes where it stopped.
        """
        if not segments.available():
            return 0
        moved = 0
        while (n := self._compact_batch(run_pk, below)) > 0:
            moved += n
        return moved

    def _compact_batch(self, run_pk: int, below: int | None) -> int:
        with self.cat.transaction() as conn:  # the write lock: no tail row changes under us
            tail = conn.execute("SELECT step, row FROM history WHERE run_pk = ? AND step < ? ORDER BY step LIMIT ?",
                                [run_pk, 2 ** 63 - 1 if below is None else below, SEGMENT_ROWS]).fetchall()
            parsed = [(s, r) for s, t in tail if (r := _parse(t)) is not None]
            if not parsed:
                if tail:
                    log.warning("run %s: %d history rows in the tail are not JSON objects; left there", run_pk, len(tail))
                return 0
            self._write(conn, run_pk, parsed)
            conn.executemany("DELETE FROM history WHERE run_pk = ? AND step = ?", [(run_pk, s) for s, _ in parsed])
            return len(parsed)

    def put_rows(self, run_pk: int, rows: Iterable[Row]) -> int:
        """Write step-ordered rows straight into segments (rows that arrive as a whole, such as W&B's
        parquet exports, need not pass through the tail). A step already stored is replaced."""
        if not segments.available():
            return self.append(run_pk, ((s, row_text(r)) for s, r in rows))
        n = 0
        batch: list[Row] = []
        for item in rows:
            batch.append(item)
            if len(batch) >= SEGMENT_ROWS:
                n += self._put_batch(run_pk, batch)
                batch = []
        return n + (self._put_batch(run_pk, batch) if batch else 0)

    def appendable(self, run_pk: int, from_step: int) -> bool:
        """Whether segments starting at `from_step` can be added to the run as they are (put_tables):
        none of its segments reaches that step. A new run's staging pk holds none."""
        last = self._scalar("SELECT MAX(last_step) FROM history_segments WHERE run_pk = ?", [run_pk])
        return last is None or last < from_step

    def put_tables(self, run_pk: int, tables: Iterable[tuple[Any, frozenset[str]]]) -> tuple[int, int | None, int | None]:
        """Arrow tables in the segment layout (segments.segment_table), step-ordered, straight into
        new segments of an `appendable` run: (rows, first step, last step) stored.

        The columnar path of W&B's exports: no Python object per cell, memory bounded by one
        segment (store/segment_writer.py), and every object published before the one short
        transaction that indexes them all, so no catalog lock is held while encoding."""
        with _ARROW_WRITERS:
            writer = SegmentWriter(self.objects, run_pk, max_rows=SEGMENT_ROWS, max_bytes=MAX_SEGMENT_BYTES)
            try:
                for table, json_cols in tables:
                    writer.add(table, json_cols)
            except BaseException:
                writer.abort()
                raise
            written = writer.close()
        if not written:
            return 0, None, None
        with self.cat.transaction() as conn:
            last = conn.execute("SELECT MAX(last_step) FROM history_segments WHERE run_pk = ?", [run_pk]).fetchone()[0]
            if last is not None and last >= written[0].first_step:
                raise RuntimeError(f"run {run_pk}: history segments up to step {last} appeared while writing "
                                   f"segments from step {written[0].first_step}")
            now = utcnow()
            conn.executemany(f"INSERT INTO history_segments ({_SEG_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [(*w.index_row(), now) for w in written])
        return sum(w.rows for w in written), written[0].first_step, written[-1].last_step

    def _put_batch(self, run_pk: int, batch: list[Row]) -> int:
        with self.cat.transaction() as conn:
            self._write(conn, run_pk, batch)
        return len(batch)

    def _write(self, conn: sqlite3.Connection, run_pk: int, rows: list[Row]) -> None:
        """Inside a transaction: `rows` (step-ordered) merged with the segments they overlap, as new
        segments; the old index rows go. Objects are published before the rows that name them."""
        lo, hi = rows[0][0], rows[-1][0]
        segs = self.segments(run_pk)
        redo = [s for s in segs if s.last_step >= lo and s.first_step <= hi]
        if not redo and segs and segs[-1].last_step < lo and segs[-1].rows + len(rows) <= SEGMENT_ROWS:
            redo = [segs[-1]]  # extend a small last segment instead of adding another small one
        merged = list(_merge(self._segment_rows(redo, None, None, None), iter(rows)))
        new = []
        for i in range(0, len(merged), SEGMENT_ROWS):
            part = merged[i:i + SEGMENT_ROWS]
            info = self.objects.put_bytes(segments.encode(part))
            keys = tuple(sorted({k for _, r in part for k in r} | {"_step"}))
            new.append(Segment(run_pk, part[0][0], part[-1][0], len(part), keys, info.md5, info.size))
        conn.executemany("DELETE FROM history_segments WHERE run_pk = ? AND first_step = ?",
                         [(run_pk, s.first_step) for s in redo])
        conn.executemany(f"INSERT INTO history_segments ({_SEG_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [(*n.index_row(), utcnow()) for n in new])

    def due(self, tail_rows: int | None = None) -> list[tuple[int, int | None]]:
        """(run, compact below this step) for the runs whose tail should become segments: finished
        ones whole, and running ones past `tail_rows` up to a multiple of ALIGN (see below)."""
        cur = self._connect().execute(
            f"SELECT h.run_pk, {FINAL_STATES_SQL.replace('r.state', 'MAX(r.state)')}, MAX(h.step) FROM history h "
            f"JOIN runs r ON r.pk = h.run_pk GROUP BY h.run_pk "
            f"HAVING COUNT(*) >= ? OR ({FINAL_STATES_SQL.replace('r.state', 'MAX(r.state)')})",
            [TAIL_ROWS if tail_rows is None else tail_rows])
        # A running run's segments end on a multiple of ALIGN, so what stays live starts on a page
        # of the official client's scan (server/parquet.py explains why that matters).
        return [(pk, None if final else last // ALIGN * ALIGN) for pk, final, last in cur.fetchall()]

    def compact_due(self, tail_rows: int | None = None) -> tuple[int, int]:
        """Compact every run that is due: (runs, rows moved). Also the migration of a store made
        before segments existed: its finished runs' rows all sit in the tail."""
        if not segments.available():
            return 0, 0
        runs = rows = 0
        for run_pk, below in self.due(tail_rows):
            n = self.compact(run_pk, below=below)
            runs += n > 0
            rows += n
        if rows:
            # give the tail's freed pages back (catalogs made since segments exist; else a no-op)
            self.cat.conn.executescript("PRAGMA incremental_vacuum;")  # run to the end: each step frees a page
        return runs, rows
