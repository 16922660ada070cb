"""Helpers for plugins (and `wandb-mirror export`) that write tables to disk.

`atomic_write` publishes a file whole or not at all (temp file in the same directory, fsync,
rename, fsync the directory), so a reader, a crash or a SIGTERM never leaves a half-written or
temporary file behind. `write_table` writes rows of dicts as csv, jsonl or parquet (parquet needs
pyarrow: the `parquet` extra).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..store.objects import fsync_dir

__all__ = ["atomic_write", "write_table", "have_parquet", "FORMATS", "flatten_columns"]

FORMATS = ("csv", "jsonl", "parquet")


def have_parquet() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; on a clean exit it replaces `path` atomically.

    On an exception the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _cell(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), allow_nan=True)
    return v


def flatten_columns(rows: list[dict[str, Any]], first: Iterable[str] = ()) -> list[str]:
    """Column order: `first` (those present), then every other key in first-seen order."""
    first = list(first)
    seen = dict.fromkeys(first)
    for r in rows:
        for k in r:
            if k not in seen:
                seen[k] = None
    present = {k for r in rows for k in r}
    return [c for c in seen if c in present or c in first]


def write_table(path: str | Path, rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> Path:
    """Write `rows` (dicts) to `path` atomically as csv, jsonl or parquet; returns the path.

    Nested values (dicts, lists) become compact JSON text in csv and parquet. In parquet a column
    gets the narrowest type that holds all its values (bool, int64, float64, string), else JSON text.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    cols = columns or flatten_columns(rows)
    writer: Callable[[Path], None]
    if fmt == "csv":

        def writer(p: Path) -> None:
            with atomic_write(p, "w") as f:
                w = csv.writer(f)
                w.writerow(cols)
                for r in rows:
                    w.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in cols])

    elif fmt == "jsonl":

        def writer(p: Path) -> None:
            with atomic_write(p, "w") as f:
                for r in rows:
                    f.write(json.dumps({c: r[c] for c in cols if c in r}, separators=(",", ":"), allow_nan=True))
                    f.write("\n")

    else:

        def writer(p: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrays = []
            for c in cols:
                arrays.append(_arrow_column(pa, [r.get(c) for r in rows]))
            table = pa.Table.from_arrays(arrays, names=cols) if cols else pa.table({})
            buf = io.BytesIO()
            pq.write_table(table, buf)
            with atomic_write(p, "wb") as f:
                f.write(buf.getvalue())

    p = Path(path)
    writer(p)
    return p


def _arrow_column(pa: Any, values: list[Any]):
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if all(-(2**63) <= v < 2**63 for v in present):
            return pa.array(values, type=pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    if all(isinstance(v, str) for v in present):
        return pa.array(values, type=pa.string())
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), allow_nan=True)
                     for v in values], type=pa.string())
