"""The generated part of migration analyst_catalog: strict JSON in every JSON column and declared foreign keys.

SQLite cannot add a foreign key to an existing table, so each table that lacks one is rebuilt
from its own definition (as sqlite_master holds it, whatever earlier migrations made of it) with
`REFERENCES` added: new table, copy, drop, rename, indexes re-created. The catalog does not
enforce foreign keys (PRAGMA foreign_keys=OFF); they document the relations and let datasette
link rows. JSON columns are rewritten through `jsontext.to_catalog`, registered as a function
on the migrating connection, so the rewrite is part of the migration's transaction.
"""

from __future__ import annotations

import re
import sqlite3

from ..jsontext import JSON_COLUMNS, to_catalog

# table -> {column: referenced table(column)}
FOREIGN_KEYS: dict[str, dict[str, str]] = {
    "projects": {"entity": "entities(name)"},
    "history": {"run_pk": "runs(pk)"},
    "events": {"run_pk": "runs(pk)"},
    "file_versions": {"run_pk": "runs(pk)"},
    "artifact_types": {"project_pk": "projects(pk)"},
    "artifact_collections": {"project_pk": "projects(pk)"},
    "artifacts": {"producer_run_pk": "runs(pk)"},
    "artifact_files": {"artifact_pk": "artifacts(pk)"},
    "artifact_usage": {"artifact_pk": "artifacts(pk)", "run_pk": "runs(pk)"},
    "sweeps": {"project_pk": "projects(pk)"},
    "reports": {"project_pk": "projects(pk)"},
    "sync_state": {"project_pk": "projects(pk)"},
    "quarantine": {"pass_id": "passes(id)"},
    "console_lines": {"run_pk": "runs(pk)"},
    "team_members": {"team": "entities(name)"},
    "integrations": {"entity": "entities(name)"},
    "automations": {"entity": "entities(name)"},
}


def _with_references(sql: str, refs: dict[str, str]) -> str:
    for col, target in refs.items():
        m = re.search(rf"(\n\s*{col}\s+[A-Z]+)([^,\n]*)", sql)
        if m is None or "REFERENCES" in m.group(2):
            continue
        sql = sql[:m.end()] + f" REFERENCES {target}" + sql[m.end():]
    return sql


def declare_foreign_keys_and_strict_json(conn: sqlite3.Connection) -> str:
    conn.create_function("wm_to_catalog", 1, to_catalog, deterministic=True)
    out: list[str] = []
    for table, refs in FOREIGN_KEYS.items():
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone()
        if row is None:
            continue
        new_sql = _with_references(row[0], refs)
        if new_sql == row[0]:
            continue
        indexes = [r[0] for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table])]
        head = re.match(r"CREATE TABLE \"?\w+\"?", new_sql)
        assert head is not None
        out.append(f"CREATE TABLE {table}__rebuild{new_sql[head.end():]};")
        out.append(f"INSERT INTO {table}__rebuild SELECT * FROM {table};")
        out.append(f"DROP TABLE {table};")
        out.append(f"ALTER TABLE {table}__rebuild RENAME TO {table};")
        out.extend(f"{sql};" for sql in indexes)
    for table, cols in JSON_COLUMNS.items():
        for col in cols:
            out.append(f"UPDATE {table} SET {col} = wm_to_catalog({col}) "
                       f"WHERE {col} LIKE '%NaN%' OR {col} LIKE '%Infinity%';")
    return "\n".join(out) + "\n"
