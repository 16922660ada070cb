"""Schema parity between the catalog's two engines, on a real PostgreSQL.

The first test reflects the SQLite catalog the migrations build and creates it on PostgreSQL
through SQLAlchemy Core with the types PostgreSQL needs for the same values: SQLite's INTEGER is
64-bit and PostgreSQL's is not (sizes and steps need BIGINT), REAL is DOUBLE PRECISION,
AUTOINCREMENT is an identity column, and views that use SQLite's JSON functions need their own
PostgreSQL text. The second compares what the migrations themselves build on each engine
(store/pg_schema.py derives the PostgreSQL text; SQLAlchemy is only the tests' reflection tool)."""

from __future__ import annotations

from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")
pytest.importorskip("psycopg")

from wandb_mirror.store.catalog import Catalog  # noqa: E402
from wandb_mirror.store.migrations import MIGRATIONS  # noqa: E402

pytestmark = pytest.mark.postgres


def portable(md: sa.MetaData) -> sa.MetaData:
    """The reflected SQLite tables with the types PostgreSQL needs for the same values."""
    out = sa.MetaData()
    for table in md.sorted_tables:
        cols = []
        for c in table.columns:
            t = c.type
            if isinstance(t, sa.Integer):
                t = sa.BigInteger()  # SQLite integers are 64-bit: file sizes, steps, seq
            elif isinstance(t, (sa.Float, sa.REAL)):
                t = sa.Double()
            elif isinstance(t, (sa.String, sa.Text)) or str(t) in ("", "NULL"):
                t = sa.Text()
            elif isinstance(t, sa.LargeBinary):
                t = sa.LargeBinary()
            cols.append(sa.Column(c.name, t, primary_key=c.primary_key, nullable=c.nullable,
                                  autoincrement=bool(c.autoincrement is True or (
                                      c.primary_key and len(table.primary_key.columns) == 1
                                      and isinstance(t, sa.BigInteger) and c.name in ("pk", "seq", "id")))))
        new = sa.Table(table.name, out, *cols)
        for fk in table.foreign_key_constraints:
            new.append_constraint(sa.ForeignKeyConstraint([c.name for c in fk.columns],
                                                          [e.target_fullname for e in fk.elements]))
        for u in table.constraints:
            if isinstance(u, sa.UniqueConstraint):
                new.append_constraint(sa.UniqueConstraint(*[c.name for c in u.columns]))
        for ix in table.indexes:
            sa.Index(ix.name, *[new.c[c.name] for c in ix.columns], unique=ix.unique)
    return out


def shape(engine: sa.Engine) -> dict[str, dict[str, object]]:
    insp = sa.inspect(engine)
    out: dict[str, dict[str, object]] = {}
    for name in insp.get_table_names():
        if name.startswith(("_", "sqlite_")):
            continue
        out[name] = {
            "columns": [c["name"] for c in insp.get_columns(name)],
            "pk": sorted(insp.get_pk_constraint(name)["constrained_columns"]),
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(name)),
            "indexes": sorted((tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(name)
                              if not i["name"].startswith("sqlite_autoindex")),
        }
    return out


def test_the_catalog_schema_creates_on_postgresql_from_one_declaration(postgres_server, tmp_path: Path) -> None:
    Catalog(tmp_path / "catalog.db").close()  # every migration, as a new store runs them
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    md = sa.MetaData()
    md.reflect(lite)
    postgres_server.psql("DROP DATABASE IF EXISTS parity")
    postgres_server.psql("CREATE DATABASE parity")
    pg = sa.create_engine(f"postgresql+psycopg://{postgres_server.user}@{postgres_server.host}:"
                          f"{postgres_server.port}/parity")
    try:
        portable(md).create_all(pg)
        want, got = shape(lite), shape(pg)
        assert sorted(got) == sorted(want) and len(want) >= 20
        for name in want:
            assert got[name]["columns"] == want[name]["columns"], name
            assert got[name]["pk"] == want[name]["pk"], name
            assert got[name]["fks"] == want[name]["fks"], name
            assert set(want[name]["indexes"]) <= set(got[name]["indexes"]), name  # type: ignore[arg-type]
        # the values SQLite holds fit: a 5 GB file size, a step beyond 2**31
        with pg.begin() as conn:
            cols = {c["name"]: c for c in sa.inspect(pg).get_columns("file_versions")}
            assert isinstance(cols["size"]["type"], sa.BigInteger)
            conn.execute(sa.text("CREATE TEMP TABLE t (v BIGINT)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": 5 * 2**30})
        # the one SQLite-only construct the migrations use in a view: its PostgreSQL text differs
        views = sa.inspect(lite).get_view_names()
        assert "best_runs" in views
        with lite.connect() as conn:
            sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'best_runs'")).scalar_one()
        assert "json_extract" in sql
    finally:
        pg.dispose()
        lite.dispose()


def test_the_postgresql_migrations_build_the_sqlite_catalog_schema(tmp_path: Path, pg_url: str) -> None:
    """The migrations as PostgreSQL runs them (store/pg_schema.py) leave the same tables, columns (in
    order), primary keys, indexes and views as on SQLite; only the declared foreign keys are left
    out (SQLite never enforces them; PostgreSQL would)."""
    from wandb_mirror.store.pg_schema import pg_migrations

    Catalog(tmp_path / "catalog.db").close()
    Catalog(pg_url).close()
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    pg = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        want, got = shape(lite), shape(pg)
        assert sorted(got) == sorted(want)
        for name in want:
            assert got[name]["columns"] == want[name]["columns"], name
            assert got[name]["pk"] == want[name]["pk"], name
            assert got[name]["fks"] == [], name
            # SQLite names UNIQUE constraints' indexes sqlite_autoindex_*: compare the column sets
            assert {c for c, _ in want[name]["indexes"]} <= {c for c, _ in got[name]["indexes"]}, name  # type: ignore[attr-defined]
        views = lambda e: {v: [c["name"] for c in sa.inspect(e).get_columns(v)]  # noqa: E731
                           for v in sa.inspect(e).get_view_names()}
        assert views(pg) == views(lite)
        # the 64-bit values SQLite holds fit: sizes, steps, sequence numbers
        cols = {c["name"]: c for c in sa.inspect(pg).get_columns("file_versions")}
        assert isinstance(cols["size"]["type"], sa.BigInteger)
        assert len(pg_migrations()) == len(MIGRATIONS)
    finally:
        pg.dispose()
        lite.dispose()
