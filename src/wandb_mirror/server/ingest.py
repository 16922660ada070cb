"""The file_stream endpoint: what `wandb.log()` and the end of a run send, written into the catalog.

`POST /files/{entity}/{project}/{run}/file_stream` carries a JSON object (gzip-encoded when the
client says so) of the shape wandb-core's filestream sends:

    {"files": {"wandb-history.jsonl": {"offset": N, "content": ["{json row}", ...]},
               "wandb-events.jsonl":  {...}, "wandb-summary.json": {"offset": 0, "content": ["{...}"]},
               "output.log": {"offset": N, "content": ["line", ...]}},
     "complete": true, "exitcode": 0, "uploaded": [...], "dropped": 0, "preempting": false}

History rows are keyed by their own `_step` (a resent chunk replaces, never duplicates: the client
retries whole requests), events are placed at their line offset (idempotent for the same reason),
the summary is replaced whole, and console lines are kept as the run file `output.log`, which is
what W&B itself exposes once a run has ended, and as the run's console lines (`run.console_logs()`). `complete` ends the run: exit code 0 is `finished`,
anything else `failed`.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import zlib
from typing import Any

from .. import ids, times
from ..org_models import ConsoleLine
from ..store.history import History
from ..store.org_catalog import append_console
from . import nodes as N
from .roots import touch_run

HISTORY = "wandb-history.jsonl"
EVENTS = "wandb-events.jsonl"
SUMMARY = "wandb-summary.json"
OUTPUT = "output.log"
MAX_LINES = 100_000  # per file per request; wandb-core sends far fewer (its own cap is bytes)


class StreamError(ValueError):
    """A file_stream body this server will not take (answered 400)."""


def decode_body(body: bytes, content_encoding: str | None, max_size: int) -> dict[str, Any]:
    """The JSON object of a file_stream body; a gzip body may unpack to at most `max_size` bytes."""
    if (content_encoding or "").lower() == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = d.decompress(body, max_size + 1)  # a small body must not unpack into gigabytes
        except zlib.error as e:
            raise StreamError(f"file_stream body is not valid gzip: {e}") from None
        if len(body) > max_size:
            raise StreamError(f"file_stream body unpacks to more than {max_size} bytes")
    try:
        payload = json.loads(body or b"{}")
    except ValueError as e:
        raise StreamError(f"file_stream body is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise StreamError("file_stream body must be a JSON object")
    return payload


def _chunk(files: dict[str, Any], name: str) -> tuple[int, list[str]] | None:
    c = files.get(name)
    if c is None:
        return None
    if not isinstance(c, dict) or not isinstance(c.get("content", []), list):
        raise StreamError(f"file_stream: {name} must be an object with a content list")
    lines = c.get("content") or []
    if len(lines) > MAX_LINES or not all(isinstance(x, str) for x in lines):
        raise StreamError(f"file_stream: {name} content must be at most {MAX_LINES} strings")
    offset = c.get("offset", 0)
    if not isinstance(offset, int) or offset < 0:
        raise StreamError(f"file_stream: {name} offset must be a non-negative integer")
    return offset, lines


def _row(line: str, what: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except ValueError:
        raise StreamError(f"file_stream: a {what} line is not JSON") from None
    if not isinstance(row, dict):
        raise StreamError(f"file_stream: a {what} line is not a JSON object")
    return row


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and "_type" not in v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "string" if isinstance(v, str) else "object"


def _history_keys(current: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`historyKeys` moved on by `rows`, in the shape W&B reports it (typeCounts, previousValue, lastStep)."""
    keys: dict[str, Any] = dict(current.get("keys") or {})
    last_step = int(current.get("lastStep", -1))
    for row in rows:
        last_step = max(last_step, int(row["_step"]))
        for k, v in _flatten(row).items():
            entry = keys.setdefault(k, {"typeCounts": [], "previousValue": None})
            t = _type_name(v)
            for tc in entry["typeCounts"]:
                if tc["type"] == t:
                    tc["count"] += 1
                    break
            else:
                entry["typeCounts"].append({"type": t, "count": 1})
            entry["previousValue"] = None if isinstance(v, float) and not math.isfinite(v) else v
    return {"lastStep": last_step, "keys": keys}


