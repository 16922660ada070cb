"""The store: one directory holding a SQLite catalog and a content-addressed object store."""

from __future__ import annotations

from pathlib import Path

from .catalog import Catalog
from .lock import StoreLock
from .objects import ObjectInfo, ObjectStore

__all__ = ["Store", "Catalog", "ObjectStore", "ObjectInfo", "StoreLock"]

CATALOG_NAME = "catalog.db"


class Store:
    """A store directory: `catalog.db`, `objects/md5/ab/cdef...`, `objects/tmp/`, `lock`.

    Objects are always written before the catalog rows that reference them.
    """

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                from ..errors import UsageError

                raise UsageError(f"store {self.path} does not exist")
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # another process may race us here
        elif not self.path.is_dir():
            from ..errors import UsageError

            raise UsageError(f"store {self.path} is not a directory")
        if not create and not (self.path / CATALOG_NAME).exists():
            from ..errors import UsageError

            raise UsageError(f"{self.path} is not a wandb-mirror store (no {CATALOG_NAME})")
        self.objects = ObjectStore(self.path / "objects", create=not readonly)
        self.catalog = Catalog(self.path / CATALOG_NAME, readonly=readonly)

    def lock(self, purpose: str = "write") -> StoreLock:
        return StoreLock(self.path / "lock", purpose)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
