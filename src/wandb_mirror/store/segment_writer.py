"""Arrow tables of one run's history -> segment objects, written as they fill, never held whole.

The columnar path for history that arrives as Parquet (W&B's exports): each file is read one row
group at a time, put in the segment layout column by column (segments.segment_table: no Python
object per cell), and streamed into a Parquet writer. A segment is closed and published to the
object store as soon as it holds SEGMENT_ROWS rows or MAX_SEGMENT_BYTES of encoded bytes, so a
run of any length costs one segment's bytes of memory, not its whole history. A table whose
columns do not fit the open segment's (a key that appears later, a type that changes) closes it
and opens another; one that merely lacks some of its columns is padded with nulls (missing keys).

The writer only publishes objects; the caller indexes them in the catalog (History.put_tables),
after they exist, in one short transaction: the encoding and the object writes happen outside
any catalog lock, so the other workers' writes do not wait on them.
"""

from __future__ import annotations

import io
from typing import Any

from . import segments
from .object_api import Objects
from .segments import Segment

SEGMENT_ROWS = 100_000         # rows per segment (history.py's compaction uses the same bound)
MAX_SEGMENT_BYTES = 16 << 20   # encoded bytes per segment


class SegmentWriter:
    """Step-ordered, non-overlapping Arrow tables in the segment layout -> published segments.
    Use: `add` each table, then `close()` for what was written (also after an error: objects
    already published are harmless, gc removes what no row names)."""

    def __init__(self, objects: Objects, run_pk: int, *, max_rows: int = SEGMENT_ROWS,
                 max_bytes: int = MAX_SEGMENT_BYTES):
        self.objects = objects
        self.run_pk = run_pk
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.written: list[Segment] = []
        self._pa = segments._pa()
        self._writer: Any = None
        self._buf: io.BytesIO | None = None
        self._schema: Any = None
        self._json: frozenset[str] = frozenset()
        self._rows = 0
        self._first: int | None = None
        self._last: int | None = None
        self._keys: set[str] = set()
        self._prev_step: int | None = None

    @property
    def rows(self) -> int:
        return sum(w.rows for w in self.written) + self._rows

    def add(self, table: Any, json_cols: frozenset[str]) -> None:
        """Append `table` (segments.segment_table's output: `_step` first and int64, rows in step
        order, every step after the previous table's)."""
        if len(table) == 0:
            return
        steps = table.column("_step")
        first = steps[0].as_py()
        if self._prev_step is not None and first <= self._prev_step:
            raise ValueError(f"history tables out of step order: {first} after {self._prev_step}")
        self._prev_step = steps[len(steps) - 1].as_py()
        if self._writer is not None:
            fitted = self._fit(table, json_cols)
            if fitted is None:
                self._finish()
            else:
                table = fitted
        while len(table):
            if self._writer is None:
                self._open(table.schema, json_cols)
            part = table.slice(0, self.max_rows - self._rows)
            table = table.slice(len(part))
            assert self._writer is not None and self._buf is not None
            self._writer.write_table(part, row_group_size=segments.ROW_GROUP_ROWS)
            ps = part.column("_step")
            self._first = ps[0].as_py() if self._first is None else self._first
            self._last = ps[len(ps) - 1].as_py()
            self._rows += len(part)
            self._keys.update(n for n in part.column_names if part.column(n).null_count < len(part))
            if self._rows >= self.max_rows or self._buf.tell() >= self.max_bytes:
                self._finish()

    def close(self) -> list[Segment]:
        """Publish the open segment, if any; returns every segment written."""
        self._finish()
        return self.written

    def abort(self) -> None:
        """Drop the open segment unpublished (its bytes were never an object)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - discarding it anyway
                pass
        self._reset()

    # -- internals ------------------------------------------------------------------------------
    def _fit(self, table: Any, json_cols: frozenset[str]) -> Any:
        """`table` with the open segment's schema (missing columns as nulls), else None."""
        pa = self._pa
        if json_cols != self._json:
            return None
        if table.schema.equals(self._schema, check_metadata=False):
            return table
        have = {f.name: f.type for f in table.schema}
        if not set(have) <= set(self._schema.names):
            return None
        arrays = []
        for f in self._schema:
            if f.name not in have:
                arrays.append(pa.nulls(len(table), f.type))
            elif have[f.name] == f.type:
                arrays.append(table.column(f.name))
            else:
                return None
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def _open(self, schema: Any, json_cols: frozenset[str]) -> None:
        import pyarrow.parquet as pq

        self._schema = schema.with_metadata(segments.metadata(json_cols))
        self._json = json_cols
        self._buf = io.BytesIO()
        self._writer = pq.ParquetWriter(self._buf, self._schema, **segments.write_options(self._schema))

    def _finish(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._buf is not None
        if self._rows and self._first is not None and self._last is not None:
            info = self.objects.put_bytes(self._buf.getvalue())
            self.written.append(Segment(self.run_pk, self._first, self._last, self._rows,
                                        tuple(sorted(self._keys | {"_step"})), info.md5, info.size))
        self._reset()

    def _reset(self) -> None:
        self._writer = self._buf = self._schema = None
        self._json = frozenset()
        self._rows = 0
        self._first = self._last = None
        self._keys = set()
