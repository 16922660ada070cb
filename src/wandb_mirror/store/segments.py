"""History rows <-> Parquet segment bytes: the one place that knows the segment layout.

A segment holds consecutive steps of one run: `_step` (int64, first, sorted) and one column per
top-level history key, typed the way W&B's own exports type them: int64, float64 (NaN and
+-Infinity as IEEE values), bool, string. A key whose values are not all of one such type (nested
objects, lists, explicit nulls, ints mixed with strings) is stored as JSON text and named in the
file's metadata (`wandb_mirror.json_columns`), so decoding gives back exactly the values that came
in. A missing key in a row is a null cell. Ints and floats mixed in one key become float64 (what
W&B and its client do; `1` and `1.0` are the same number) unless an int is too large for a double.

pyarrow is optional (the `parquet` extra): without it no segment is written and history stays in
the catalog's tail table, which every reader reads as well (see history.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import arrow_runtime

META_KEY = b"wandb_mirror"
FORMAT_VERSION = 1
ROW_GROUP_ROWS = 65_536
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_EXACT_IN_DOUBLE = 2 ** 53


@dataclass(frozen=True)
class Segment:
    """One published segment of a run's history, as the catalog indexes it (`history_segments`)."""

    run_pk: int
    first_step: int
    last_step: int
    rows: int
    keys: tuple[str, ...]
    md5: str
    size: int

    @classmethod
    def from_db(cls, r: Any) -> Segment:
        return cls(r[0], r[1], r[2], r[3], tuple(json.loads(r[4] or "[]")), r[5], r[6])

    def index_row(self) -> tuple[int, int, int, int, str, str, int]:
        """The values of history_segments' columns in `from_db`'s order."""
        return (self.run_pk, self.first_step, self.last_step, self.rows, json.dumps(list(self.keys)), self.md5,
                self.size)


def available() -> bool:
    """True when pyarrow can be imported (history segments can be written and read)."""
    try:
        arrow_runtime.pyarrow()
    except ImportError:
        return False
    return True


def _pa() -> Any:
    try:
        return arrow_runtime.pyarrow()
    except ImportError:  # pragma: no cover - exercised only without the extra
        from ..errors import MirrorError

        raise MirrorError("this store holds history segments (Parquet): install the `parquet` extra "
                          "(pip install 'wandb-mirror[parquet]') to read them") from None


def _kind(values: list[Any]) -> str:
    """The column type for one key's values (None = key absent in that row)."""
    kinds = set()
    big_int = False
    for v in values:
        if v is None:
            continue
        t = type(v)
        if t is bool:
            kinds.add("bool")
        elif t is int:
            if not (_INT64[0] <= v <= _INT64[1]):
                return "json"
            big_int = big_int or abs(v) > _EXACT_IN_DOUBLE
            kinds.add("int")
        elif t is float:
            kinds.add("float")
        elif t is str:
            kinds.add("str")
        else:
            return "json"
        if len(kinds) > 1 and kinds != {"int", "float"}:
            return "json"
    if kinds == {"int", "float"}:
        return "json" if big_int else "float"
    return kinds.pop() if kinds else "json"


def _nested_array(pa: Any, col: list[Any]) -> Any:
    """An Arrow struct or list array for objects/lists that decodes back to exactly `col`, else None
    (keys that come and go inside the objects, mixed types, nulls: those stay JSON text)."""
    present = [v for v in col if v is not None]
    if not present or not (all(type(v) is dict for v in present) or all(type(v) is list for v in present)):
        return None
    try:
        arr = pa.array(col)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if not (pa.types.is_struct(arr.type) or pa.types.is_list(arr.type)) or pa.types.is_null(arr.type):
        return None
    back = arr.to_pylist()
    same = all(a is None if b is None else _json_text(a) == _json_text(b) for a, b in zip(back, col))
    return arr if same else None


def _json_text(v: Any) -> str:
    return json.dumps(v, allow_nan=True, separators=(",", ":"), ensure_ascii=False)


def encode(rows: list[tuple[int, dict[str, Any]]]) -> bytes:
    """Parquet bytes for `rows` ((step, row dict) sorted by step, steps unique)."""
    pa = _pa()
    import pyarrow.parquet as pq

    keys: dict[str, None] = {}
    for _, row in rows:
        for k in row:
            if k != "_step":
                keys.setdefault(k, None)
    arrays = [pa.array([s for s, _ in rows], type=pa.int64())]
    names = ["_step"]
    json_cols = []
    # An explicit JSON null is a value, unlike a missing key: mark it so _kind sees it.
    null = object()
    for k in keys:
        col: list[Any] = [(null if row[k] is None else row[k]) if k in row else None for _, row in rows]
        kind = "json" if any(v is null for v in col) else _kind(col)
        if kind == "json" and (nested := _nested_array(pa, col)) is not None:
            arrays.append(nested)  # objects and lists as Arrow structs/lists, as W&B's exports hold them
        elif kind == "json":
            json_cols.append(k)
            arrays.append(pa.array([None if v is None else _json_text(None if v is null else v) for v in col],
                                   type=pa.string()))
        elif kind == "float":
            arrays.append(pa.array([None if v is None else float(v) for v in col], type=pa.float64()))
        else:
            arrays.append(pa.array(col, type={"int": pa.int64(), "bool": pa.bool_(), "str": pa.string()}[kind]))
        names.append(k)
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(metadata(json_cols))
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=ROW_GROUP_ROWS, **write_options(table.schema))
    return buf.getvalue()


