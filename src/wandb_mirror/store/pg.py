"""A PostgreSQL connection that behaves like the sqlite3 connection the catalog was written for.

Why a shim rather than SQLAlchemy: see docs/scale-out.md ("The catalog on PostgreSQL"). In short,
the catalog's SQL is hand-written, small and uses a known subset of SQLite (store/pg_sql.py
rewrites it), and every caller already speaks sqlite3's connection interface; this keeps one code
path for both engines without rewriting 280 statements.

What it reproduces of sqlite3 (legacy transaction control, as the catalog uses it):

- `execute`/`executemany`/`executescript` returning a cursor with `fetchone`/`fetchall`,
  iteration, `description`, `rowcount` and `lastrowid`; rows are tuples that can also be read by
  column name (as sqlite3.Row);
- transactions: with `implicit` (sqlite3's default) a write outside a transaction opens one that
  lasts until `commit()`; `BEGIN [IMMEDIATE]`, `COMMIT`, `ROLLBACK`, `in_transaction`;
- one writer at a time, as SQLite's database lock gives: a write transaction takes a
  transaction-scoped advisory lock before its first write (BEGIN IMMEDIATE: at once), readers
  never wait; a lock not granted in 30 s is "database is locked", like SQLite's busy timeout;
- errors as sqlite3's exception classes, which the code already handles.
"""

from __future__ import annotations

import os
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from .pg_schema import IDENTITY, statements
from .pg_sql import Statement, translate

try:
    import psycopg
    import psycopg.conninfo
    from psycopg import errors as pg_errors
    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import TransactionStatus
except ImportError:  # pragma: no cover - the [postgres] extra is not installed
    psycopg = None  # type: ignore[assignment]

BUSY_TIMEOUT_MS = 30000
_TEMP_DDL = re.compile(r"\s*CREATE\s+(OR\s+REPLACE\s+)?TEMP(ORARY)?\b", re.I)
# advisory lock ids, under a class id derived from the schema (two catalogs in one database apart)
LOCK_STORE, LOCK_WRITE, LOCK_MIGRATE = 1, 2, 3


def require_psycopg() -> None:
    if psycopg is None:
        from ..errors import UsageError

        raise UsageError("a postgresql:// catalog needs the postgres extra: pip install 'wandb-mirror[postgres]'")


def lock_class(schema: str) -> int:
    """A signed 32-bit id for this catalog's advisory locks."""
    v = zlib.crc32(f"wandb-mirror:{schema}".encode())
    return v - 2**32 if v >= 2**31 else v


@lru_cache(maxsize=1)
def _adapter_classes() -> tuple[type, type, type]:
    """sqlite3's value conventions: bool is an integer (the columns are BIGINT), and a numeric result (SUM over BIGINT) reads back as an int when whole, else a float."""
    int8 = psycopg.adapters.types["int8"].oid

    class BoolAsInt(Dumper):
        oid = int8

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    class FloatAsSqlite(Dumper):
        """SQLite stores a NaN REAL as NULL; PostgreSQL would keep it: store what SQLite stores."""

        oid = psycopg.adapters.types["float8"].oid

        def dump(self, obj: Any) -> bytes | None:
            f = float(obj)
            if f != f:
                return None
            if f in (float("inf"), float("-inf")):
                return b"Infinity" if f > 0 else b"-Infinity"
            return repr(f).encode()

    class NumericLoader(Loader):
        def load(self, data: Any) -> Any:
            d = Decimal(bytes(data).decode())
            return int(d) if d == d.to_integral_value() else float(d)

    return BoolAsInt, FloatAsSqlite, NumericLoader


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type:
    index = {n: i for i, n in enumerate(names)}
    index.update({n.lower(): i for i, n in enumerate(names) if n.lower() not in index})

    class Row(tuple):  # type: ignore[type-arg]
        """A tuple readable by column name too, as sqlite3.Row."""

        __slots__ = ()

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, str):
                try:
                    return tuple.__getitem__(self, index[key] if key in index else index[key.lower()])
                except KeyError:
                    raise IndexError(f"No item with that key: {key}") from None
            return tuple.__getitem__(self, key)

        def keys(self) -> list[str]:
            return list(names)

    return Row


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if not desc:
        return tuple
    cls = _row_class(tuple(d.name for d in desc))
    return lambda values: cls(values)


