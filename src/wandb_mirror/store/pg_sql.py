"""SQLite's dialect, as the catalog's statements use it, rewritten for PostgreSQL.

The store's SQL is hand-written and small, and uses a known subset of SQLite: `?` and `:name`
parameters, INSERT OR IGNORE / OR REPLACE, `lastrowid`, case-insensitive LIKE, IFNULL,
datetime('now'), sqlite_master, a few PRAGMAs, subqueries in FROM without an alias, and NULLs
sorting first. Each is rewritten here, once per distinct statement (cached). String literals are
masked first, so nothing inside a literal is ever rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .pg_schema import IDENTITY, PRIMARY_KEYS

SQLITE_MASTER = (
    "(SELECT 'table' AS type, tablename::text AS name, tablename::text AS tbl_name, NULL::text AS sql "
    "FROM pg_tables WHERE schemaname = current_schema() "
    "UNION ALL SELECT 'view', viewname::text, viewname::text, definition FROM pg_views "
    "WHERE schemaname = current_schema() "
    "UNION ALL SELECT 'index', indexname::text, tablename::text, indexdef FROM pg_indexes "
    "WHERE schemaname = current_schema()) AS sqlite_master"
)
# a change counter for `PRAGMA data_version` (the server's cache key): the WAL position moves on
# every commit, from any connection (more often than SQLite's counter: only a cache miss more)
DATA_VERSION = ("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text "
                "ELSE pg_current_wal_lsn()::text END")
TABLE_INFO = ("SELECT ordinal_position - 1 AS cid, column_name::text AS name, data_type::text AS type, "
              "CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END AS notnull, column_default::text AS dflt_value, "
              "0 AS pk FROM information_schema.columns WHERE table_schema = current_schema() "
              "AND table_name = {table} ORDER BY ordinal_position")

_LITERAL = re.compile(r"'(?:[^']|'')*'")
_MASK = re.compile(r"\x00(\d+)\x00")
_CLAUSE_END = re.compile(r"\b(LIMIT|OFFSET|RETURNING|UNION|EXCEPT|INTERSECT|FOR|ON\s+CONFLICT|WINDOW)\b", re.I)
_ALIAS_STOP = {"WHERE", "GROUP", "ORDER", "LIMIT", "UNION", "JOIN", "LEFT", "INNER", "CROSS", "ON", "HAVING",
               "OFFSET", "EXCEPT", "INTERSECT", "NATURAL", "FULL", "RIGHT", "WINDOW", "RETURNING"}
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|ALTER|DROP)\b", re.I)


@dataclass(frozen=True)
class Statement:
    """One SQLite statement as PostgreSQL takes it."""

    sql: str | None             # None: nothing to run (a PRAGMA with no PostgreSQL meaning)
    kind: str = "sql"           # sql | begin | begin-write | commit | rollback
    write: bool = False         # changes the catalog: runs under the single-writer lock
    returns_id: bool = False    # a RETURNING added for `lastrowid` (not part of the caller's rows)
    bump_identity: str | None = None  # a table whose identity sequence must pass an explicit key


@lru_cache(maxsize=4096)
def translate(sql: str, named: bool = False) -> Statement:
    text = sql.strip().rstrip(";").strip()
    head = text.split(None, 2)
    word = head[0].upper() if head else ""
    if word in ("BEGIN",):
        mode = head[1].upper() if len(head) > 1 else ""
        return Statement(None, "begin-write" if mode in ("IMMEDIATE", "EXCLUSIVE") else "begin")
    if word in ("COMMIT", "END"):
        return Statement(None, "commit")
    if word == "ROLLBACK" and "TO" not in text.upper().split():
        return Statement(None, "rollback")
    if word == "PRAGMA":
        return _pragma(text)
    if word == "VACUUM":
        return Statement(None)

    literals: list[str] = []

    def keep(m: re.Match[str]) -> str:
        literals.append(m.group(0))
        return f"\x00{len(literals) - 1}\x00"

    text = re.sub(r"\bdatetime\(\s*'now'\s*\)", "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
                  text, flags=re.I)
    # psycopg reads %s placeholders: every other % is doubled, in literals too
    code = _LITERAL.sub(keep, text.replace("%", "%%"))
    code = re.sub(r"\bIFNULL\s*\(", "COALESCE(", code, flags=re.I)
    code = re.sub(r"\bLIKE\b", "ILIKE", code, flags=re.I)
    # SQLite's IS / IS NOT compare any two values, NULL-safe; PostgreSQL's only take NULL/TRUE/FALSE
    code = re.sub(r"\bIS\s+NOT\s+(?!NULL\b|TRUE\b|FALSE\b|DISTINCT\b)", "IS DISTINCT FROM ", code, flags=re.I)
    code = re.sub(r"\bIS\s+(?!NOT\b|NULL\b|TRUE\b|FALSE\b|DISTINCT\b)", "IS NOT DISTINCT FROM ", code, flags=re.I)
    code = re.sub(r"\bAS\s+INTEGER\s*\)", "AS BIGINT)", code, flags=re.I)
    code = re.sub(r"\bAS\s+REAL\s*\)", "AS DOUBLE PRECISION)", code, flags=re.I)
    code = re.sub(r"\b(?:main\.)?sqlite_master\b", lambda m: SQLITE_MASTER, code)
    # `main.` is SQLite's name for the database's own schema: PostgreSQL's search path finds it
    code = re.sub(r"\bmain\.", "", code)
    code = re.sub(r"\bCREATE\s+TEMP(?:ORARY)?\s+VIEW\s+IF\s+NOT\s+EXISTS\b", "CREATE OR REPLACE TEMP VIEW", code,
                  flags=re.I)
    code = re.sub(r"\browid\b", "ctid", code)
    code = _alias_subqueries(code)
    code = _nulls_like_sqlite(code)

    conflict = ""
    table = None
    cols: list[str] = []
    m = re.match(r"\s*(INSERT\s+OR\s+(IGNORE|REPLACE)|REPLACE)\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", code, re.I)
    if m:
        table = m.group(3)
        cols = [c.strip().strip('"') for c in (m.group(5) or "").split(",") if c.strip()]
        code = f"INSERT INTO {table}" + (f" ({m.group(5)})" if m.group(4) else "") + code[m.end():]
        if (m.group(2) or "REPLACE").upper() == "IGNORE":
            conflict = " ON CONFLICT DO NOTHING"
        else:
            keys = PRIMARY_KEYS.get(table)
            if not keys or not cols:
                raise ValueError(f"INSERT OR REPLACE into {table}: no key or column list to rewrite it with")
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)
            conflict = f" ON CONFLICT ({', '.join(keys)}) " + (f"DO UPDATE SET {sets}" if sets else "DO NOTHING")
    else:
        m = re.match(r"\s*INSERT\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", code, re.I)
        if m:
            table = m.group(1)
            cols = [c.strip().strip('"') for c in (m.group(3) or "").split(",") if c.strip()]
    returning = re.search(r"\bRETURNING\b", code, re.I)
    if conflict:
        if returning:
            code = code[:returning.start()] + conflict.strip() + " " + code[returning.start():]
        else:
            code += conflict
    returns_id = False
    bump = None
    if table is not None and table in IDENTITY:
        if not returning:
            code += f" RETURNING {IDENTITY[table]}"
            returns_id = True
        if IDENTITY[table] in cols:
            bump = table
    if named:
        code = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", code)
    else:
        code = code.replace("?", "%s")
    out = _MASK.sub(lambda m: literals[int(m.group(1))], code)
    return Statement(out, write=bool(_WRITE.match(out)), returns_id=returns_id, bump_identity=bump)


def _pragma(text: str) -> Statement:
    m = re.match(r"PRAGMA\s+(?:main\.)?(\w+)\s*(?:\(\s*['\"]?(\w+)['\"]?\s*\))?", text, re.I)
    name = m.group(1).lower() if m else ""
    if name == "data_version":
        return Statement(DATA_VERSION)
    if name in ("integrity_check", "quick_check"):
        return Statement("SELECT 'ok'")
    if name == "table_info" and m and m.group(2):
        return Statement(TABLE_INFO.format(table="'" + m.group(2).replace("'", "''") + "'"))
    return Statement(None)  # journal_mode, synchronous, busy_timeout, foreign_keys, incremental_vacuum...


def _close(code: str, start: int) -> int:
    """The index of the parenthesis closing the one at `start`."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(code) - 1