def metadata(json_cols: Iterable[str]) -> dict[bytes, bytes]:
    """A segment's schema metadata: the format version and which string columns hold JSON text."""
    return {META_KEY: json.dumps({"version": FORMAT_VERSION, "json_columns": sorted(json_cols)}).encode()}


def write_options(schema: Any) -> dict[str, Any]:
    """pyarrow.parquet writer options for a segment of `schema`."""
    pa = _pa()
    # floats: BYTE_STREAM_SPLIT (metrics rarely repeat; split bytes compress far better with zstd:
    # 30% smaller on the bench's workload, and faster to write). Dictionaries only for strings:
    # steps never repeat and numbers seldom do, and each dictionary encoder holds a hash table
    # (about 10 MB per writer over 20 columns: the bulk of a first mirror's peak RSS).
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    return {"compression": "zstd", "write_statistics": ["_step"],
            "use_dictionary": strings or False, "use_byte_stream_split": floats or False}


def json_columns(schema: Any) -> set[str]:
    meta = (schema.metadata or {}).get(META_KEY)
    if not meta:
        return set()
    try:
        return set(json.loads(meta).get("json_columns") or [])
    except (ValueError, AttributeError):
        return set()


def row_groups(pf: Any, min_step: int | None, max_step: int | None) -> Iterator[int]:
    """The row groups of ParquetFile `pf` that may hold steps in [min_step, max_step), by their
    `_step` statistics (a group without statistics is always read)."""
    step_idx = pf.schema_arrow.get_field_index("_step")
    for g in range(pf.num_row_groups):
        stats = pf.metadata.row_group(g).column(step_idx).statistics
        if stats is not None and stats.has_min_max:
            if (max_step is not None and stats.min >= max_step) or (min_step is not None and stats.max < min_step):
                continue
        yield g


