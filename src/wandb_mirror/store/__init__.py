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
from . import lean_imports  # noqa: F401 - first: sqlite-utils without pandas (see there)
from .catalog import Catalog
from .connections import describe as describe_catalog
from .connections import is_postgres
from .history import History
from .lock import StoreLock
from .object_api import ObjectInfo, Objects, StoredObject
from .objects import LocalObjects
from .opening import SIDE_FILES, check_catalog, open_error, pg_pending, upgrade_for_reader
from .pg_lock import PgStoreLock

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
        if is_postgres(catalog):
            self._init_postgres(path, str(catalog), create=create, readonly=readonly, objects=objects)
            return
        catalog_file = Path(catalog) if catalog is not None else None
        self.catalog_url: str | None = None
        if path is None:
            if catalog_file is None or objects is None:
                raise ValueError("a store needs a path, or both a catalog and objects")
            self.path = catalog_file.parent
        else:
            self.path = Path(path)
        self.catalog_path: Path | str = catalog_file or self.path / CATALOG_NAME
        # the lock guards the catalog: it sits beside it, so two configs naming one catalog share it
        self.lock_path: Path | None = self.path / "lock" if catalog_file is None else Path(f"{catalog_file}.lock")
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
        catalog = Path(self.catalog_path)  # a SQLite file here (PostgreSQL: _init_postgres)
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

    def _init_postgres(self, path: str | Path | None, url: str, *, create: bool, readonly: bool,
                       objects: Objects | None) -> None:
        """A store whose catalog is a PostgreSQL database. The database is the operator's (made
        and owned by them); wandb-mirror creates and migrates its tables in it. `path`, when given,
        is where the objects live unless `objects` says otherwise."""
        from .opening import pg_open_error

        self.catalog_url = url
        self.catalog_path = url
        self.lock_path = None
        if path is None and objects is None:
            raise ValueError("a store needs a path, or both a catalog and objects")
        self.path = Path(path) if path is not None else Path.cwd()
        made: list[Path] = []
        try:
            if objects is None:
                if not self.path.exists():
                    if not create:
                        raise UsageError(f"store {self.path} does not exist")
                    missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
                    self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
                    made.extend(missing)
                elif not self.path.is_dir():
                    raise UsageError(f"store {self.path} is not a directory")
            self.objects = objects if objects is not None else LocalObjects(self.path / "objects",
                                                                             create=not readonly)
            if not create or readonly:
                probe = Catalog(url, readonly=True)
                try:
                    check_catalog(probe)
                    behind = pg_pending(probe)
                finally:
                    probe.close()
                if readonly and behind:
                    Catalog(url).close()  # a reader after an upgrade: the schema first, as on SQLite
            self.catalog = Catalog(url, readonly=readonly)
            check_catalog(self.catalog)
            self.history = History(self.catalog, self.objects)
        except sqlite3.Error as e:
            self._undo(made)
            raise pg_open_error(url, e) from None
        except BaseException:
            self._undo(made)
            raise

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
        if self.catalog_url is not None:
            return f"catalog {describe_catalog(self.catalog_url)}, objects {self.objects.describe()}"
        if self.catalog_path == self.path / CATALOG_NAME and isinstance(self.objects, LocalObjects) \
                and self.objects.root == self.path / "objects":
            return str(self.path)
        return f"catalog {self.catalog_path}, objects {self.objects.describe()}"

    def lock(self, purpose: str = "write", *, shared: bool = False) -> StoreLock | PgStoreLock:
        """The writer lock: exclusive, or `shared` by daemon workers (store/claims.py divides their work)."""
        if self.catalog_url is not None:
            return PgStoreLock(self.catalog_url, purpose, shared=shared)
        assert self.lock_path is not None
        return StoreLock(self.lock_path, purpose, shared=shared)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