def _alias_subqueries(code: str, counter: list[int] | None = None) -> str:
    """PostgreSQL before 16 wants an alias on every subquery in FROM; SQLite does not."""
    counter = counter if counter is not None else [0]
    out, pos = [], 0
    for m in re.finditer(r"\b(FROM|JOIN)\s*\(\s*SELECT\b", code, re.I):
        if m.start() < pos:
            continue
        paren = code.index("(", m.start())
        end = _close(code, paren)
        inner = _alias_subqueries(code[paren + 1:end], counter)
        out.append(code[pos:paren + 1] + inner + ")")
        nxt = re.match(r"\s*(\w+)", code[end + 1:])
        if nxt is None or nxt.group(1).upper() in _ALIAS_STOP:
            counter[0] += 1
            out.append(f" AS _sub{counter[0]}")
        pos = end + 1
    out.append(code[pos:])
    return "".join(out)


def _nulls_like_sqlite(code: str) -> str:
    """SQLite sorts NULLs first ascending and last descending; PostgreSQL the other way round.
    Every ORDER BY term without NULLS FIRST/LAST gets SQLite's order spelled out."""
    out, pos = [], 0
    for m in re.finditer(r"\bORDER\s+BY\b", code, re.I):
        if m.start() < pos:
            continue
        start, depth, i = m.end(), 0, m.end()
        end = len(code)
        while i < len(code):
            ch = code[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    end = i
                    break
                depth -= 1
            elif depth == 0 and _CLAUSE_END.match(code, i) and (i == 0 or not (code[i - 1].isalnum()
                                                                               or code[i - 1] == "_")):
                end = i
                break
            i += 1
        terms, depth, last = [], 0, start
        for j in range(start, end):
            if code[j] == "(":
                depth += 1
            elif code[j] == ")":
                depth -= 1
            elif code[j] == "," and depth == 0:
                terms.append(code[last:j])
                last = j
                last += 1
        terms.append(code[last:end])
        fixed = []
        for t in terms:
            body = t.rstrip()
            if re.search(r"\bNULLS\s+(FIRST|LAST)\s*$", body, re.I):
                fixed.append(t)
                continue
            tail = " NULLS LAST" if re.search(r"\bDESC\s*$", body, re.I) else " NULLS FIRST"
            fixed.append(body + tail + t[len(body):])
        out.append(code[pos:start] + ",".join(fixed))
        pos = end
    out.append(code[pos:])
    return "".join(out)