def decode(source: Any, *, min_step: int | None = None, max_step: int | None = None,
           columns: Iterable[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(step, row) from a segment (a path or file object), min_step inclusive, max_step exclusive.

    With `columns`, only those keys are read (the others are not even decompressed).
    Row groups are read one at a time, so memory is bounded by the row-group size.
    """
    _pa()
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source)
    schema = pf.schema_arrow
    jcols = json_columns(schema)
    names = schema.names
    if columns is not None:
        wanted = set(columns)
        names = ["_step"] + [n for n in names if n in wanted and n != "_step"]
    for g in row_groups(pf, min_step, max_step):
        table = pf.read_row_group(g, columns=names)
        cols = [(n, table.column(n).to_pylist(), n in jcols) for n in names if n != "_step"]
        for i, step in enumerate(table.column("_step").to_pylist()):
            if (min_step is not None and step < min_step) or (max_step is not None and step >= max_step):
                continue
            row: dict[str, Any] = {"_step": step}
            for n, values, is_json in cols:
                v = values[i]
                if v is not None:
                    row[n] = json.loads(v) if is_json else v
            yield step, row


def check(source: Any) -> tuple[int, int, int] | str:
    """(rows, first step, last step) of a readable segment, else the problem in one line."""
    try:
        pa = _pa()
        import pyarrow.parquet as pq

        # ParquetFile, not read_table: read_table loads pyarrow.dataset (memory) for one column
        steps = pq.ParquetFile(source).read(columns=["_step"]).column("_step").combine_chunks()
        if not pa.types.is_integer(steps.type):
            return f"segment's _step column is {steps.type}, not integers"
        n = len(steps)
        if n == 0:
            return "segment has no rows"
        if steps.null_count:
            return "segment has rows without a step"
        if not _increasing(steps):
            return "segment steps are not strictly increasing"
        first, last = steps[0].as_py(), steps[n - 1].as_py()
    except Exception as e:  # noqa: BLE001 - any parse failure is the answer
        return f"not a readable history segment: {type(e).__name__}: {str(e)[:200]}"
    return n, first, last


def _increasing(steps: Any) -> bool:
    """Whether an integer Arrow array without nulls is strictly increasing. With numpy (which
    pyarrow brings), not pyarrow.compute: importing that costs the process ~8 MB of RSS."""
    a = steps.to_numpy()
    return bool((a[1:] > a[:-1]).all())


def _plain(pa: Any, t: Any) -> Any:
    """`t` as the segment layout stores it (a type whose values decode exactly as they came), or
    None for a type it does not hold (binary, timestamps, decimals, uint64...)."""
    if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_float64(t) or pa.types.is_float32(t):
        return t
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_signed_integer(t) or (pa.types.is_unsigned_integer(t) and t.bit_width < 64):
        return t
    if pa.types.is_large_string(t) or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)):
        return pa.string()
    if pa.types.is_struct(t):
        fields = [(f, _plain(pa, f.type)) for f in t]
        if not fields or any(p is None or pa.types.is_null(p) for _, p in fields):
            return None
        return pa.struct([f.with_type(p) for f, p in fields])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        v = _plain(pa, t.value_type)
        return None if v is None or pa.types.is_null(v) else pa.list_(t.value_field.with_type(v))
    if pa.types.is_null(t):
        return t
    return None


def segment_plan(schema: Any) -> tuple[list[tuple[str, Any]], frozenset[str]] | None:
    """How segment_table turns tables of `schema` into the segment layout: the columns to keep
    with their segment types, and the JSON-text columns; None when the layout cannot hold them."""
    pa = _pa()
    names = schema.names
    if names.count("_step") != 1 or len(set(names)) != len(names):
        return None
    jcols = frozenset(json_columns(schema))
    step = schema.field("_step").type
    if not pa.types.is_integer(step) or step == pa.uint64():
        return None
    cols: list[tuple[str, Any]] = [("_step", pa.int64())]
    for f in schema:
        if f.name == "_step":
            continue
        want = _plain(pa, f.type)
        if want is None or (f.name in jcols and not pa.types.is_string(want)):
            return None
        if not pa.types.is_null(want):
            cols.append((f.name, want))
    return cols, jcols & frozenset(n for n, _ in cols)


def segment_table(table: Any, plan: tuple[list[tuple[str, Any]], frozenset[str]] | None = None
                  ) -> tuple[Any, frozenset[str]] | None:
    """An Arrow table of history (an exported file's rows: `_step` and one column per key) in the
    segment layout, column by column and without a Python object per cell, with the columns that
    hold JSON text; None when some column has a type the layout does not hold (the caller then
    goes through rows: decode, encode). Decoding the result gives exactly the rows decoding
    `table` gives: null-typed columns (keys no row has) are dropped, `_step` becomes int64 and
    first, types are only widened, JSON-text columns stay JSON text. `plan`: segment_plan() of
    the table's schema, when the caller has it already."""
    pa = _pa()
    plan = plan or segment_plan(table.schema)
    if plan is None:
        return None
    cols, jcols = plan
    arrays = []
    for name, want in cols:
        col = table.column(name)
        arrays.append(col if col.type == want else col.cast(want))
    return pa.Table.from_arrays(arrays, names=[n for n, _ in cols]).replace_schema_metadata(metadata(jcols)), jcols


def file_plan(source: Any) -> tuple[list[tuple[str, Any]], frozenset[str]] | None:
    """segment_plan() of a Parquet file's schema (read from its footer only)."""
    _pa()
    import pyarrow.parquet as pq

    return segment_plan(pq.ParquetFile(source).schema_arrow)


def tables(source: Any, *, min_step: int | None = None, max_step: int | None = None,
           plan: tuple[list[tuple[str, Any]], frozenset[str]] | None = None) -> Iterator[tuple[Any, frozenset[str]]]:
    """A Parquet file of history (a segment or an exported file) as segment-layout Arrow tables, one
    per row group, rows with min_step <= step < max_step; for History.put_tables. Raises
    ValueError when the layout cannot hold the file's columns (check with file_plan first) or its
    steps are not strictly increasing (`check` tells)."""
    _pa()
    import numpy as np
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source)
    plan = plan or segment_plan(pf.schema_arrow)
    if plan is None:
        raise ValueError("this file's columns do not fit the segment layout")
    for g in row_groups(pf, min_step, max_step):
        table = pf.read_row_group(g, columns=[n for n, _ in plan[0]])
        steps = table.column("_step").combine_chunks()
        if steps.null_count or not _increasing(steps):
            raise ValueError("this file's steps are not strictly increasing")
        # steps are sorted: the rows in range are one slice (numpy, not pyarrow.compute: see _increasing)
        a = steps.to_numpy()
        lo = 0 if min_step is None else int(np.searchsorted(a, min_step, "left"))
        hi = len(a) if max_step is None else int(np.searchsorted(a, max_step, "left"))
        if hi <= lo:
            continue
        got = segment_table(table.slice(lo, hi - lo), plan)
        assert got is not None
        yield got
