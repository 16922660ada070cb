"""The store: a catalog plus a content-addressed object store.

By default one directory (`catalog.db`, `objects/`, `lock`); the catalog file and the objects can
also live elsewhere (store/location.py reads where from the `[store]` table).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from ..errors import UsageError
from .catalog import Catalog
from .history import History
from .lock import StoreLock
from .object_api import ObjectInfo, Objects, StoredObject
from .objects import LocalObjects
from .opening import SIDE_FILES, check_catalog, open_error, upgrade_for_reader

__all__ = ["Store", "Catalog", "History", "Objects", "LocalObjects", "ObjectInfo", "StoredObject",
           "StoreLock"]

CATALOG_NAME = "catalog.db"


def warn_if_root_on_foreign_store(path: Path) -> None:
    """Root writing into a store another user owns (the service user) leaves root-owned files the
    service can no longer write: say so before creating any."""
    try:
        owner = path.stat().st_uid
    except OSError:
        return
    if os.geteuid() != 0 or owner == 0:
        return
    try:
        import pwd

        name = pwd.getpwuid(owner).pw_name
    except (ImportError, KeyError):
        name = str(owner)
    logging.getLogger("wandb_mirror.store").warning(
        "running as root on store %s, which belongs to %s: files created now will be root's and %s cannot "
        "write them afterwards; run as that user instead (sudo -u %s wandb-mirror ...)", path, name, name, name)


class Store:
    """A catalog and its objects: `catalog.db`, `objects/md5/ab/cdef...`, `objects/tmp/`, `lock`.

    `catalog` (a SQLite file) and `objects` (any `Objects`) replace the directory's own; with
    both given, `path` may be None. Objects are always written before the catalog rows that
    reference them.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True, readonly: bool = False,
                 catalog: str | Path | None = None, objects: Objects | None = None):
        """Open (or, with `create`, create) the store at `path`.

        Every failure is one line: a UsageError (exit 2) for a path that cannot be a store (not a
        directory, a file in the way, permission denied, not a catalog), a StoreUnusable (exit 1)
        for a disk that is full, read-only or failing. A store this call began to create and could
        not finish is removed again: no half-made store is left behind.
        """
        catalog_file = Path(catalog) if catalog is not None else None
        if path is None:
            if catalog_file is None or objects is None:
                raise ValueError("a store needs a path, or both a catalog and objects")
            self.path = catalog_file.parent
        else:
            self.path = Path(path)
        self.catalog_path = catalog_file or self.path / CATALOG_NAME
        # the lock guards the catalog: it sits beside it, so two configs naming one catalog share it
        self.lock_path = self.path / "lock" if catalog_file is None else Path(f"{catalog_file}.lock")
        made: list[Path] = []
        creating = create and not self.catalog_path.exists()
        try:
            self._open(create, readonly, made, objects, apart=catalog_file is not None)
        except (OSError, sqlite3.Error) as e:
            self._undo(made)
            raise open_error(self.path, e, creating=creating) from None
        except BaseException:
            self._undo(made)
            raise

    def _open(self, create: bool, readonly: bool, made: list[Path], objects: Objects | None, *, apart: bool) -> None:
        catalog = self.catalog_path
        if not self.path.exists():
            if not create:
                raise UsageError(f"catalog {catalog}: directory {self.path} does not exist" if apart
                                 else f"store {self.path} does not exist")
            missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # another process may race us here
            made.extend(missing)  # deepest first: removed in that order
        elif not self.path.is_dir():
            raise UsageError(f"store {self.path} is not a directory")
        if not catalog.exists():
            if not create:
                raise UsageError(f"catalog {catalog} does not exist" if apart
                                 else f"{self.path} is not a wandb-mirror store (no {CATALOG_NAME})")
            own_objects = [self.path / "objects"] if objects is None else []
            made[:0] = [*own_objects, catalog, *(Path(f"{catalog}{x}") for x in SIDE_FILES)]
        if not create and not readonly:  # a writer must not turn a stray file into a store
            probe = Catalog(catalog, readonly=True)
            try:
                check_catalog(probe)
            finally:
                probe.close()
        if not readonly:
            warn_if_root_on_foreign_store(self.path)
        self.objects: Objects = objects if objects is not None else LocalObjects(self.path / "objects",
                                                                                  create=not readonly)
        if readonly:
            upgrade_for_reader(catalog)
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

    def describe(self) -> str:
        """Where this store lives, for messages: its directory, or its catalog and objects."""
        if self.catalog_path == self.path / CATALOG_NAME and isinstance(self.objects, LocalObjects) \
                and self.objects.root == self.path / "objects":
            return str(self.path)
        return f"catalog {self.catalog_path}, objects {self.objects.describe()}"

    def lock(self, purpose: str = "write", *, shared: bool = False) -> StoreLock:
        """The writer lock: exclusive, or `shared` by daemon workers (store/claims.py divides their work)."""
        return StoreLock(self.lock_path, purpose, shared=shared)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
