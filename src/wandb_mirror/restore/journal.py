"""The restore journal: what was sent to the target, so a restore killed at any moment resumes.

One JSON line per step, appended and fsynced: `{"key": ..., "state": "intent"|"done", "data": {...}}`.
An intent is written before a write is sent and `done` after the target acknowledged it; a step
whose last line is `done` is never sent again. Steps that were sent but not acknowledged are sent
again: each is idempotent on the target (runs are upserted by name, history and events carry their
line offsets, files overwrite, artifacts carry a client id derived from the source version).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..times import utcnow


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.state: dict[str, dict[str, Any]] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._load()
            self._f = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write the restore journal {path}: {e.strerror or e} (choose another with "
                             "--journal FILE)") from None

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill: its step was not done
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    self.state[rec["key"]] = rec

    def done(self, key: str) -> bool:
        return self.state.get(key, {}).get("state") == "done"

    def data(self, key: str) -> dict[str, Any]:
        return dict(self.state.get(key, {}).get("data") or {})

    def _write(self, key: str, state: str, data: dict[str, Any] | None) -> None:
        rec = {"key": key, "state": state, "at": utcnow(), "data": data or {}}
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.state[key] = rec

    def intent(self, key: str, data: dict[str, Any] | None = None) -> None:
        self._write(key, "intent", data)

    def mark_done(self, key: str, data: dict[str, Any] | None = None) -> None:
        self._write(key, "done", data)

    def step(self, key: str, send: Callable[[], dict[str, Any] | None]) -> tuple[dict[str, Any], bool]:
        """`send` once: journaled as an intent before, done with its data after. A step already done is
        not sent again. Returns (its data, whether it was already done)."""
        if self.done(key):
            return self.data(key), True
        self.intent(key)
        data = send() or {}
        self.mark_done(key, data)
        return data, False

    def close(self) -> None:
        self._f.close()
