"""Sync units for the organization side: an entity's organization metadata (members, integrations,
automations), the organization's registries and their links, and a run's console output.

Each unit reads upstream through `OrgReader`, then writes its rows and its change events in one
catalog transaction (an event exists if and only if its data does). All are incremental:

- registries: one listing each of registries, collections and links per pass (a constant number of
  requests, paged); a link is recorded only when the mirror holds the linked version, and events
  say what moved: a new link, a removed one (tombstoned, never deleted), aliases that changed;
- console: `logLineCount` first; only the lines after the last stored one are fetched;
- organization: members, integrations and automations are re-listed (small) and compared.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..client import ApiError, AuthError, GraphQLError, RetryBudgetExhausted
from ..client.org_api import OrgReader
from ..events import (
    ArtifactLinked,
    ArtifactUnlinked,
    AutomationChanged,
    ConsoleAppended,
    RegistryAliasesChanged,
    Tombstoned,
)
from ..org_models import REGISTRY_PREFIX, Organization
from ..store import Catalog
from ..store.org_catalog import (
    append_console,
    artifact_pk_by_id,
    console_tail_number,
    links_of,
    live_portfolios,
    live_registries,
    record_event,
    runs_for_console,
    stored_rows,
    tombstone_link,
    tombstone_pks,
    tombstone_rows,
    upsert_automation,
    upsert_integration,
    upsert_link,
    upsert_member,
    upsert_organization,
    upsert_registry,
)
from ..times import utcnow

log = logging.getLogger(__name__)

TAIL_CAP = 10_000  # W&B caps a console tail; beyond it the log is paged from the start
AUTOMATION_FIELDS = ("name", "description", "enabled", "scope", "event", "action")


@dataclass
class OrgStats:
    registries: int = 0
    collections: int = 0
    links: int = 0
    linked: int = 0
    unlinked: int = 0
    aliases_changed: int = 0
    registries_deleted: int = 0
    collections_deleted: int = 0
    links_skipped: list[str] = field(default_factory=list)  # links to versions the mirror does not hold
    console_lines: int = 0
    automations_changed: int = 0
    unsupported: list[str] = field(default_factory=list)  # units the server has no API for


def _aliases(text: Any) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []


def sync_organization(cat: Catalog, reader: OrgReader, pass_id: int | None, entity: str,
                      stats: OrgStats | None = None) -> Organization | None:
    """The organization of `entity`, the entity's members (a team's), integrations and automations."""
    stats = stats or OrgStats()
    org = reader.organization_for(entity)
    members = reader.team_members(entity)
    integrations = reader.integrations(entity)
    automations = reader.automations(entity)
    now = utcnow()
    with cat.transaction() as conn:
        if org is not None:
            upsert_organization(conn, org, [entity])
        old_members = stored_rows(conn, "team_members", "username", "team = ? AND tombstoned_at IS NULL", [entity])
        for m in members:
            upsert_member(conn, m)
        tombstone_rows(conn, "team_members", "username",
                       [u for u in old_members if u not in {m.username for m in members}], now)
        old_integrations = stored_rows(conn, "integrations", "id", "entity = ? AND tombstoned_at IS NULL", [entity])
        for i in integrations:
            upsert_integration(conn, i)
        tombstone_rows(conn, "integrations", "id", [i for i in old_integrations if i not in {x.id for x in integrations}],
                       now)
        old = stored_rows(conn, "automations", "id", "entity = ? AND tombstoned_at IS NULL", [entity])
        for a in automations:
            row = a.to_row()
            before = old.get(a.id)
            changes = ({} if before is None else
                       {f: {"before": before[f], "after": row[f]} for f in AUTOMATION_FIELDS if before[f] != row[f]})
            upsert_automation(conn, a)
            if before is None or changes:
                payload = {**row, "enabled": bool(a.enabled),
                           **{k: json.loads(row[k]) for k in ("scope", "event", "action")}}
                record_event(conn, pass_id, AutomationChanged(entity=entity, project="", automation_id=a.id,
                                                              name=a.name, changes=changes, automation=payload), now)
                stats.automations_changed += 1
        tombstone_rows(conn, "automations", "id", [i for i in old if i not in {a.id for a in automations}], now)
    return org


def sync_registries(cat: Catalog, reader: OrgReader, pass_id: int | None, org: Organization,
                    stats: OrgStats | None = None) -> OrgStats:
    """Every registry of `org` the key can see, its collections and their links."""
    stats = stats or OrgStats()
    regs = reader.registries(org)
    colls = reader.registry_collections(org)
    remote_links = reader.registry_links(org)
    now = utcnow()
    with cat.transaction() as conn:
        # what the mirror held before this listing: a registry or collection it no longer has was deleted
        held_regs = live_registries(conn, org.org_entity, REGISTRY_PREFIX)
        held_colls = live_portfolios(conn, held_regs)
        project_pks: dict[str, int] = {}
        for r in regs:
            project_pks[r.project.name] = cat.upsert_project(r.project)
            upsert_registry(conn, project_pks[r.project.name], r.registry)
        coll_pks: dict[tuple[str, str], int] = {}
        for registry, c in colls:
            if registry in project_pks:
                coll_pks[(registry, c.name)] = cat.upsert_collection(project_pks[registry], c)
                cat.upsert_artifact_type(project_pks[registry], c.type_name, created_at=c.created_at)
        gone_regs = {name: pk for name, pk in held_regs.items() if name not in project_pks}
        gone_colls = {key: pk for key, pk in held_colls.items() if key not in coll_pks}
        stored = links_of(conn, [*coll_pks.values(), *gone_colls.values()])  # a gone collection's links go too
        seen: set[tuple[int, int]] = set()
        for rl in remote_links:
            cpk = coll_pks.get((rl.registry, rl.collection))
            apk = artifact_pk_by_id(conn, rl.artifact_id)
            where = f"{org.org_entity}/{rl.registry}/{rl.collection}:v{rl.link.version_index}"
            if cpk is None or apk is None:
                stats.links_skipped.append(where)
                continue
            key = (cpk, rl.link.version_index)
            seen.add(key)
            before = stored.get(key)
            upsert_link(conn, cpk, apk, rl.link)
            stats.links += 1
            registry = rl.registry[len(REGISTRY_PREFIX):]
            new_aliases = _aliases(rl.link.aliases)
            if before is None or before["tombstoned_at"] is not None or before["artifact_pk"] != apk:
                record_event(conn, pass_id, ArtifactLinked(
                    entity=org.org_entity, project=rl.registry, artifact_id=rl.artifact_id, registry=registry,
                    collection=rl.collection, version_index=rl.link.version_index, aliases=new_aliases), now)
                stats.linked += 1
                continue
            old_aliases = _aliases(before["aliases"])
            added = [a for a in new_aliases if a not in old_aliases]
            removed = [a for a in old_aliases if a not in new_aliases]
            if added or removed:
                record_event(conn, pass_id, RegistryAliasesChanged(
                    entity=org.org_entity, project=rl.registry, artifact_id=rl.artifact_id, registry=registry,
                    collection=rl.collection, version_index=rl.link.version_index, added=added, removed=removed), now)
                stats.aliases_changed += 1
        names = {pk: key for key, pk in {**gone_colls, **coll_pks}.items()}
        for key, row in stored.items():
            if key in seen or row["tombstoned_at"] is not None:
                continue
            tombstone_link(conn, row["pk"], now)
            registry, collection = names[key[0]]
            record_event(conn, pass_id, ArtifactUnlinked(
                entity=org.org_entity, project=registry, artifact_id=row["artifact_id"],
                registry=registry[len(REGISTRY_PREFIX):], collection=collection, version_index=key[1],
                aliases=_aliases(row["aliases"])), now)
            stats.unlinked += 1
        _tombstone_registries(conn, pass_id, org, gone_regs, gone_colls, now)
        stats.registries_deleted, stats.collections_deleted = len(gone_regs), len(gone_colls)
    stats.registries, stats.collections = len(project_pks), len(coll_pks)
    return stats


def _tombstone_registries(conn: Any, pass_id: int | None, org: Organization, regs: dict[str, int],
                          colls: dict[tuple[str, str], int], now: str) -> None:
    """Registries and registry collections upstream no longer lists: tombstoned (never deleted), each
    with its `tombstoned` event, as runs are."""
    tombstone_pks(conn, "artifact_collections", list(colls.values()), now)
    tombstone_pks(conn, "projects", list(regs.values()), now)
    for (registry, name) in colls:
        record_event(conn, pass_id, Tombstoned(entity=org.org_entity, project=registry, what="collection",
                                               key=f"{org.org_entity}/{registry}/{name}"), now)
    for registry in regs:
        record_event(conn, pass_id, Tombstoned(entity=org.org_entity, project=registry, what="registry",
                                               key=f"{org.org_entity}/{registry}"), now)


def sync_console(cat: Catalog, reader: OrgReader, pass_id: int | None, entity: str, project: str, run: str,
                 run_pk: int, stats: OrgStats | None = None) -> int:
    """New console lines of one run (a running run's, or one that changed this pass); the count."""
    stats = stats or OrgStats()
    last = console_tail_number(cat.conn, run_pk)
    remote = reader.console_count(entity, project, run)
    if remote <= last + 1:
        return 0
    missing = remote - (last + 1)
    lines = (reader.console_tail(entity, project, run, missing) if missing <= TAIL_CAP
             else reader.console_all(entity, project, run))
    lines = [ln for ln in lines if ln.number > last]
    if not lines:
        return 0
    with cat.transaction() as conn:
        n = append_console(conn, run_pk, lines)
        record_event(conn, pass_id, ConsoleAppended(entity=entity, project=project, run=run,
                                                    first_line=lines[0].number, last_line=lines[-1].number), utcnow())
    stats.console_lines += n
    return n


@dataclass
class RunRef:
    entity: str
    project: str
    run_id: str
    pk: int


def sync_org_side(cat: Catalog, client: Any, pass_id: int | None, entities: list[str], runs: list[RunRef],
                  registries: bool = True) -> tuple[OrgStats, list[str]]:
    """The organization side of one pass: each entity's organization metadata, each organization's
    registries (once per organization), and the console output of `runs` (those the pass refreshed:
    an unchanged run costs nothing). A failing unit is reported and the others go on; an auth
    failure or an exhausted retry budget ends the pass as elsewhere."""
    reader, stats, errors = OrgReader(client), OrgStats(), []

    def attempt(where: str, unit: Any, *args: Any) -> Any:
        try:
            return unit(cat, reader, pass_id, *args, stats)
        except (AuthError, RetryBudgetExhausted):
            raise
        except GraphQLError as e:
            if _unsupported(e):  # an older or smaller server: nothing of this kind to mirror there
                stats.unsupported.append(where)
                return None
            errors.append(f"{where}: {e}")
        except ApiError as e:
            errors.append(f"{where}: {e}")
        return None

    orgs: dict[str, Organization] = {}
    for entity in entities:
        org = attempt(f"{entity}: organization", sync_organization, entity)
        if org is not None:
            orgs.setdefault(org.name, org)
    for org in orgs.values() if registries else ():
        attempt(f"{org.name}: registries", sync_registries, org)
    for run in runs:
        where = f"{run.entity}/{run.project}/{run.run_id}: console"
        attempt(where, sync_console, run.entity, run.project, run.run_id, run.pk)
        if stats.unsupported and stats.unsupported[-1] == where:
            break  # the server has no console API: do not ask once per run
    return stats, errors


_UNSUPPORTED = ("Cannot query field", "Unknown argument", "Unknown type")


def _unsupported(e: Exception) -> bool:
    return any(m in str(e) for m in _UNSUPPORTED)


def sync_org_pass(cx: Any, entities: list[str]) -> OrgStats:
    """The organization side of a pass (`cx`: the pass's sync Context), after its projects: the
    console output of the runs this pass changed and of unfinished ones, everything else of each
    entity and of its organization. Errors go to the pass's ledger; counts to its stats."""
    runs = [RunRef(**r) for r in runs_for_console(cx.catalog.conn, cx.ledger.pass_id, entities)]
    stats, errors = sync_org_side(cx.catalog, cx.client, cx.ledger.pass_id, entities, runs)
    for e in errors:
        where, _, message = e.partition(": ")
        cx.ledger.error(where, message)
    for key, n in (("registries", stats.registries), ("registry_links", stats.links), ("links_new", stats.linked), ("links_removed", stats.unlinked),
                   ("link_alias_moves", stats.aliases_changed), ("registries_deleted", stats.registries_deleted),
                   ("registry_collections_deleted", stats.collections_deleted), ("console_lines", stats.console_lines),
                   ("automations_changed", stats.automations_changed)):
        if n:
            cx.ledger.stats.add(key, n)
    if stats.links_skipped:
        log.info("%d registry links point at versions this mirror does not hold (first: %s)",
                 len(stats.links_skipped), stats.links_skipped[0])
    return stats
