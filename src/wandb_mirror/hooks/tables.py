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
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
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
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a table is as readable as any file the user makes
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


def _umask() -> int:
    try:  # Linux shows it without changing it (os.umask would, for every thread, for a moment)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _cell(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), allow_nan=True)
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return v


def _json_safe(v: Any) -> Any:
    """For JSONL: strict JSON, so NaN and infinities become null, timestamps ISO 8601 text."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        return _cell(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
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


def write_table(path: str | Path, rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None,
                types: dict[str, str] | None = None) -> Path:
    """Write `rows` (dicts) to `path` atomically as csv, jsonl or parquet; returns the path.

    Nested values (dicts, lists) become compact JSON text in csv and parquet; datetimes ISO 8601
    text ending in Z in csv and jsonl; jsonl is strict JSON (NaN and infinities are null). In parquet
    a column named in `types` gets that type ("timestamp": UTC microseconds, "list<string>",
    "float64", "int64"); any other the narrowest type that holds all its values (bool, int64,
    float64, string), else JSON text.
    """
    types = types or {}
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
                    f.write(json.dumps({c: _json_safe(r[c]) for c in cols if c in r}, separators=(",", ":"),
                                       allow_nan=False))
                    f.write("\n")

    else:

        def writer(p: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrays = []
            for c in cols:
                values = [r.get(c) for r in rows]
                arrays.append(_typed_column(pa, values, types[c]) if c in types else _arrow_column(pa, values))
            table = pa.Table.from_arrays(arrays, names=cols) if cols else pa.table({})
            buf = io.BytesIO()
            pq.write_table(table, buf)
            with atomic_write(p, "wb") as f:
                f.write(buf.getvalue())

    p = Path(path)
    writer(p)
    return p


def _typed_column(pa: Any, values: list[Any], typ: str):
    if typ == "timestamp":
        return pa.array(values, type=pa.timestamp("us", tz="UTC"))
    if typ == "list<string>":
        return pa.array([None if v is None else [str(x) for x in v] for v in values], type=pa.list_(pa.string()))
    if typ == "float64":
        return pa.array([float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                         for v in values], type=pa.float64())
    if typ == "int64":
        return pa.array(values, type=pa.int64())
    raise ValueError(f"unknown column type {typ!r}")


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
