"""Catalog writes for the organization side (organizations, members, registries, links, console
lines, integrations, automations). Each takes the connection of an open `Catalog.transaction()`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..org_models import Automation, ConsoleLine, Integration, Link, Organization, Registry, TeamMember


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
