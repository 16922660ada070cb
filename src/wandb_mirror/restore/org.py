"""Restore the organization side after the projects: registries (description, visibility, allowed
types), their collections (created by their first link, then description and tags), the links of
the artifact versions just restored with their aliases, and automations whose integrations exist
on the target. Each write is journaled before it is sent, as for runs; what already exists on the
target is left as it is, and nothing is ever deleted there.

What W&B's API does not let a client re-create is reported, one line per kind, with the reason
(`NOT_RESTORED`, and the per-item reasons collected while restoring).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..store.org_reader import (
    OrgStoreReader,
    StoredAutomation,
    StoredIntegration,
    StoredRegistry,
    StoredRegistryCollection,
)
from .journal import Journal
from .org_target import OrgTarget, TargetOrg
from .plan import Move

# Kinds the API cannot re-create, whatever the store holds: (what, why).
NOT_RESTORED = (
    ("integrations", "a Slack integration is authorized in the browser and a webhook's secret and access token are "
                     "never mirrored; create them on the target, then restore again to re-create the automations "
                     "that use them"),
    ("team members", "W&B adds people by invitation (an email to each, sent by an admin); invite them on the target"),
    ("organization settings and registry members", "the API has no call to set them, and the mirror does not hold "
                                                   "registry members"),
)
SCOPE_TYPES = {"Project": "PROJECT", "ArtifactSequence": "ARTIFACT_COLLECTION", "ArtifactPortfolio": "ARTIFACT_COLLECTION",
               "Entity": "ENTITY"}


@dataclass
class OrgCounts:
    registries: int = 0
    links: int = 0
    collections: int = 0  # collections whose description and tags were set
    automations: int = 0
    skipped: int = 0  # steps the journal says are done
    # reason -> items, in the order met: "not restored: REASON: items"
    left: dict[str, list[str]] = field(default_factory=dict)

    def leave(self, reason: str, item: str) -> None:
        self.left.setdefault(reason, []).append(item)

    def lines(self) -> list[str]:
        out = []
        for reason, items in self.left.items():
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            out.append(f"not restored: {len(items)} {reason}: {shown}")
        return out


class OrgRestore:
    """`artifact_ids`: stored artifact pk -> its id on the target (the versions the project restores
    wrote or found done in the journal); links to any other version cannot be restored."""

    def __init__(self, reader: OrgStoreReader, target: OrgTarget | None, journal: Journal | None,
                 moves: list[Move], artifact_ids: dict[int, str], organization: str | None = None,
                 progress: Callable[[str], None] = lambda s: None):
        self.reader = reader
        self.target = target
        self.journal = journal
        self.artifact_ids = artifact_ids
        self.organization = organization
        self.progress = progress
        self.entity_map: dict[str, str] = {}
        self.project_map: dict[tuple[str, str], tuple[str, str]] = {}
        for m in moves:
            self.entity_map.setdefault(m.source.project.entity, m.entity)
            self.project_map[(m.source.project.entity, m.source.project.name)] = (m.entity, m.project)
        self.counts = OrgCounts()
        self._names: dict[str, set[str]] = {}
        self._integrations: dict[str, list[dict[str, Any]]] = {}
        self._org: TargetOrg | None = None
        self._sources: dict[str, StoredIntegration] | None = None

    # -- the plan (--dry-run) ----------------------------------------------------------------
    def plan_lines(self) -> list[str]:
        regs = self.reader.registries()
        colls = sum(len(r.collections) for r in regs)
        links = [ln for r in regs for c in r.collections for ln in c.links]
        autos = self.reader.automations()
        out = [f"organization side: {len(regs)} registries, {colls} collections, {len(links)} links, "
               f"{len(autos)} automations (re-created where their integrations exist on the target)"]
        missing = [ln.source for ln in links if ln.artifact_pk not in self.artifact_ids]
        if missing:
            out.append(f"not restored: {len(missing)} links whose version is not restored: " + ", ".join(missing[:5]))
        return out + self.static_lines()

    def static_lines(self) -> list[str]:
        n_int, members = len(self.reader.integrations()), sum(self.reader.member_counts().values())
        counts = {"integrations": f"{n_int} ", "team members": f"{members} "}
        return [f"not restored: {counts.get(what, '')}{what}: {why}" for what, why in NOT_RESTORED
                if counts.get(what) != "0 "]

    # -- the restore -------------------------------------------------------------------------
    def _step(self, key: str, send: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        assert self.journal is not None
        data, skipped = self.journal.step(key, send)
        self.counts.skipped += skipped
        return data

    def run(self) -> OrgCounts:
        assert self.target is not None
        regs = self.reader.registries()
        orgs = self.reader.organizations()
        if regs:
            candidates = list(dict.fromkeys([*self.entity_map.values(), *(e for o in orgs for e in o.entities),
                                             *(o.org_entity for o in orgs)]))
            org = self._org = self.target.organization(self.organization, candidates)
            if org is None:
                where = f"no organization {self.organization!r}" if self.organization else \
                    "no organization for " + ", ".join(candidates[:3])
                for r in regs:
                    self.counts.leave(f"registries (the target has {where}; name one with --organization)", r.name)
            else:
                for r in regs:
                    self._registry(org, r)
        for a in self.reader.automations():
            self._automation(a)
        return self.counts

    def _registry(self, org: TargetOrg, reg: StoredRegistry) -> None:
        assert self.target is not None
        target = self.target
        self.progress(f"registry {reg.name}")

        def create() -> dict[str, Any]:
            if target.project_id(org.entity, reg.project) is not None:
                self.counts.leave("registries already on the target (their settings were left as they are)", reg.name)
                return {"existed": True}
            fields: dict[str, Any] = {"entityName": org.entity, "name": reg.project, "description": reg.description,
                                      "access": reg.access, "allowAllArtifactTypesInRegistry": reg.allow_all_types}
            if not reg.allow_all_types:
                fields["artifactTypes"] = [{"name": t} for t in reg.artifact_types]
            target.upsert_registry({k: v for k, v in fields.items() if v is not None})
            self.counts.registries += 1
            return {}

        self._step(f"org|registry|{org.entity}/{reg.project}", create)
        for coll in reg.collections:
            where = f"{reg.name}/{coll.name}"
            collection_id = None
            for ln in coll.links:
                new_id = self.artifact_ids.get(ln.artifact_pk)
                if not new_id:
                    self.counts.leave("links whose version was not restored (its project was not restored, or "
                                      "upstream deleted it)", f"{where}:v{ln.version_index} ({ln.source})")
                    continue
                collection_id = self._link(org, reg, coll.name, ln.version_index, ln.aliases, new_id) or collection_id
            if collection_id is None:
                if not coll.links or all(not self.artifact_ids.get(ln.artifact_pk) for ln in coll.links):
                    self.counts.leave("registry collections with no restorable version (W&B creates a collection "
                                      "by its first link)", where)
                continue
            if coll.description or coll.tags:
                self._step(f"org|collection|{org.entity}/{reg.project}/{coll.name}",
                           partial(self._describe, org, reg, coll, collection_id))

    def _link(self, org: TargetOrg, reg: StoredRegistry, coll: str, index: int, aliases: list[str],
              artifact_id: str) -> str | None:
        assert self.target is not None
        target = self.target

        def send() -> dict[str, Any]:
            out = target.link({"artifactID": artifact_id, "artifactPortfolioName": coll, "entityName": org.entity,
                               "projectName": reg.project,
                               "aliases": [{"alias": a, "artifactCollectionName": coll} for a in aliases]})
            self.counts.links += 1
            member = out.get("artifactMembership") or {}
            return {"version": out.get("versionIndex"), "collection_id": (member.get("artifactCollection") or {}).get("id")}

        data = self._step(f"org|link|{org.entity}/{reg.project}/{coll}:v{index}", send)
        return data.get("collection_id") or target.collection_id(org.entity, reg.project, coll)

    def _describe(self, org: TargetOrg, reg: StoredRegistry, coll: StoredRegistryCollection,
                  collection_id: str) -> dict[str, Any]:
        assert self.target is not None
        if coll.description:
            self.target.describe_collection(collection_id, coll.description)
        if coll.tags:
            self.target.tag_collection(org.entity, reg.project, coll.name, coll.tags)
        self.counts.collections += 1
        return {}

    # -- automations -------------------------------------------------------------------------
    def _automation(self, a: StoredAutomation) -> None:
        assert self.target is not None and self.journal is not None
        entity = self.entity_map.get(a.entity, a.entity)
        key = f"org|automation|{entity}/{a.name}"
        if self.journal.done(key):
            self.counts.skipped += 1
            return
        if entity not in self._names:
            self._names[entity] = self.target.automation_names(entity)
        if a.name in self._names[entity]:
            self.counts.leave("automations already on the target (left as they are)", f"{entity}/{a.name}")
            return
        scope = self._scope(a)
        if scope is None:
            self.counts.leave("automations whose scope was not restored", f"{entity}/{a.name}")
            return
        action = self._action(entity, a)
        if isinstance(action, tuple):
            reason, detail = action
            self.counts.leave(reason, f"{entity}/{a.name}{detail}")
            return
        fields = {"name": a.name, "description": a.description, "enabled": a.enabled,
                  "eventFilter": _text(a.event.get("filter", {})), "triggeringEventType": a.event.get("eventType"),
                  "scopeType": SCOPE_TYPES[a.scope["typename"]], "scopeID": scope, **action}
        target = self.target

        def create() -> dict[str, Any]:
            new_id = target.create_automation({k: v for k, v in fields.items() if v is not None})
            self.counts.automations += 1
            return {"id": new_id}

        self._step(key, create)

    def _scope(self, a: StoredAutomation) -> str | None:
        assert self.target is not None
        kind, sid = a.scope.get("typename"), a.scope.get("id")
        if kind == "Entity":
            return self.target.entity_id(self.entity_map.get(a.scope.get("name") or a.entity, a.entity))
        if kind == "Project":
            home = self.reader.project_home(sid) if sid else None
            dst = self.project_map.get(home) if home else None
            return self.target.project_id(*dst) if dst else None
        if kind in ("ArtifactSequence", "ArtifactPortfolio"):
            found = self.reader.collection_home(sid) if sid else None
            if found is None:
                return None
            entity, project, name = found
            dst = self.project_map.get((entity, project))
            if dst is None and kind == "ArtifactPortfolio" and self._org is not None:  # a registry's
                dst = (self._org.entity, project)
            return self.target.collection_id(dst[0], dst[1], name) if dst else None
        return None

    def _action(self, entity: str, a: StoredAutomation) -> dict[str, Any] | tuple[str, str]:
        """The action's input, or (why it cannot be re-created, detail)."""
        assert self.target is not None
        act = a.action
        kind = act.get("typename")
        if kind == "NoOpTriggeredAction":
            return {"triggeredActionType": "NO_OP", "triggeredActionConfig": {"noOpActionInput": {"noOp": True}}}
        if kind not in ("GenericWebhookTriggeredAction", "NotificationTriggeredAction"):
            return ("automations whose action needs what the mirror does not hold (e.g. a launch queue)",
                    f" ({kind or 'unknown action'})")
        if self._sources is None:
            self._sources = self.reader.integrations()
        source = self._sources.get(str(act.get("integration")))
        if entity not in self._integrations:
            self._integrations[entity] = self.target.integrations(entity)
        match = None
        for it in self._integrations[entity]:
            if source is None:
                break
            if kind == "GenericWebhookTriggeredAction" and it.get("__typename") == "GenericWebhookIntegration" \
                    and (it.get("name"), it.get("urlEndpoint")) == (source.name, source.url_endpoint):
                match = it
            elif kind == "NotificationTriggeredAction" and it.get("__typename") == "SlackIntegration" \
                    and (it.get("teamName"), it.get("channelName")) == (source.team_name, source.channel_name):
                match = it
            if match:
                break
        if match is None:
            what = (f"webhook {source.name!r} at {source.url_endpoint}" if source and source.name else
                    f"Slack channel {source.channel_name!r}" if source else "an integration the mirror lacks")
            return ("automations whose integration does not exist on the target (create it there, then restore "
                    "again)", f" ({what})")
        if kind == "GenericWebhookTriggeredAction":
            return {"triggeredActionType": "GENERIC_WEBHOOK", "triggeredActionConfig": {"genericWebhookActionInput": {
                "integrationID": match["id"], "requestPayload": act.get("requestPayload")}}}
        return {"triggeredActionType": "NOTIFICATION", "triggeredActionConfig": {"notificationActionInput": {
            "integrationID": match["id"], "title": act.get("title"), "message": act.get("message"),
            "severity": act.get("severity")}}}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