def mapped(e: Exception) -> sqlite3.Error:
    """The sqlite3 exception the catalog's callers expect for a psycopg error."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
        return sqlite3.OperationalError(f"database is locked ({text})")
    if isinstance(e, pg_errors.ReadOnlySqlTransaction):
        return sqlite3.OperationalError(f"attempt to write a readonly database ({text})")
    if isinstance(e, pg_errors.DiskFull):
        return sqlite3.OperationalError(f"database or disk is full ({text})")
    if isinstance(e, pg_errors.UndefinedTable):
        return sqlite3.OperationalError(f"no such table ({text})")
    if isinstance(e, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(e, psycopg.OperationalError):
        return sqlite3.OperationalError(f"unable to open database: {text}")
    if isinstance(e, psycopg.DataError):
        return sqlite3.DataError(text)
    return sqlite3.OperationalError(text)


class PgCursor:
    """The part of sqlite3.Cursor the catalog uses."""

    arraysize = 1

    def __init__(self, cur: Any, *, lastrowid: int | None = None, rows: list[Any] | None = None,
                 rowcount: int = -1) -> None:
        self._cur = cur
        self._rows = rows  # the answer, already read (None: read from the psycopg cursor)
        self.lastrowid = lastrowid
        self.rowcount = rowcount

    @property
    def description(self) -> Any:
        if self._cur is None or self._rows is not None:
            return None
        return self._cur.description

    def fetchone(self) -> Any:
        if self._rows is not None:
            return self._rows.pop(0) if self._rows else None
        if self._cur is None or self._cur.description is None:
            return None
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        if self._rows is not None:
            rows, self._rows = self._rows, []
            return rows
        if self._cur is None or self._cur.description is None:
            return []
        return self._cur.fetchall()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if self._rows is not None:
            n = size or self.arraysize
            rows, self._rows = self._rows[:n], self._rows[n:]
            return rows
        if self._cur is None or self._cur.description is None:
            return []
        return self._cur.fetchmany(size or self.arraysize)

    def __iter__(self) -> Iterator[Any]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()


class PgConnection:
    """A psycopg connection dressed as sqlite3.Connection (see the module's docstring)."""

    def __init__(self, url: str, *, readonly: bool = False, implicit: bool = True,
                 application_name: str | None = None) -> None:
        require_psycopg()
        self.url = url
        self.readonly = readonly
        self.implicit = implicit  # sqlite3's legacy mode: a write outside a transaction opens one
        self.row_factory: Any = None  # rows are always readable by name; kept for callers that set it
        name = application_name or f"wandb-mirror pid {os.getpid()}"
        try:
            # the URL's own options (a search_path, say) are kept: ours are added to them
            given = psycopg.conninfo.conninfo_to_dict(url).get("options") or ""
            self._pg = psycopg.connect(url, autocommit=True, application_name=name[:63],
                                       options=f"{given} -c lock_timeout={BUSY_TIMEOUT_MS}".strip())
        except psycopg.Error as e:
            raise mapped(e) from None
        bool_dumper, float_dumper, numeric_loader = _adapter_classes()
        self._pg.adapters.register_dumper(bool, bool_dumper)
        self._pg.adapters.register_dumper(float, float_dumper)
        self._pg.adapters.register_loader("numeric", numeric_loader)
        self._pg.row_factory = _row_factory
        self._write_locked = False
        schema = self._pg.execute("SELECT current_schema()").fetchone()
        self.schema = str(schema[0]) if schema and schema[0] else "public"
        self.lock_class = lock_class(self.schema)
        if readonly:
            self._pg.execute("SET default_transaction_read_only = on")

    # -- sqlite3.Connection ----------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return bool(self._pg.info.transaction_status != TransactionStatus.IDLE)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        st = translate(sql, isinstance(params, dict))
        return self._run(st, params, many=False)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | dict[str, Any]]) -> PgCursor:
        rows = list(seq)
        st = translate(sql, bool(rows) and isinstance(rows[0], dict))
        if not rows:
            return PgCursor(None, rowcount=0)
        return self._run(st, rows, many=True)

    def executescript(self, script: str) -> PgCursor:
        if self.in_transaction:  # as sqlite3: a script first commits what is pending
            self.commit()
        for stmt in statements(script):
            self.execute(stmt)
        return PgCursor(None)

    def commit(self) -> None:
        if self.in_transaction:
            self._sql("COMMIT")
        self._write_locked = False

    def rollback(self) -> None:
        if self.in_transaction:
            self._sql("ROLLBACK")
        self._write_locked = False

    def close(self) -> None:
        try:
            self._pg.close()
        except psycopg.Error:
            pass

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        raise sqlite3.NotSupportedError("SQL functions in Python are SQLite-only")

    # -- PostgreSQL-only -------------------------------------------------------------------
    @property
    def raw(self) -> Any:
        """The psycopg connection (migrations and the store lock use it directly)."""
        return self._pg

    def _sql(self, sql: str, params: Any = None) -> Any:
        try:
            return self._pg.execute(sql, params)
        except psycopg.Error as e:
            raise mapped(e) from None

    def _begin(self, write: bool) -> None:
        self._sql("BEGIN")
        self._write_locked = False
        if write:
            self._lock_writes()

    def _lock_writes(self) -> None:
        if not self._write_locked and not self.readonly:
            self._sql("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)", [self.lock_class, LOCK_WRITE])
            self._write_locked = True

    def _run(self, st: Statement, params: Any, *, many: bool) -> PgCursor:
        if st.kind == "begin" or st.kind == "begin-write":
            if self.in_transaction:
                raise sqlite3.OperationalError("cannot start a transaction within a transaction")
            self._begin(st.kind == "begin-write")
            return PgCursor(None)
        if st.kind == "commit":
            self.commit()
            return PgCursor(None)
        if st.kind == "rollback":
            self.rollback()
            return PgCursor(None)
        if st.sql is None:
            return PgCursor(None)
        # a read-only connection may still make its own TEMP views (serve --include-deleted)
        temp_ddl = self.readonly and _TEMP_DDL.match(st.sql) is not None
        own = False  # a write outside a transaction without implicit ones: its own, committed at once
        if st.write and not temp_ddl:
            if not self.in_transaction:
                self._begin(True)  # under the writer lock, as SQLite's statement would be
                own = not self.implicit
            self._lock_writes()
        if temp_ddl and not self.in_transaction:
            self._sql("BEGIN READ WRITE")
            own = True
        args = params if isinstance(params, dict) or many else list(params)
        try:
            cur = self._pg.cursor()
            if many:
                cur.executemany(st.sql, args, returning=False)
                out = PgCursor(cur, rowcount=cur.rowcount)
            else:
                cur.execute(st.sql, args)
                if st.returns_id:
                    got = cur.fetchall()
                    out = PgCursor(cur, lastrowid=int(got[-1][0]) if got else None, rows=[], rowcount=cur.rowcount)
                else:
                    out = PgCursor(cur, rowcount=cur.rowcount)
            if st.bump_identity:  # a key given explicitly: the identity's next value must pass it
                table, col = st.bump_identity, IDENTITY[st.bump_identity]
                self._pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), "
                                 f"GREATEST((SELECT MAX({col}) FROM {table}), 1))")
            if own:
                self.commit()
            return out
        except psycopg.Error as e:
            if own and self.in_transaction:
                self.rollback()
            raise mapped(e) from None
