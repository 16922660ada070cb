"""W&B's parquet history exports, as `serve` offers them.

W&B exports each run's history to Parquet files in the background and answers
`parquetHistory(liveKeys)` with presigned URLs of those files plus `liveData`: one row per step not
exported yet (holding the `liveKeys`), which the client then reads through HistoryPage. Here the
exported files are the store's history segments themselves (store/segments.py writes them with
W&B's columns: `_step` and one typed column per key), so an export costs nothing: a segment counts
as exported `--parquet-export-delay` seconds after it was written (0 by default; W&B users see
hours), and everything else (the tail, younger segments, a segment a tail row rewrites) is live.

The URLs are presigned-style: like W&B's bucket URLs they need no API key (with `--api-key` they
carry a signature instead), answer a plain GET with the whole file, and HTTP Range requests
(`bytes=a-b`, `bytes=a-`, `bytes=-n`) with 206 and just those bytes: the official client reads
single columns of a remote file that way.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from ..store.history import History, Segment
from ..times import epoch
from .integrity import verified_chunks
from .urls import quote_segment

ROUTE = "/_mirror/history/"
CLIENT_PAGE = 1000  # scan_history's default page_size


def export_path(md5: str, filename: str) -> str:
    """The canonical (signed) path of one export file."""
    return f"{ROUTE}{md5}/{quote_segment(filename)}"


def _age_seconds(created_at: str | None, now: float) -> float:
    t = epoch(created_at)
    return float("inf") if t is None else now - t


def exported_segments(conn: sqlite3.Connection, history: History, run_pk: int, delay: float) -> list[Segment]:
    """The run's segments offered as exports: the longest run of segments from the first step that
    are old enough, that no tail row rewrites and that end within the run's lastStep, cut so that the live part starts on a multiple of
    CLIENT_PAGE. (The official client reads a page that holds the first live step entirely through
    HistoryPage, on top of the rows it already read from the files for that page: a live part that
    starts mid-page would give it those rows twice.)"""
    now = time.time()
    stop = history.stop(run_pk)  # rows beyond the run's lastStep are neither exported nor live
    created = dict(conn.execute("SELECT first_step, created_at FROM history_segments WHERE run_pk = ?", [run_pk]).fetchall())
    tail_steps = [r[0] for r in conn.execute("SELECT step FROM history WHERE run_pk = ? AND step < ?",
                                             [run_pk, 2 ** 63 - 1 if stop is None else stop])]
    segs = [s for s in history.segments(run_pk) if stop is None or s.first_step < stop]
    out: list[Segment] = []
    for s in segs:
        if (_age_seconds(created.get(s.first_step), now) < delay or (stop is not None and s.last_step >= stop)
                or any(s.first_step <= t <= s.last_step for t in tail_steps)):
            break
        out.append(s)
    live = [t for t in tail_steps if not out or t > out[-1].last_step] + [s.first_step for s in segs[len(out):]]
    if live:
        boundary = min(live) // CLIENT_PAGE * CLIENT_PAGE
        while out and out[-1].last_step >= boundary:
            out.pop()
    return out


def parquet_history(conn: sqlite3.Connection, history: History, run_pk: int, file_prefix: str,
                    live_keys: list[str], delay: float, sign: Callable[[str], str]) -> dict[str, Any]:
    """The `parquetHistory` answer: export URLs (`sign` turns a path into a URL) and live rows."""
    segs = exported_segments(conn, history, run_pk, delay)
    urls = [sign(export_path(s.md5, f"{file_prefix}_{i}.runhistory.parquet")) for i, s in enumerate(segs)]
    keys = [k for k in live_keys if isinstance(k, str)] or ["_step"]
    live: list[dict[str, Any]] = []
    # the exports are a prefix of the run's steps: what follows them is live
    for step, row in history.rows(run_pk, min_step=segs[-1].last_step + 1 if segs else None, keys=keys):
        live.append({k: row[k] for k in keys if k in row} | {"_step": step})
    return {"parquetUrls": urls, "liveData": live}


class Unsatisfiable(ValueError):
    """A Range outside the file (answered 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `Range: bytes=...` header, or None to send the whole file;
    raises Unsatisfiable for a range outside the file. Multi-ranges are answered whole (allowed)."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    a, dash, b = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                raise Unsatisfiable(header)
            return max(0, size - n), size - 1
        first = int(a)
        last = int(b) if b else size - 1
    except ValueError as e:
        if isinstance(e, Unsatisfiable):
            raise
        return None
    if first >= size or last < first:
        raise Unsatisfiable(header)
    return first, min(last, size - 1)


_checked: dict[str, tuple[int, float]] = {}  # md5 -> (size, mtime) of objects that hashed to their key
_checked_lock = threading.Lock()


def _intact(objects: Any, md5: str) -> bool:
    """The object hashes to its key (re-checked only when its size or mtime change)."""
    st = objects.path(md5).stat()
    with _checked_lock:
        if _checked.get(md5) == (st.st_size, st.st_mtime):
            return True
    ok = objects.hash_object(md5).md5 == md5
    if ok:
        with _checked_lock:
            _checked[md5] = (st.st_size, st.st_mtime)
    return ok


def send_export(handler: Any, path: str, query: dict[str, list[str]], method: str, fault: str | None) -> None:
    """GET/HEAD of an export file: the whole file, or the byte range asked for."""
    parts = path[len(ROUTE):].split("/")
    if len(parts) != 2:
        handler._send_json(404, {"errors": [{"message": f"expected {ROUTE}{{md5}}/{{name}}"}]})
        return
    md5, name = parts
    if not handler._signature_ok(f"{ROUTE}{md5}/{name}", query):
        return
    objects = handler.server.objects
    try:
        f = open(objects.path(md5), "rb")
    except (ValueError, OSError):
        handler._send_json(404, {"errors": [{"message": f"history export {md5} not found"}]})
        return
    with f:
        size = objects.size(md5)
        try:
            rng = parse_range(handler.headers.get("Range"), size)
        except Unsatisfiable:
            handler._send(416, b"", "text/plain", head=True, headers={"Content-Range": f"bytes */{size}"})
            return
        if rng is None:  # never complete a body that differs from its md5 (server/integrity.py)
            handler._stream(verified_chunks(iter(lambda: f.read(1 << 20), b""), md5, size), size,
                            "application/vnd.apache.parquet", method, fault, headers={"Accept-Ranges": "bytes"})
            return
        if not _intact(objects, md5):  # a range cannot be checked alone: the object is, once
            handler._send_json(500, {"errors": [{"message": f"history export {md5} is damaged on disk; "
                                                            "run `wandb-mirror repair`"}]})
            return
        first, last = rng
        f.seek(first)
        left = last - first + 1

        def chunks() -> Any:
            nonlocal left
            while left > 0:
                data = f.read(min(left, 1 << 20))
                if not data:
                    return
                left -= len(data)
                yield data

        handler._stream(chunks(), last - first + 1, "application/vnd.apache.parquet", method, fault, status=206,
                        headers={"Accept-Ranges": "bytes", "Content-Range": f"bytes {first}-{last}/{size}"})
