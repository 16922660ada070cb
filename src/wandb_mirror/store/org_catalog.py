"""Catalog writes for the organization side (organizations, members, registries, links, console
lines, integrations, automations). Each takes the connection of an open `Catalog.transaction()`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..org_models import Automation, ConsoleLine, Integration, Link, Organization, Registry, TeamMember
from .changelog import Change, Scope, insert_change


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description or ()]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _upsert(conn: sqlite3.Connection, table: str, row: dict[str, Any], keys: tuple[str, ...]) -> None:
    cols = list(row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys) or f"{keys[0]} = excluded.{keys[0]}"
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                 f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}", [row[c] for c in cols])


def upsert_organization(conn: sqlite3.Connection, org: Organization, member_entities: Iterable[str]) -> None:
    _upsert(conn, "organizations", org.to_row(), ("name",))
    for e in {org.org_entity, *member_entities}:
        conn.execute("INSERT OR IGNORE INTO entities (name, id, is_team) VALUES (?, ?, 1)", [e, None])
        conn.execute("UPDATE entities SET organization = ? WHERE name = ?", [org.name, e])


def upsert_member(conn: sqlite3.Connection, m: TeamMember) -> None:
    row = m.to_row()
    row["tombstoned_at"] = None
    _upsert(conn, "team_members", row, ("team", "username"))


def upsert_registry(conn: sqlite3.Connection, project_pk: int, r: Registry) -> None:
    row = r.to_row()
    row["project_pk"] = project_pk
    _upsert(conn, "registries", row, ("project_pk",))


def upsert_link(conn: sqlite3.Connection, collection_pk: int, artifact_pk: int, link: Link) -> None:
    conn.execute(
        "INSERT INTO artifact_links (collection_pk, artifact_pk, membership_id, version_index, aliases, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection_pk, version_index) DO UPDATE SET "
        "artifact_pk = excluded.artifact_pk, membership_id = excluded.membership_id, aliases = excluded.aliases, "
        "created_at = excluded.created_at, tombstoned_at = NULL",
        [collection_pk, artifact_pk, link.membership_id, link.version_index, link.aliases, link.created_at])


def artifact_pk_at(conn: sqlite3.Connection, entity: str, project: str, collection: str, index: int) -> int | None:
    row = conn.execute(
        "SELECT a.pk FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
        "JOIN projects p ON p.pk = c.project_pk WHERE p.entity = ? AND p.name = ? AND c.name = ? "
        "AND a.version_index = ?", [entity, project, collection, index]).fetchone()
    return row[0] if row else None


def append_console(conn: sqlite3.Connection, run_pk: int, lines: Iterable[ConsoleLine]) -> int:
    """Lines are keyed by their number: re-appending a line W&B already gave replaces it."""
    n = 0
    for ln in lines:
        conn.execute("INSERT OR REPLACE INTO console_lines (run_pk, number, timestamp, level, label, line) "
                     "VALUES (?, ?, ?, ?, ?, ?)", [run_pk, ln.number, ln.timestamp, ln.level, ln.label, ln.line])
        n += 1
    return n


def upsert_integration(conn: sqlite3.Connection, i: Integration) -> None:
    row = i.to_row()
    row["tombstoned_at"] = None
    _upsert(conn, "integrations", row, ("id",))


def upsert_automation(conn: sqlite3.Connection, a: Automation) -> None:
    row = a.to_row()
    row["tombstoned_at"] = None
    _upsert(conn, "automations", row, ("id",))


def artifact_pk_by_id(conn: sqlite3.Connection, artifact_id: str) -> int | None:
    row = conn.execute("SELECT pk FROM artifacts WHERE id = ? AND tombstoned_at IS NULL", [artifact_id]).fetchone()
    return row[0] if row else None


def links_of(conn: sqlite3.Connection, collection_pks: list[int]) -> dict[tuple[int, int], dict[str, Any]]:
    """Every link (live or tombstoned) of these collections by (collection pk, version index)."""
    if not collection_pks:
        return {}
    rows = _dicts(conn.execute(
        f"SELECT l.*, a.id AS artifact_id FROM artifact_links l JOIN artifacts a ON a.pk = l.artifact_pk "
        f"WHERE l.collection_pk IN ({','.join('?' * len(collection_pks))})", collection_pks))
    return {(r["collection_pk"], r["version_index"]): r for r in rows}


def tombstone_link(conn: sqlite3.Connection, link_pk: int, at: str) -> None:
    conn.execute("UPDATE artifact_links SET tombstoned_at = ? WHERE pk = ? AND tombstoned_at IS NULL", [at, link_pk])


def console_tail_number(conn: sqlite3.Connection, run_pk: int) -> int:
    """The highest console line number stored for a run (-1 when none)."""
    row = conn.execute("SELECT MAX(number) FROM console_lines WHERE run_pk = ?", [run_pk]).fetchone()
    return row[0] if row and row[0] is not None else -1


def stored_rows(conn: sqlite3.Connection, table: str, key: str, where: str, args: list[Any]) -> dict[str, dict[str, Any]]:
    """Rows of `table` matching `where`, by `key` (tables of this module only)."""
    if table not in ("team_members", "integrations", "automations"):
        raise ValueError(f"not an organization table: {table}")
    return {r[key]: r for r in _dicts(conn.execute(f"SELECT * FROM {table} WHERE {where}", args))}


def tombstone_rows(conn: sqlite3.Connection, table: str, key: str, keys: list[Any], at: str) -> None:
    if table not in ("team_members", "integrations", "automations") or not keys:
        return
    conn.execute(f"UPDATE {table} SET tombstoned_at = ? WHERE tombstoned_at IS NULL AND {key} IN "
                 f"({','.join('?' * len(keys))})", [at, *keys])


def record_event(conn: sqlite3.Connection, pass_id: int | None, event: Any, at: str) -> None:
    """One change row for `event` (an `events.Event`), in the transaction of the data it describes."""
    insert_change(conn, Change(Scope(pass_id, event.entity, event.project), event.kind, event.payload(),
                               run=event.run, subject=event.subject), at)


def runs_for_console(conn: sqlite3.Connection, pass_id: int | None, entities: list[str]) -> list[dict[str, Any]]:
    """The runs whose console output may have grown: those a pass recorded a change of, and the
    unfinished ones. A finished, unchanged run is not asked again."""
    if not entities:
        return []
    marks = ",".join("?" * len(entities))
    return _dicts(conn.execute(
        f"SELECT p.entity, p.name AS project, r.run_id, r.pk FROM runs r JOIN projects p ON p.pk = r.project_pk "
        f"WHERE r.tombstoned_at IS NULL AND p.entity IN ({marks}) AND (r.state NOT IN "
        "('finished', 'crashed', 'failed', 'killed') OR EXISTS (SELECT 1 FROM changes c WHERE c.pass_id = ? "
        "AND c.entity = p.entity AND c.project = p.name AND c.run = r.run_id)) ORDER BY r.pk",
        [*entities, pass_id]))


def live_registries(conn: sqlite3.Connection, org_entity: str, prefix: str) -> dict[str, int]:
    """Registry project name -> pk, of the organization's registries not tombstoned."""
    rows = conn.execute("SELECT name, pk FROM projects WHERE entity = ? AND substr(name, 1, ?) = ? AND "
                        "tombstoned_at IS NULL", [org_entity, len(prefix), prefix]).fetchall()
    return {r[0]: r[1] for r in rows}


def live_portfolios(conn: sqlite3.Connection, registries: dict[str, int]) -> dict[tuple[str, str], int]:
    """(registry project name, collection name) -> pk of the registries' collections not tombstoned."""
    if not registries:
        return {}
    names = {pk: name for name, pk in registries.items()}
    rows = conn.execute(f"SELECT project_pk, name, pk FROM artifact_collections WHERE project_pk IN "
                        f"({','.join('?' * len(names))}) AND tombstoned_at IS NULL", list(names)).fetchall()
    return {(names[r[0]], r[1]): r[2] for r in rows}


def tombstone_pks(conn: sqlite3.Connection, table: str, pks: list[int], at: str) -> None:
    """Tombstone registry projects or their collections (upstream deleted them; the mirror keeps them)."""
    if table not in ("projects", "artifact_collections") or not pks:
        return
    conn.execute(f"UPDATE {table} SET tombstoned_at = ? WHERE tombstoned_at IS NULL AND pk IN "
                 f"({','.join('?' * len(pks))})", [at, *pks])
