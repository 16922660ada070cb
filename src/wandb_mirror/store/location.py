"""Opening a store from what a user names: `--store DIR`, or the `[store]` table of a config.

    [store]
    path = "mirror"                     # one directory: catalog.db, objects/, lock
    catalog = "/srv/mirror/catalog.db"  # optional: the SQLite catalog elsewhere, or
                                        # "postgresql://USER@HOST:PORT/DB" (docs/scale-out.md)
    objects = "s3://bucket/prefix"      # optional: a directory, or objects on S3-compatible storage
    s3_endpoint_url = "http://minio:9000"  # optional; default $AWS_ENDPOINT_URL, else AWS

`path` may be left out when both `catalog` and `objects` are given. An enabled plugin's
`storage_backend` hook, when it returns an object store, wins over `objects`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import CATALOG_NAME, Store
from .connections import describe, is_postgres
from .object_api import Objects
from .objects import LocalObjects


@dataclass(frozen=True)
class StoreLocation:
    """Where a store's catalog and objects live (paths are absolute once read from a config)."""

    path: Path | None = None
    catalog: str | None = None
    objects: str | None = None
    s3_endpoint_url: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> StoreLocation:
        table = dict(getattr(config, "store", None) or {})
        path = table.get("path", getattr(config, "store_path", None))
        return cls(path=Path(path) if path is not None else None,
                   catalog=_text(table.get("catalog")), objects=_text(table.get("objects")),
                   s3_endpoint_url=table.get("s3_endpoint_url"))

    def catalog_file(self) -> Path:
        """The SQLite catalog's file (not for a PostgreSQL catalog: see `catalog_ref`)."""
        if self.catalog is not None:
            return Path(self.catalog.split("://", 1)[1] if "://" in self.catalog else self.catalog).expanduser()
        assert self.path is not None  # a config without path names a catalog (config.py checks)
        return self.path / CATALOG_NAME

    def catalog_ref(self) -> Path | str:
        """The catalog as Store takes it: a PostgreSQL URL, or the SQLite file."""
        return self.catalog if self.catalog is not None and is_postgres(self.catalog) else self.catalog_file()

    def describe_catalog(self) -> str:
        return describe(self.catalog_ref())

    def exists(self) -> bool:
        """Whether the store has a catalog yet (a first start checks its input before creating one)."""
        if self.catalog is not None and is_postgres(self.catalog):
            from .pg import PgConnection

            try:
                conn = PgConnection(self.catalog, readonly=True)
            except sqlite3.Error:
                return False  # opening the store says why, in one line
            try:
                return bool(conn.raw.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()[0])
            finally:
                conn.close()
        return self.catalog_file().exists()

    def table(self) -> dict[str, Any]:
        """The `[store]` table as plugins' `storage_backend` hook receives it."""
        out = {"path": str(self.path) if self.path else None, "catalog": self.catalog, "objects": self.objects,
               "s3_endpoint_url": self.s3_endpoint_url}
        return {k: v for k, v in out.items() if v is not None}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def plugin_objects(loc: StoreLocation, plugins: Any) -> Objects | None:
    """The object store an enabled plugin offers for this `[store]` table (its hook), or None."""
    return plugins.storage_backend(loc.table()) if plugins is not None else None


def open_objects(loc: StoreLocation, plugins: Any = None, *, create: bool = True) -> Objects | None:
    """The object store `loc` names: a plugin's, S3, a directory, or None for PATH/objects."""
    offered = plugin_objects(loc, plugins)
    if offered is not None:
        return offered
    if loc.objects is None:
        return None
    if loc.objects.startswith("s3://"):
        from .s3objects import S3Objects

        return S3Objects(loc.objects, endpoint_url=loc.s3_endpoint_url)
    return LocalObjects(Path(loc.objects).expanduser(), create=create)


def open_store(where: Any, plugins: Any = None, *, create: bool = True, readonly: bool = False) -> Store:
    """Open the store a Config, a StoreLocation or a directory names.

    `plugins` (a PluginSet) is asked for an object store first. `create=False` refuses a store
    that does not exist yet (one clear line); `readonly` opens the catalog read-only.
    """
    if isinstance(where, StoreLocation):
        loc = where
    elif isinstance(where, (str, Path)):
        loc = StoreLocation(path=Path(where))
    else:
        loc = StoreLocation.from_config(where)
    objects = open_objects(loc, plugins, create=create and not readonly)
    catalog = loc.catalog_ref() if loc.catalog is not None else None
    return Store(loc.path, create=create, readonly=readonly, catalog=catalog, objects=objects)
