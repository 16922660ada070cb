"""Times and durations: the one place that parses and formats them.

Two timestamp shapes, both UTC:

- `wandb_time`: W&B's own, "2024-01-02T03:04:05" (seconds, no zone), as its API sends and as the
  catalog keeps upstream's times and the server answers;
- `utcnow` / `stamp`: the mirror's bookkeeping, "2024-01-02T03:04:05.123456Z" (passes, cursors,
  journal), precise enough to order events within a second.

`parse_time` reads either, and any ISO-8601 time with an offset (a time without a zone is UTC).
Durations: 90, 1.5, "90s", "5m", "1h30m", "250ms", "1d", "1w" (`parse_duration`), and back
(`format_duration`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

WANDB_FORMAT = "%Y-%m-%dT%H:%M:%S"
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
FILENAME_FORMAT = "%Y%m%dT%H%M%SZ"
CONSOLE_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(dt: datetime | None) -> datetime:
    if dt is None:
        return now()
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def wandb_time(dt: datetime | None = None) -> str:
    """`dt` (default: now; without a zone: UTC) as W&B writes times."""
    return _utc(dt).strftime(WANDB_FORMAT)


def stamp(dt: datetime | None = None) -> str:
    """`dt` (default: now; without a zone: UTC) as the mirror stamps its own records."""
    return _utc(dt).strftime(STAMP_FORMAT)


def console_time(dt: datetime | None = None) -> str:
    """`dt` (default: now) as W&B stamps console lines: microseconds, no zone."""
    return _utc(dt).strftime(CONSOLE_FORMAT)


def filename_stamp(dt: datetime | None = None) -> str:
    """`dt` (default: now) for a file name: sortable, no colons."""
    return _utc(dt).strftime(FILENAME_FORMAT)


def utcnow() -> str:
    return stamp()


def stamp_in(seconds: float) -> str:
    """The stamp `seconds` from now."""
    return stamp(now() + timedelta(seconds=seconds))


def parse_time(text: str | None) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 time ("Z", an offset, or none: UTC); None if empty or invalid."""
    if not text or not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def epoch(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO-8601 time, None if empty or invalid."""
    dt = parse_time(text)
    return None if dt is None else dt.timestamp()


# -------------------------------------------------------------------------------------------------
# durations
# -------------------------------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from 90, 1.5, "90s", "5m", "1h30m", "250ms", "1d"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like \"60s\", got a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like \"60s\", got {type(value).__name__}")
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("empty duration")
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"expected a duration like \"60s\", \"5m\", \"1h30m\", got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
