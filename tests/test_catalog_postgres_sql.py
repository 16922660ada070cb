"""The SQLite forms the catalog's statements use, as store/pg_sql.py rewrites them for PostgreSQL
(no server needed: what runs is checked by the `postgres` tests; this pins down each rewrite)."""

from __future__ import annotations

import pytest

from wandb_mirror.store.pg_sql import translate


def sql(text: str, named: bool = False) -> str:
    out = translate(text, named).sql
    assert out is not None
    return out


def test_placeholders_and_percent_signs_outside_and_inside_literals() -> None:
    assert sql("SELECT * FROM runs WHERE run_id = ? AND notes = '?'") == \
        "SELECT * FROM runs WHERE run_id = %s AND notes = '?'"
    assert sql("SELECT * FROM t WHERE a = :a AND b = ':b'", named=True) == "SELECT * FROM t WHERE a = %(a)s AND b = ':b'"
    assert sql("SELECT 1 FROM t WHERE x LIKE '%NaN%'") == "SELECT 1 FROM t WHERE x ILIKE '%%NaN%%'"


def test_upserts_take_the_conflict_target_from_the_schema() -> None:
    assert sql("INSERT OR IGNORE INTO entities (name) VALUES (?)") == \
        "INSERT INTO entities (name) VALUES (%s) ON CONFLICT DO NOTHING"
    assert sql("INSERT OR REPLACE INTO history (run_pk, step, row) VALUES (?, ?, ?)") == (
        "INSERT INTO history (run_pk, step, row) VALUES (%s, %s, %s) "
        "ON CONFLICT (run_pk, step) DO UPDATE SET row = EXCLUDED.row")
    with pytest.raises(ValueError, match="no key or column list"):
        translate("INSERT OR REPLACE INTO history VALUES (?, ?, ?)")


def test_lastrowid_is_a_returning_of_the_identity_column() -> None:
    st = translate("INSERT INTO passes (started_at, status) VALUES (?, 'running')")
    assert st.returns_id and st.sql is not None and st.sql.endswith("RETURNING id") and st.write
    assert not translate("INSERT INTO meta (key, value) VALUES (?, ?)").returns_id  # a text key: no lastrowid
    assert translate("INSERT INTO runs (pk, project_pk, run_id) VALUES (?, ?, ?)").bump_identity == "runs"


def test_nulls_sort_as_in_sqlite_and_explicit_orders_are_kept() -> None:
    assert sql("SELECT * FROM runs ORDER BY created_at DESC, pk LIMIT ?") == \
        "SELECT * FROM runs ORDER BY created_at DESC NULLS LAST, pk NULLS FIRST LIMIT %s"
    assert sql("SELECT * FROM (SELECT a FROM t ORDER BY a) AS s ORDER BY coalesce(b, 0) ASC NULLS LAST") == \
        "SELECT * FROM (SELECT a FROM t ORDER BY a NULLS FIRST) AS s ORDER BY coalesce(b, 0) ASC NULLS LAST"


def test_sqlite_only_expressions() -> None:
    assert sql("SELECT COUNT(*) FROM (SELECT md5 FROM (SELECT md5 FROM a) GROUP BY md5)") == \
        "SELECT COUNT(*) FROM (SELECT md5 FROM (SELECT md5 FROM a) AS _sub1 GROUP BY md5) AS _sub2"
    assert sql("UPDATE a SET x = ? WHERE x IS NOT ? AND y IS ? AND z IS NOT NULL") == \
        "UPDATE a SET x = %s WHERE x IS DISTINCT FROM %s AND y IS NOT DISTINCT FROM %s AND z IS NOT NULL"
    assert sql("SELECT IFNULL(a, 0), CAST(v AS INTEGER), datetime('now') FROM t") == (
        "SELECT COALESCE(a, 0), CAST(v AS BIGINT), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM t")
    assert "pg_tables" in sql("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert sql("SELECT name FROM entities ORDER BY rowid LIMIT 1") == \
        "SELECT name FROM entities ORDER BY ctid NULLS FIRST LIMIT 1"


def test_transaction_control_and_pragmas() -> None:
    assert translate("BEGIN IMMEDIATE").kind == "begin-write" and translate("BEGIN").kind == "begin"
    assert translate("COMMIT").kind == "commit" and translate("ROLLBACK").kind == "rollback"
    assert translate("PRAGMA journal_mode=WAL").sql is None
    assert translate("PRAGMA integrity_check").sql == "SELECT 'ok'"
    assert "pg_current_wal_lsn" in (translate("PRAGMA data_version").sql or "")
    assert "information_schema.columns" in (translate('PRAGMA main.table_info("runs")').sql or "")
