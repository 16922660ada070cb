"""The store: one directory holding a SQLite catalog and a content-addressed object store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import UsageError
from .catalog import Catalog
from .history import History
from .lock import StoreLock
from .objects import ObjectInfo, ObjectStore
from .opening import SIDE_FILES, check_catalog, open_error

__all__ = ["Store", "Catalog", "History", "ObjectStore", "ObjectInfo", "StoreLock"]

CATALOG_NAME = "catalog.db"


class Store:
    """A store directory: `catalog.db`, `objects/md5/ab/cdef...`, `objects/tmp/`, `lock`.

    Objects are always written before the catalog rows that reference them.
    """

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        """Open (or, with `create`, create) the store at `path`.

        Every failure is one line: a UsageError (exit 2) for a path that cannot be a store (not a
        directory, a file in the way, permission denied, not a catalog), a StoreUnusable (exit 1)
        for a disk that is full, read-only or failing. A store this call began to create and could
        not finish is removed again: no half-made store is left behind.
        """
        self.path = Path(path)
        made: list[Path] = []
        creating = create and not (self.path / CATALOG_NAME).exists()
        try:
            self._open(create, readonly, made)
        except (OSError, sqlite3.Error) as e:
            self._undo(made)
            raise open_error(self.path, e, creating=creating) from None
        except BaseException:
            self._undo(made)
            raise

    def _open(self, create: bool, readonly: bool, made: list[Path]) -> None:
        if not self.path.exists():
            if not create:
                raise UsageError(f"store {self.path} does not exist")
            missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # another process may race us here
            made.extend(missing)  # deepest first: removed in that order
        elif not self.path.is_dir():
            raise UsageError(f"store {self.path} is not a directory")
        catalog = self.path / CATALOG_NAME
        if not catalog.exists():
            if not create:
                raise UsageError(f"{self.path} is not a wandb-mirror store (no {CATALOG_NAME})")
            made[:0] = [self.path / "objects", catalog, *(self.path / (CATALOG_NAME + x) for x in SIDE_FILES)]
        if not create and not readonly:  # a writer must not turn a stray file into a store
            probe = Catalog(catalog, readonly=True)
            try:
                check_catalog(probe)
            finally:
                probe.close()
        self.objects = ObjectStore(self.path / "objects", create=not readonly)
        self.catalog = Catalog(catalog, readonly=readonly)
        check_catalog(self.catalog)
        self.history = History(self.catalog, self.objects)

    def _undo(self, made: list[Path]) -> None:
        cat = getattr(self, "catalog", None)
        if cat is not None:
            cat.close()
        for p in made:
            try:
                if p.is_dir() and not p.is_symlink():
                    for sub in sorted(p.rglob("*"), reverse=True):  # only the empty skeleton we made
                        if sub.is_dir():
                            sub.rmdir()
                    p.rmdir()
                else:
                    p.unlink(missing_ok=True)
            except OSError:
                pass

    def lock(self, purpose: str = "write") -> StoreLock:
        return StoreLock(self.path / "lock", purpose)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
