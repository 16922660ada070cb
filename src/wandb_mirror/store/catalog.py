"""The catalog: what the store holds and where its bytes are. A SQLite file (sqlite-utils, WAL) by
default, or a PostgreSQL database (`postgresql://...`, store/pg.py), through one code path.

One connection per thread (the server answers from many threads; WAL lets readers run beside the
one writer). Writers group their rows in `transaction()` so a run is recorded whole or not at all.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from .. import jsontext
from ..jsontext import to_catalog
from ..models import (
    Artifact,
    ArtifactCollection,
    ArtifactEntry,
    Entity,
    Project,
    Report,
    Run,
    RunFile,
    Sweep,
    User,
    dumps_compact,
)
from ..times import utcnow
from . import faults, migrations
from .connections import connect_postgres, describe, is_postgres
from .sync_records import SyncRecords


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. On a read-only filesystem SQLite cannot open a WAL database's
    shared-memory file; there nothing can change the catalog under us, so it is opened immutable."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        if not _read_only_fs(path):
            return conn  # the caller sees the real error
        conn.close()
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    except sqlite3.DatabaseError:
        pass  # not a database: reported by the store's catalog check
    return conn


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class Catalog(SyncRecords):
    def __init__(self, path: Path | str, *, readonly: bool = False):
        # a PostgreSQL catalog has a URL and no file: `path` then only names it in messages
        self.url = str(path) if is_postgres(path) else None
        self.path = Path(path) if self.url is None else Path(describe(str(path)))
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[Any] = []
        self._owned: list[tuple[threading.Thread, Any]] = []  # PostgreSQL: (thread, its connection)
        self._all_lock = threading.Lock()
        if self.url is not None:
            if not readonly:
                from . import pg_schema

                pg_schema.apply(self.conn)
        elif not readonly:
            # Several processes may open a brand-new store at once (a daemon and a `status`, say):
            # serialize the schema setup so each migration runs exactly once. The flock is on a
            # file of its own: closing any descriptor of the database file itself would drop the
            # POSIX locks SQLite holds on it in this process (and corrupt its view: "disk I/O error").
            fd = os.open(self.path.with_name(self.path.name + ".migrate-lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    # private from its first byte; SQLite gives -wal and -shm the database's mode.
                    # (Closing this descriptor is safe: no connection can hold a file that did not exist.)
                    os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
                except FileExistsError:
                    pass
                if self.db.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                    # a new catalog: pages the history tail frees when it is compacted into segments
                    # go back to the filesystem (History.compact_due), not into a growing free list
                    self.db.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    self.db.conn.execute("VACUUM")  # takes effect on a database already in WAL mode
                migrations.apply(self.db)
                for side in (self.path, self.path.with_name(self.path.name + "-wal"),
                             self.path.with_name(self.path.name + "-shm")):
                    try:
                        if side.stat().st_mode & 0o077:
                            side.chmod(0o600)  # a store made by an older version, or under another umask
                    except OSError:
                        pass
            finally:
                os.close(fd)  # releases the flock
        else:
            self._await_schema_setup()

    def _await_schema_setup(self) -> None:
        """A reader that opens a catalog another process is creating waits for its schema (a shared
        flock on the setup lock), instead of finding a database with no tables yet."""
        try:
            fd = os.open(self.path.with_name(self.path.name + ".migrate-lock"), os.O_RDONLY)
        except OSError:
            return  # a store made before the lock file existed, or one we may not read: nothing to wait for
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)

    def describe(self) -> str:
        """The catalog for messages: its file, or its URL without a password."""
        return describe(self.url) if self.url is not None else str(self.path)

    @property
    def engine(self) -> str:
        return "postgresql" if self.url is not None else "sqlite"

    # -- connections -----------------------------------------------------------------------
    @property
    def db(self) -> sqlite_utils.Database:
        """The SQLite database (sqlite-utils): migrations only; never for a PostgreSQL catalog."""
        assert self.url is None, "sqlite-utils serves the SQLite catalog only"
        db = getattr(self._local, "db", None)
        if db is None:
            if self.readonly:
                conn = _connect_read_only(self.path)
            else:
                conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=OFF")
            db = sqlite_utils.Database(conn)
            self._local.db = db
            with self._all_lock:
                self._all.append(conn)
        return db

    @property
    def conn(self) -> sqlite3.Connection:
        if self.url is None:
            return self.db.conn
        conn = getattr(self._local, "pg", None)
        if conn is None:
            conn = connect_postgres(self.url, readonly=self.readonly)
            self._local.pg = conn
            with self._all_lock:
                # the sync's worker threads come and go (a pool per project): each connection is
                # a server process on PostgreSQL, so those of threads that ended are closed here
                # rather than piling up until the catalog closes
                live = []
                for owner, old in self._owned:
                    if owner.is_alive():
                        live.append((owner, old))
                    else:
                        old.close()
                        if old in self._all:
                            self._all.remove(old)
                self._owned = [*live, (threading.current_thread(), conn)]
                self._all.append(conn)
        return conn  # type: ignore[no-any-return]  # sqlite3's interface (store/pg.py)

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
            self._owned = []
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of catalog writes. Nested use joins the outer transaction."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if faults.active:  # crash and disk-failure injection for the reliability tests (store/faults.py)
                faults.hit("catalog.begin", conn)
            yield conn
            if faults.active:
                faults.hit("catalog.commit", conn)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
            if faults.active:
                faults.hit("catalog.committed", conn)

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params if isinstance(params, dict) else list(params))
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def query_one(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.conn.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    # -- generic upsert --------------------------------------------------------------------
    def _upsert(self, table: str, row: dict[str, Any], keys: tuple[str, ...], pk: str | None = "pk") -> int:
        row = jsontext.encode_row(table, row)
        cols = list(row)
        placeholders = ", ".join("?" for _ in cols)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys) or f"{keys[0]} = excluded.{keys[0]}"
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        )
        with self.transaction() as conn:
            conn.execute(sql, [row[c] for c in cols])
            if pk is None:
                return 0
            where = " AND ".join(f"{k} = ?" for k in keys)
            return conn.execute(f"SELECT {pk} FROM {table} WHERE {where}", [row[k] for k in keys]).fetchone()[0]

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        v = self.scalar("SELECT value FROM meta WHERE key = ?", [key])
        return default if v is None else v

    def set_meta(self, key: str, value: str) -> None:
        self._upsert("meta", {"key": key, "value": value}, ("key",), pk=None)

    # -- entities, users, projects ---------------------------------------------------------
    def upsert_entity(self, e: Entity) -> None:
        self._upsert("entities", e.to_row(), ("name",), pk=None)

    def upsert_user(self, u: User) -> None:
        self._upsert("users", u.to_row(), ("username",), pk=None)

    def upsert_project(self, p: Project) -> int:
        row = p.to_row()
        row["tombstoned_at"] = None
        return self._upsert("projects", row, ("entity", "name"))

    def project_pk(self, entity: str, name: str) -> int | None:
        return self.scalar("SELECT pk FROM projects WHERE entity = ? AND name = ?", [entity, name])

    def get_project(self, entity: str, name: str) -> Project | None:
        row = self.query_one("SELECT * FROM projects WHERE entity = ? AND name = ?", [entity, name])
        return Project.from_row(row) if row else None

    # -- runs ------------------------------------------------------------------------------
    def upsert_run(self, project_pk: int, run: Run, *, mirrored_at: str | None = None) -> int:
        row = run.to_row()
        row["project_pk"] = project_pk
        row["tombstoned_at"] = None
        if mirrored_at is not None:
            row["mirrored_at"] = mirrored_at
        return self._upsert("runs", row, ("project_pk", "run_id"))

    def run_pk(self, project_pk: int, run_id: str) -> int | None:
        return self.scalar("SELECT pk FROM runs WHERE project_pk = ? AND run_id = ?", [project_pk, run_id])

    def get_run(self, project_pk: int, run_id: str) -> Run | None:
        row = self.query_one("SELECT * FROM runs WHERE project_pk = ? AND run_id = ?", [project_pk, run_id])
        return Run.from_row(row) if row else None

    def append_history(self, run_pk: int, rows: Iterable[tuple[int, str]]) -> int:
        """Insert (step, row JSON) pairs; a step already present is replaced (W&B rewrites are rare)."""
        with self.transaction() as conn:
            cur = conn.executemany(
                "INSERT OR REPLACE INTO history (run_pk, step, row) VALUES (?, ?, ?)",
                ((run_pk, s, to_catalog(r)) for s, r in rows),
            )
            return cur.rowcount

    def replace_events(self, run_pk: int, rows: Iterable[str]) -> int:
        with self.transaction() as conn:
            conn.execute("DELETE FROM events WHERE run_pk = ?", [run_pk])
            cur = conn.executemany(
                "INSERT INTO events (run_pk, seq, row) VALUES (?, ?, ?)",
                ((run_pk, i, to_catalog(r)) for i, r in enumerate(rows)),
            )
            return cur.rowcount

    # -- files -----------------------------------------------------------------------------
    def upsert_file(self, run_pk: int, f: RunFile, *, mirrored_at: str | None = None) -> int:
        """Record a run file whose object is already in the store; keeps every version seen."""
        now = mirrored_at or utcnow()
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO file_versions (run_pk, name, size, md5, updated_at, mirrored_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [run_pk, f.name, f.size, f.md5, f.updated_at, now],
            )
            row = f.to_row()
            row.update(run_pk=run_pk, mirrored_at=now, tombstoned_at=None)
            return self._upsert("files", row, ("run_pk", "name"))

    # -- artifacts -------------------------------------------------------------------------
    def upsert_artifact_type(self, project_pk: int, name: str, *, id: str | None = None,
                             description: str | None = None, created_at: str | None = None) -> int:
        return self._upsert(
            "artifact_types",
            {"project_pk": project_pk, "name": name, "id": id, "description": description, "created_at": created_at},
            ("project_pk", "name"),
        )

    def upsert_collection(self, project_pk: int, c: ArtifactCollection) -> int:
        row = c.to_row()
        row.update(project_pk=project_pk, tombstoned_at=None)
        return self._upsert("artifact_collections", row, ("project_pk", "name"))

    def upsert_artifact(
        self,
        collection_pk: int,
        a: Artifact,
        entries: list[ArtifactEntry] | None = None,
        *,
        producer_run_pk: int | None = None,
        mirrored_at: str | None = None,
    ) -> int:
        """Record an artifact version; `entries` (if given) replace its manifest entries atomically."""
        row = a.to_row()
        row.pop("collection_name", None)
        row.update(collection_pk=collection_pk, tombstoned_at=None, mirrored_at=mirrored_at or utcnow())
        if producer_run_pk is not None:
            row["producer_run_pk"] = producer_run_pk
        with self.transaction() as conn:
            pk = self._upsert("artifacts", row, ("id",))
            if entries is not None:
                conn.execute("DELETE FROM artifact_files WHERE artifact_pk = ?", [pk])
                conn.executemany(
                    "INSERT INTO artifact_files (artifact_pk, path, digest, size, md5, ref, birth_artifact_id, extra) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(pk, e.path, e.digest, e.size, e.md5, e.ref, e.birth_artifact_id, to_catalog(e.extra))
                     for e in entries],
                )
            return pk

    def add_artifact_usage(self, artifact_pk: int, run_pk: int) -> None:
        self.conn.execute("INSERT OR IGNORE INTO artifact_usage (artifact_pk, run_pk) VALUES (?, ?)", [artifact_pk, run_pk])
        if not self.conn.in_transaction:
            self.conn.commit()

    # -- sweeps, reports -------------------------------------------------------------------
    def upsert_sweep(self, project_pk: int, s: Sweep) -> int:
        row = s.to_row()
        row.update(project_pk=project_pk, tombstoned_at=None)
        return self._upsert("sweeps", row, ("project_pk", "name"))

    def upsert_report(self, project_pk: int, r: Report) -> int:
        row = r.to_row()
        row.update(project_pk=project_pk, tombstoned_at=None)
        return self._upsert("reports", row, ("project_pk", "id"))

    # -- references (verify / gc) ----------------------------------------------------------
    def referenced_totals(self) -> tuple[int, int]:
        """(distinct objects referenced, their bytes): run files, artifact files, manifests and history
        segments, tombstoned data included, as `gc` keeps them (a manifest's size is not recorded: it
        counts 0 bytes)."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT md5, MAX(size) AS size FROM ("
            "SELECT md5, size FROM file_versions "
            "UNION ALL SELECT md5, size FROM artifact_files WHERE md5 IS NOT NULL "
            "UNION ALL SELECT manifest_md5, 0 FROM artifacts WHERE manifest_md5 IS NOT NULL "
            "UNION ALL SELECT md5, size FROM history_segments) GROUP BY md5)"
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def referenced_objects(self) -> Iterator[tuple[str, str]]:
        """Every (md5, what references it) the catalog holds, tombstoned data included."""
        yield from self.conn.execute(
            "SELECT md5, 'file ' || run_pk || '/' || name FROM file_versions "
            "UNION ALL SELECT md5, 'artifact file ' || artifact_pk || '/' || path FROM artifact_files WHERE md5 IS NOT NULL "
            "UNION ALL SELECT manifest_md5, 'manifest of artifact ' || id FROM artifacts WHERE manifest_md5 IS NOT NULL "
            "UNION ALL SELECT md5, 'history segment ' || run_pk || '@' || first_step FROM history_segments"
        )


__all__ = ["Catalog", "dumps_compact"]
