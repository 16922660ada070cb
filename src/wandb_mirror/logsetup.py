"""Log output for every command: plain lines for people, JSON lines for log shippers.

`text` (the default) writes `TIME LEVEL logger: message`, without the time when journald
captures the output (systemd sets JOURNAL_STREAM; the journal stamps every line itself).
`json` writes one object per line: `ts` (UTC ISO 8601), `level`, `logger`, `message`, and
`exc` when there is a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import TextIO

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def under_journald(stream: TextIO) -> bool:
    """True when `stream` is the journal (JOURNAL_STREAM names its device and inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return True  # set but not checkable: trust it
    return (st.st_dev, st.st_ino) == (dev, ino)


def configure(level: int, fmt: str = "text", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif under_journald(stream):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(level)
    # like logging.basicConfig: a host that installed its own handlers (a test runner) keeps them
    if any(not getattr(h, "_wandb_mirror", False) for h in root.handlers):
        return
    for h in list(root.handlers):
        root.removeHandler(h)
    handler._wandb_mirror = True  # type: ignore[attr-defined]
    root.addHandler(handler)
