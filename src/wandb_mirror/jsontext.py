"""How the catalog stores JSON: strict JSON that SQLite's JSON functions and datasette read, with
W&B's non-finite numbers kept losslessly.

W&B writes `NaN`, `Infinity` and `-Infinity` as bare tokens, which no strict JSON parser accepts
(SQLite's `json_each` fails on the whole table). In the catalog they are spelled:

    W&B text     catalog text   what SQL sees
    Infinity     9e999          REAL +Inf (SQLite's own spelling of infinity)
    -Infinity    -9e999         REAL -Inf
    NaN          "NaN"          TEXT 'NaN' (SQL has no NaN)

A genuine upstream *string* "NaN" is stored with its first letter escaped (`"\\u004EaN"`): the
same string to every JSON reader, but not the exact five characters `"NaN"`, so decoding can
tell the two apart. `to_catalog` and `from_catalog` touch only those tokens, outside strings:
everything else keeps its bytes, so `serve` answers with the text upstream sent (the two
spellings a W&B server never emits, a literal `9e999` number and an escaped `"\\u004EaN"`,
come back as the same values spelled `Infinity` and `"NaN"`).
"""

from __future__ import annotations

import json
import re
from typing import Any, overload

# A JSON string (skipped whole, so tokens inside strings are never touched) or one of the tokens.
_TO = re.compile(r'"(?:[^"\\]|\\.)*"|-?Infinity|NaN')
_FROM = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![0-9.eE+-])-?9e999(?![0-9])')
_TO_CATALOG = {"NaN": '"NaN"', "Infinity": "9e999", "-Infinity": "-9e999", '"NaN"': '"\\u004EaN"'}
_FROM_CATALOG = {'"NaN"': "NaN", "9e999": "Infinity", "-9e999": "-Infinity"}
_LENIENT = json.JSONDecoder(strict=False)


def _sub_to(m: re.Match[str]) -> str:
    return _TO_CATALOG.get(m.group(0), m.group(0))


def _sub_from(m: re.Match[str]) -> str:
    return _FROM_CATALOG.get(m.group(0), m.group(0))


@overload
def to_catalog(text: str) -> str: ...
@overload
def to_catalog(text: None) -> None: ...
def to_catalog(text: str | None) -> str | None:
    """W&B JSON text -> catalog JSON text (strict JSON)."""
    if text is None or ("NaN" not in text and "Infinity" not in text):
        return text
    return _TO.sub(_sub_to, text)


@overload
def from_catalog(text: str) -> str: ...
@overload
def from_catalog(text: None) -> None: ...
def from_catalog(text: str | None) -> str | None:
    """Catalog JSON text -> the W&B JSON text it was stored from."""
    if text is None or ('"NaN"' not in text and "9e999" not in text):
        return text
    return _FROM.sub(_sub_from, text)


def loads(text: str | None, default: Any = None) -> Any:
    """Decode catalog JSON text (or W&B text) to Python values, NaN and infinities as floats."""
    if text is None or text == "":
        return default
    return _LENIENT.decode(from_catalog(text))


def dumps(value: Any) -> str:
    """Python value -> catalog JSON text (compact)."""
    return to_catalog(json.dumps(value, separators=(",", ":"), allow_nan=True))


# Every column that holds JSON, by table (the encoding above applies to each).
JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("teams",),
    "runs": ("config", "summary", "system_metrics", "tags", "history_keys"),
    "history": ("row",),
    "events": ("row",),
    "artifact_collections": ("tags",),
    "artifacts": ("aliases", "tags", "metadata"),
    "artifact_files": ("extra",),
    "reports": ("spec",),
    "passes": ("stats", "errors"),
    "changes": ("payload",),
    "plugin_state": ("value",),
    "journal": ("before", "after"),
    "automations": ("scope", "event", "action"),
}


# Record fields (models.py) that hold JSON text: decoded back to W&B text by `Record.from_row`.
JSON_FIELDS = frozenset(c for cols in JSON_COLUMNS.values() for c in cols) - {
    "row", "stats", "errors", "payload", "value", "before", "after", "scope", "event", "action"}


def encode_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its JSON columns in catalog form (a new dict when anything changed)."""
    cols = JSON_COLUMNS.get(table)
    if not cols:
        return row
    out = row
    for c in cols:
        v = row.get(c)
        if isinstance(v, str):
            enc = to_catalog(v)
            if enc is not v:
                if out is row:
                    out = dict(row)
                out[c] = enc
    return out
