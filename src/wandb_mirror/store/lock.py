"""Who may write a store: an flock on `STORE/lock`, released by the kernel if the process dies.

Exclusive (`sync`, `repair`, `gc`...): one process alone. Shared (`wandb-mirror run`): any number of
daemon workers together, which divide the work through leases in the catalog (store/claims.py);
an exclusive holder and workers exclude each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StoreLocked


class StoreLock:
    def __init__(self, path: Path, purpose: str = "write", *, shared: bool = False):
        self.path = path
        self.purpose = purpose
        self.shared = shared
        # whether this process was the only holder when it took the lock: then what a killed writer
        # left (temp objects) is garbage; with other workers at work it may be theirs in progress
        self.alone = False
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.alone = True
        except BlockingIOError:
            if not self.shared:
                self._refuse(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                self._refuse(fd)
        if self.alone:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} {self.purpose}\n".encode(), 0)
            if self.shared:  # others may join now (the holder line stays: the first worker's)
                fcntl.flock(fd, fcntl.LOCK_SH)
        self._fd = fd
        return self

    def _refuse(self, fd: int) -> None:
        try:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        finally:
            os.close(fd)
        raise StoreLocked(
            f"store {self.path.parent} is in use by another wandb-mirror process"
            + (f" ({holder})" if holder else "")
            + ("; workers (`wandb-mirror run`) share a store, other writers need it alone" if self.shared
               else "; only one writer may run at a time (several `wandb-mirror run` workers may share it)")
        ) from None

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the last holder clears the line
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