def apply(conn: sqlite3.Connection, objects: Any, run_pk: int, payload: dict[str, Any]) -> None:
    """Write one file_stream request into the catalog (the caller holds the write transaction)."""
    files = payload.get("files") or {}
    if not isinstance(files, dict):
        raise StreamError("file_stream: files must be an object")
    run = conn.execute("SELECT history_keys, state FROM runs WHERE pk = ?", [run_pk]).fetchone()
    sets: dict[str, Any] = {}

    chunk = _chunk(files, HISTORY)
    if chunk and chunk[1]:
        rows = []
        for line in chunk[1]:
            row = _row(line, "history")
            if not isinstance(row.get("_step"), int) or isinstance(row.get("_step"), bool):
                raise StreamError("file_stream: a history row has no integer _step")
            rows.append((row, line))
        conn.executemany("INSERT OR REPLACE INTO history (run_pk, step, row) VALUES (?, ?, ?)",
                         [(run_pk, r["_step"], line) for r, line in rows])
        hk = _history_keys(N.loads_or(run["history_keys"], {}) or {}, [r for r, _ in rows])
        sets["history_keys"] = json.dumps(hk)
        sets["last_step"] = hk["lastStep"]
        sets["history_line_count"] = History(None, objects, connect=lambda: conn).count(run_pk)

    chunk = _chunk(files, EVENTS)
    if chunk and chunk[1]:
        offset, lines = chunk
        for line in lines:
            _row(line, "events")
        conn.executemany("INSERT OR REPLACE INTO events (run_pk, seq, row) VALUES (?, ?, ?)",
                         [(run_pk, offset + i, line) for i, line in enumerate(lines)])
        sets["events_line_count"] = conn.execute("SELECT count(*) FROM events WHERE run_pk = ?",
                                                 [run_pk]).fetchone()[0]
        sets["system_metrics"] = conn.execute("SELECT row FROM events WHERE run_pk = ? ORDER BY seq DESC LIMIT 1",
                                              [run_pk]).fetchone()[0]

    chunk = _chunk(files, SUMMARY)
    if chunk and chunk[1]:
        _row(chunk[1][-1], "summary")
        sets["summary"] = chunk[1][-1]

    chunk = _chunk(files, OUTPUT)
    if chunk and chunk[1]:
        _append_output(conn, objects, run_pk, *chunk)
        append_console(conn, run_pk, [console_line(chunk[0] + i, text) for i, text in enumerate(chunk[1])])

    if payload.get("complete"):
        code = payload.get("exitcode")
        sets["state"] = "finished" if code in (0, None) else "failed"
    if sets:
        conn.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in sets)} WHERE pk = ?", [*sets.values(), run_pk])
    touch_run(conn, run_pk)


_CONSOLE_RE = re.compile(r"^(ERROR )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?) (.*)$", re.S)


def console_line(number: int, text: str) -> ConsoleLine:
    """wandb-core's output.log line: `[ERROR ]TIMESTAMP text` (ERROR marks stderr), as `logLines` serves it."""
    m = _CONSOLE_RE.match(text)
    if m is None:
        return ConsoleLine(number=number, line=text)
    return ConsoleLine(number=number, line=m.group(3), timestamp=m.group(2), level="error" if m.group(1) else "")


def _append_output(conn: sqlite3.Connection, objects: Any, run_pk: int, offset: int, lines: list[str]) -> None:
    """Console lines at `offset` replace what was there (the client rewrites lines ending in \\r)."""
    old = conn.execute("SELECT md5 FROM files WHERE run_pk = ? AND name = ?", [run_pk, OUTPUT]).fetchone()
    current = objects.read_bytes(old["md5"]).decode("utf-8", "replace").splitlines() if old else []
    if len(current) < offset:
        current.extend([""] * (offset - len(current)))
    current[offset:offset + len(lines)] = lines
    info = objects.put_bytes(("\n".join(current) + "\n").encode())
    t = times.wandb_time()
    conn.execute("INSERT OR IGNORE INTO file_versions (run_pk, name, size, md5, updated_at, mirrored_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", [run_pk, OUTPUT, info.size, info.md5, t, t])
    conn.execute(
        "INSERT INTO files (run_pk, name, id, size, md5, mimetype, updated_at, mirrored_at, tombstoned_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (run_pk, name) DO UPDATE SET size = excluded.size, "
        "md5 = excluded.md5, updated_at = excluded.updated_at, mirrored_at = excluded.mirrored_at, tombstoned_at = NULL",
        [run_pk, OUTPUT, ids.typed_id("File", f"{run_pk}:{OUTPUT}"), info.size, info.md5, "text/plain", t, t])
