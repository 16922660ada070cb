"""One module parses and formats times and durations."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from wandb_mirror import times

SRC = Path(times.__file__).resolve().parent
PLUGINS = SRC.parents[1] / "plugins"


@pytest.mark.parametrize("text, expected", [
    ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-01-02T03:04:05.250000Z", datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)),
    ("2024-01-02T05:04:05+02:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-01-01T22:04:05-05:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("", None), (None, None), ("yesterday", None),
])
def test_parse_time(text, expected) -> None:
    assert times.parse_time(text) == expected


def test_formats_round_trip() -> None:
    dt = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert times.wandb_time(dt) == "2024-01-02T03:04:05"
    assert times.stamp(dt) == "2024-01-02T03:04:05.123456Z"
    assert times.parse_time(times.stamp(dt)) == dt
    # a time without a zone is UTC, whatever the host's zone
    assert times.wandb_time(dt.replace(tzinfo=None)) == "2024-01-02T03:04:05"
    assert times.stamp(dt.astimezone(timezone(timedelta(hours=-7)))) == "2024-01-02T03:04:05.123456Z"
    assert times.epoch("1970-01-01T00:01:00Z") == 60.0


def test_no_other_module_formats_or_parses_times() -> None:
    pattern = re.compile(r"strftime|strptime|fromisoformat")
    offenders = [str(p.relative_to(SRC.parent)) for p in [*SRC.rglob("*.py"), *PLUGINS.glob("*.py")]
                 if p.name != "times.py" and pattern.search(p.read_text())]
    assert offenders == []
