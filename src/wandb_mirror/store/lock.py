"""One writer per store: an flock on `STORE/lock`, released by the kernel if the process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StoreLocked


class StoreLock:
    def __init__(self, path: Path, purpose: str = "write"):
        self.path = path
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise StoreLocked(
                f"store {self.path.parent} is in use by another wandb-mirror process"
                + (f" ({holder})" if holder else "")
                + "; only one writer may run at a time"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} {self.purpose}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
