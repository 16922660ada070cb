"""Copying a whole store to another place: `wandb-mirror migrate-store --from CONFIG --to CONFIG`.

From a single-directory store to a catalog and objects apart (objects on S3, and the catalog on
PostgreSQL once that backend exists), and back. The store's rule holds throughout: objects first,
each verified as it is written (the target's `put_stream` checks the md5 the catalog names), then
the catalog rows that reference them, then the same check as `verify --deep` on the target.

Resumable: the target is marked as a migration of this source (`meta.migrated_from`, the source's
`store_id`) before anything is copied, objects the target already has are skipped, and the catalog
is copied table by table in one transaction, so a migration killed at any moment, run again,
finishes. A target that holds anything else is refused.

The tables are read from the migrations (store/migrations.py), not from SQLite's own schema
tables, so the same code copies into any catalog engine that ran those migrations.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import faults, migrations

if TYPE_CHECKING:
    from . import Store
    from .catalog import Catalog

# what only the workers of one store mean: leases and rate pauses are not carried to another store
NOT_COPIED = ("claims", "rate_pauses")
STORE_ID, MIGRATED_FROM, MIGRATION_STATE = "store_id", "migrated_from", "migration_state"
CHUNK = 1 << 20
BATCH = 1000


@dataclass
class MigrationReport:
    objects_copied: int = 0
    objects_present: int = 0   # already in the target (a resumed migration, or shared content)
    bytes_copied: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what `verify --deep` found on the target

    @property
    def ok(self) -> bool:
        return not self.problems


def catalog_tables() -> list[str]:
    """Every table the migrations create (and do not drop), in creation order."""
    tables: list[str] = []
    for _, sql in migrations.MIGRATIONS:
        for m in re.finditer(r"\b(CREATE|DROP)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(\w+)", sql, re.IGNORECASE):
            name = m.group(2)
            if m.group(1).upper() == "CREATE" and name not in tables:
                tables.append(name)
            elif m.group(1).upper() == "DROP" and name in tables:
                tables.remove(name)
    return [t for t in tables if t not in NOT_COPIED]


def store_identity(catalog: Catalog) -> str:
    """The source's identity (`meta.store_id`), given to it on its first migration."""
    with catalog.transaction() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                     [STORE_ID, uuid.uuid4().hex])
        return str(conn.execute("SELECT value FROM meta WHERE key = ?", [STORE_ID]).fetchone()[0])


def claim_target(target: Catalog, source_id: str, where: str) -> bool:
    """Mark `target` as a migration of `source_id`; True when it already was (a resumed run).
    UsageError when it holds anything else."""
    with target.transaction() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", [MIGRATED_FROM]).fetchone()
        if row is not None and row[0] == source_id:
            return True
        if row is not None:
            raise UsageError(f"target {where} is a migration of another store ({row[0]}); give an empty target")
        for table in catalog_tables():
            if table == "meta":
                continue
            if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise UsageError(f"target {where} is not empty (its {table} table has rows); "
                                 "give an empty target or a partial migration of the same source")
        for key, value in ((MIGRATED_FROM, source_id), (MIGRATION_STATE, "partial")):
            _set_meta(conn, key, value)
        return False


def referenced_objects(catalog: Catalog) -> Iterator[tuple[str, int | None]]:
    """(md5, size or None) of every object the catalog references, each once, in md5 order."""
    cur = catalog.conn.execute(
        "SELECT md5, MAX(size) FROM ("
        "SELECT md5, size FROM file_versions "
        "UNION ALL SELECT md5, size FROM artifact_files WHERE md5 IS NOT NULL "
        "UNION ALL SELECT manifest_md5 AS md5, NULL AS size FROM artifacts WHERE manifest_md5 IS NOT NULL "
        "UNION ALL SELECT md5, size FROM history_segments) AS refs GROUP BY md5 ORDER BY md5")
    while rows := cur.fetchmany(BATCH):
        yield from ((md5, size) for md5, size in rows)


def copy_objects(source: Store, target: Store, report: MigrationReport,
                 progress: Callable[[MigrationReport], None] | None = None) -> None:
    for md5, size in referenced_objects(source.catalog):
        if target.objects.has(md5):
            report.objects_present += 1
            continue
        with source.objects.open(md5) as f:
            info = target.objects.put_stream(iter(lambda: f.read(CHUNK), b""), expected_md5=md5,  # noqa: B023
                                             expected_size=size)
        report.objects_copied += 1
        report.bytes_copied += info.size
        if faults.active:
            faults.hit("migrate.copied")
        if progress is not None:
            progress(report)


def copy_catalog(source: Catalog, target: Catalog, source_id: str, report: MigrationReport) -> None:
    """Every table's rows, replacing what a killed run left, in one transaction."""
    with target.transaction() as conn:
        for table in catalog_tables():
            cur = source.conn.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            insert = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
            conn.execute(f"DELETE FROM {table}")
            n = 0
            while rows := cur.fetchmany(BATCH):
                conn.executemany(insert, rows)
                n += len(rows)
            report.rows[table] = n
        # the source's own id stays the source's: the target is a copy of it, not it
        conn.execute("DELETE FROM meta WHERE key = ?", [STORE_ID])
        for key, value in ((MIGRATED_FROM, source_id), (MIGRATION_STATE, "partial")):
            _set_meta(conn, key, value)


def finish(target: Catalog) -> None:
    with target.transaction() as conn:
        _set_meta(conn, MIGRATION_STATE, "done")


def _set_meta(conn: object, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",  # type: ignore[attr-defined]
                 [key, value])


def migrate(source: Store, target: Store, *, target_name: str,
            progress: Callable[[MigrationReport], None] | None = None) -> MigrationReport:
    """Copy `source` into `target` and check the result as `verify --deep` does. The caller holds
    both stores' locks."""
    from ..verify import verify_store

    report = MigrationReport()
    source_id = store_identity(source.catalog)
    claim_target(target.catalog, source_id, target_name)
    copy_objects(source, target, report, progress)
    copy_catalog(source.catalog, target.catalog, source_id, report)
    report.problems = verify_store(target, deep=True).problems
    if report.ok:
        finish(target.catalog)
    return report
