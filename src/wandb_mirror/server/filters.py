"""Mongo-style filters and W&B order strings, evaluated server-side over plain documents.

W&B evaluates `Api.runs(filters=...)` on the server (the client only json-dumps the dict), so the
emulator must too. The document for a run is a flat dict of its columns under the W&B names
(`name`, `displayName`, `state`, `tags`, `createdAt`, ...) plus the decoded `config` (wrapped, as
stored) and `summary_metrics` objects; `lookup()` resolves dotted keys into those.

Semantics (the real server's are private; these follow MongoDB where W&B's are unknown):
- a list-valued field matches an operator when any element does (`{"tags": "x"}` = contains,
  `$in` = overlap); `$ne`/`$nin` on a list match when no element does;
- `config.K` is the unwrapped value, `config.K.value` the same value reached through the wrapper;
- values of different kinds never compare (a string is neither < nor > a number); booleans are not
  numbers; NaN equals nothing;
- a missing key or a NULL column is "missing": it fails every comparison except `$ne`/`$nin`/
  `{"$exists": false}`/`null` equality, and sorts last in either direction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FilterError(ValueError):
    """The filter document is malformed (unknown operator, wrong operand type)."""


# W&B / SDK spellings of run columns -> the canonical document key.
FIELD_ALIASES = {
    "display_name": "displayName",
    "created_at": "createdAt",
    "heartbeat_at": "heartbeatAt",
    "updated_at": "updatedAt",
    "job_type": "jobType",
    "group_name": "group",
    "groupName": "group",
    "sweepName": "sweep",
    "sweep_name": "sweep",
    "user": "username",
    "id": "name",
}
PREFIX_ALIASES = {
    "summary": "summary_metrics",
    "summaryMetrics": "summary_metrics",
    "summary_metrics": "summary_metrics",
    "config": "config",
}
DATE_FIELDS = {"createdAt", "heartbeatAt", "updatedAt"}


def canonical_key(key: str) -> str:
    head, dot, rest = key.partition(".")
    if dot and head in PREFIX_ALIASES:
        return f"{PREFIX_ALIASES[head]}.{rest}"
    return FIELD_ALIASES.get(key, key)


def _walk(obj: Any, segs: list[str]) -> Any:
    """Resolve dotted segments into nested dicts; a key may itself contain dots (longest match wins)."""
    if not segs:
        return obj
    if not isinstance(obj, Mapping):
        return MISSING
    for i in range(len(segs), 0, -1):
        k = ".".join(segs[:i])
        if k in obj:
            r = _walk(obj[k], segs[i:])
            if r is not MISSING:
                return r
    return MISSING


def lookup(doc: Mapping[str, Any], key: str) -> Any:
    """The value of `key` in a run document, or MISSING."""
    key = canonical_key(key)
    head, dot, rest = key.partition(".")
    if dot and head == "config":
        return _config_lookup(doc.get("config"), rest.split("."))
    if dot and head == "summary_metrics":
        return _walk(doc.get("summary_metrics"), rest.split("."))
    if key in doc:
        v = doc[key]
        return MISSING if v is None else v
    if dot:
        return _walk(doc, key.split("."))
    return MISSING


def _config_lookup(config: Any, segs: list[str]) -> Any:
    if not isinstance(config, Mapping):
        return MISSING
    for i in range(len(segs), 0, -1):
        k = ".".join(segs[:i])
        if k not in config:
            continue
        node, rest = config[k], segs[i:]
        # stored config is wrapped {"value": v, "desc": ...}; `config.k` and `config.k.value` both mean v
        if isinstance(node, Mapping) and "value" in node:
            node = node["value"]
            if rest and rest[0] == "value":
                r = _walk(node, rest[1:])
                if r is not MISSING:
                    return r
        r = _walk(node, rest)
        if r is not MISSING:
            return r
    return MISSING


# ---------------------------------------------------------------------------------------- comparison
def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]00:?00)?$")


def _norm_date(v: Any) -> Any:
    """ISO strings compare as strings once the UTC suffix and separator are normalised."""
    if isinstance(v, str) and _DATE_RE.match(v):
        v = v.replace(" ", "T")
        for suffix in ("Z", "+00:00", "+0000", "-00:00"):
            if v.endswith(suffix):
                return v[: -len(suffix)]
    return v


def _eq(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return a == b


def _cmp(a: Any, b: Any) -> int | None:
    """-1/0/1, or None when the two do not compare (different kinds, NaN)."""
    if _is_num(a) and _is_num(b):
        if (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
            return None
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        a, b = _norm_date(a), _norm_date(b)
        return (a > b) - (a < b)
    if isinstance(a, bool) and isinstance(b, bool):
        return (a > b) - (a < b)
    return None


@lru_cache(maxsize=256)
def _regex(pattern: str, options: str) -> re.Pattern[str]:
    flags = 0
    if "i" in options:
        flags |= re.IGNORECASE
    if "m" in options:
        flags |= re.MULTILINE
    if "s" in options:
        flags |= re.DOTALL
    try:
        return re.compile(pattern, flags)
    except re.error as e:
        raise FilterError(f"bad $regex {pattern!r}: {e}") from None


def _candidates(value: Any) -> list[Any]:
    """A list value matches when any element does; the whole list is also a candidate (exact match)."""
    if isinstance(value, list):
        return [*value, value]
    return [value]


def _match_op(value: Any, op: str, arg: Any, spec: Mapping[str, Any]) -> bool:
    if op == "$eq":
        return _match_eq(value, arg)
    if op == "$ne":
        return not _match_eq(value, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if value is MISSING:
            return False
        for v in _candidates(value):
            c = _cmp(v, arg)
            if c is None:
                continue
            if (op == "$gt" and c > 0) or (op == "$gte" and c >= 0) or (op == "$lt" and c < 0) or (
                op == "$lte" and c <= 0
            ):
                return True
        return False
    if op == "$in":
        if not isinstance(arg, list):
            raise FilterError("$in needs a list")
        return any(_match_eq(value, a) for a in arg)
    if op == "$nin":
        if not isinstance(arg, list):
            raise FilterError("$nin needs a list")
        return not any(_match_eq(value, a) for a in arg)
    if op == "$exists":
        return (value is not MISSING) == bool(arg)
    if op == "$regex":
        if value is MISSING:
            return False
        rx = _regex(str(arg), str(spec.get("$options", "")))
        return any(isinstance(v, str) and rx.search(v) is not None for v in _candidates(value))
    if op == "$options":
        return True  # consumed by $regex
    if op == "$not":
        if isinstance(arg, Mapping):
            return not _match_value(value, arg)
        if isinstance(arg, str):
            return not _match_op(value, "$regex", arg, {})
        raise FilterError("$not needs an operator document")
    if op == "$size":
        return isinstance(value, list) and len(value) == arg
    if op == "$all":
        if not isinstance(arg, list):
            raise FilterError("$all needs a list")
        return isinstance(value, list) and all(_match_eq(value, a) for a in arg)
    if op == "$contains":
        if isinstance(value, str) and isinstance(arg, str):
            return arg in value
        return isinstance(value, list) and any(_eq(v, arg) for v in value)
    raise FilterError(f"unknown operator {op}")


def _match_eq(value: Any, arg: Any) -> bool:
    if arg is None:
        return value is MISSING or value is None
    if value is MISSING:
        return False
    if isinstance(arg, float) and math.isnan(arg):
        return False
    return any(_eq(v, arg) for v in _candidates(value))


def _match_value(value: Any, spec: Any) -> bool:
    if isinstance(spec, Mapping) and spec and all(isinstance(k, str) and k.startswith("$") for k in spec):
        return all(_match_op(value, op, arg, spec) for op, arg in spec.items())
    return _match_eq(value, spec)


def matches(doc: Mapping[str, Any], flt: Any, get: Callable[[Mapping[str, Any], str], Any] = lookup) -> bool:
    """Does `doc` satisfy the Mongo-style filter `flt`? `get` resolves a (dotted) key in `doc`."""
    if flt is None:
        return True
    if not isinstance(flt, Mapping):
        raise FilterError("a filter must be a JSON object")
    for key, spec in flt.items():
        if key == "$and":
            if not isinstance(spec, list):
                raise FilterError("$and needs a list")
            if not all(matches(doc, f, get) for f in spec):
                return False
        elif key == "$or":
            if not isinstance(spec, list):
                raise FilterError("$or needs a list")
            if spec and not any(matches(doc, f, get) for f in spec):
                return False
        elif key == "$nor":
            if not isinstance(spec, list):
                raise FilterError("$nor needs a list")
            if any(matches(doc, f, get) for f in spec):
                return False
        elif key.startswith("$"):
            raise FilterError(f"unknown top-level operator {key}")
        elif not _match_value(get(doc, key), spec):
            return False
    return True


def filter_keys(flt: Any) -> set[str]:
    """Every canonical field key a filter refers to (so callers decode only what is needed)."""
    out: set[str] = set()
    if isinstance(flt, Mapping):
        for k, v in flt.items():
            if k in ("$and", "$or", "$nor") and isinstance(v, list):
                for f in v:
                    out |= filter_keys(f)
            elif not k.startswith("$"):
                out.add(canonical_key(k))
    return out


# ---------------------------------------------------------------------------------------- order
ORDER_ALIASES = {
    "created_at": "createdAt",
    "heartbeat_at": "heartbeatAt",
    "updated_at": "updatedAt",
    "display_name": "displayName",
    "job_type": "jobType",
}


def parse_order(order: str | None, default: str = "+createdAt") -> tuple[str, bool]:
    """'+created_at' -> ('createdAt', False); '-summary_metrics.loss' -> ('summary_metrics.loss', True)."""
    order = (order or "").strip() or default
    desc = order.startswith("-")
    key = order[1:] if order[:1] in "+-" else order
    key = key.strip()
    key = ORDER_ALIASES.get(key, key)
    return canonical_key(key), desc


def sort_value(v: Any) -> tuple[int, Any] | None:
    """A total order over JSON scalars: numbers < strings < booleans; None when missing/unsortable."""
    if v is MISSING or v is None:
        return None
    if _is_num(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        return (0, v)
    if isinstance(v, str):
        return (1, _norm_date(v))
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, list):
        return (3, len(v))
    return None


def upstream_order(rows: list[dict[str, Any]], *, created: str = "created_at", name: str = "name",
                   newest_first: bool = False) -> list[dict[str, Any]]:
    """Rows in the order a stable W&B lists them: by creation time, ties by name, never by the
    store's insertion order (a mirror inserts in whatever order its passes met the rows)."""
    by_name = sorted(rows, key=lambda r: str(r.get(name) or ""))
    return sorted(by_name, key=lambda r: str(_norm_date(r.get(created) or "")), reverse=newest_first)


def sort_docs(items: list[Any], key_of: Callable[[Any], Any], desc: bool) -> list[Any]:
    """Stable sort by `key_of(item)`; missing values go last whatever the direction. Ties keep the
    input's order, so callers pass items already in `upstream_order`."""
    present: list[tuple[tuple[int, Any], Any]] = []
    missing: list[Any] = []
    for it in items:
        sv = sort_value(key_of(it))
        if sv is None:
            missing.append(it)
        else:
            present.append((sv, it))
    present.sort(key=lambda p: p[0], reverse=desc)
    return [it for _, it in present] + missing
