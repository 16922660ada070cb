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
from typing import Any

META_KEY = b"wandb_mirror"
FORMAT_VERSION = 1
ROW_GROUP_ROWS = 65_536
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_EXACT_IN_DOUBLE = 2 ** 53


def available() -> bool:
    """True when pyarrow can be imported (history segments can be written and read)."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only without the extra
        from ..errors import MirrorError

        raise MirrorError("this store holds history segments (Parquet): install the `parquet` extra "
                          "(pip install 'wandb-mirror[parquet]') to read them") from None
    return pa


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
    meta = {META_KEY: json.dumps({"version": FORMAT_VERSION, "json_columns": json_cols}).encode()}
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)
    buf = io.BytesIO()
    # floats: BYTE_STREAM_SPLIT instead of dictionaries (metrics rarely repeat; split bytes compress
    # far better with zstd: 30% smaller on the bench's workload, and faster to write)
    floats = [n for n, a in zip(names, arrays) if pa.types.is_floating(a.type)]
    pq.write_table(table, buf, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=["_step"],
                   use_dictionary=[n for n in names if n not in floats], use_byte_stream_split=floats or False)
    return buf.getvalue()


def json_columns(schema: Any) -> set[str]:
    meta = (schema.metadata or {}).get(META_KEY)
    if not meta:
        return set()
    try:
        return set(json.loads(meta).get("json_columns") or [])
    except (ValueError, AttributeError):
        return set()


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
    step_idx = pf.schema_arrow.get_field_index("_step")
    for g in range(pf.num_row_groups):
        stats = pf.metadata.row_group(g).column(step_idx).statistics
        if stats is not None and stats.has_min_max:
            if (max_step is not None and stats.min >= max_step) or (min_step is not None and stats.max < min_step):
                continue
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
        _pa()
        import pyarrow.parquet as pq

        table = pq.read_table(source, columns=["_step"])
        steps = table.column("_step").to_pylist()
    except Exception as e:  # noqa: BLE001 - any parse failure is the answer
        return f"not a readable history segment: {type(e).__name__}: {str(e)[:200]}"
    if not steps:
        return "segment has no rows"
    if any(b <= a for a, b in zip(steps, steps[1:])):
        return "segment steps are not strictly increasing"
    return len(steps), steps[0], steps[-1]
