"""Fixture sections for the organization side (docs/fixtures.md): `organization` (teams and their
members), `registries` (collections of linked versions), `integrations`, `automations`, and a run's
`console` lines. Parsed after the projects (links and scopes name their artifacts and projects),
written in the same transaction as the rest of the fixture.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import fixtures as FX
from . import ids, times
from .models import ArtifactCollection, Project
from .org_models import (
    Automation,
    ConsoleLine,
    Integration,
    Link,
    Organization,
    Registry,
    TeamMember,
    registry_project,
)
from .store.org_catalog import (
    append_console,
    artifact_pk_at,
    upsert_automation,
    upsert_integration,
    upsert_link,
    upsert_member,
    upsert_organization,
    upsert_registry,
)

ROOT_KEYS = {"organization", "registries", "integrations", "automations"}
ROLES = {"admin", "member", "viewer"}
EVENTS = {"ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_TAG", "CREATE_ARTIFACT", "LINK_MODEL", "UNLINK_ARTIFACT",
          "UPDATE_ARTIFACT_ALIAS", "RUN_METRIC", "RUN_METRIC_CHANGE", "RUN_STATE"}
SEVERITIES = {"INFO", "WARN", "ERROR"}
VISIBILITY = {"organization": "PRIVATE", "restricted": "RESTRICTED"}


@dataclass
class PlannedLink:
    source: tuple[str, str, str, int]  # entity, project, collection, version index
    link: Link


@dataclass
class PlannedRegistry:
    project: Project
    registry: Registry
    collections: list[tuple[ArtifactCollection, list[PlannedLink]]] = field(default_factory=list)


@dataclass
class OrgPlan:
    organization: Organization | None = None
    teams: list[str] = field(default_factory=list)
    members: list[TeamMember] = field(default_factory=list)
    registries: list[PlannedRegistry] = field(default_factory=list)
    integrations: list[Integration] = field(default_factory=list)
    automations: list[Automation] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ console
def parse_console(path: str, spec: Any, start: datetime) -> list[ConsoleLine]:
    """A list of lines (strings or {"line", "timestamp", "level", "label"}), or {"lines": N, "seed": S}."""
    if isinstance(spec, dict):
        FX._keys(path, spec, {"lines", "seed"}, {"lines"})
        n = FX._int(f"{path}.lines", spec["lines"])
        rng = random.Random(FX._int(f"{path}.seed", spec.get("seed", 0)))
        return [ConsoleLine(number=i, line=f"step {i}: loss={rng.random():.4f}",
                            timestamp=times.console_time(start + timedelta(seconds=i)),
                            level="error" if rng.random() < 0.05 else "") for i in range(n)]
    out = []
    for i, item in enumerate(FX._list(path, spec)):
        p = f"{path}[{i}]"
        if isinstance(item, str):
            item = {"line": item}
        FX._keys(p, FX._obj(p, item), {"line", "timestamp", "level", "label"}, {"line"})
        level = FX._str(f"{p}.level", item.get("level", ""))
        if level not in ("", "error"):
            raise FX.FixtureError(f"{p}.level", f'expected "" or "error", got {FX._show(level)}')
        ts = (FX._time(f"{p}.timestamp", item["timestamp"]) if "timestamp" in item
              else times.console_time(start + timedelta(seconds=i)))
        out.append(ConsoleLine(number=i, line=FX._str(f"{p}.line", item["line"]), timestamp=ts, level=level,
                               label=FX._str(f"{p}.label", item.get("label", ""))))
    return out


# ------------------------------------------------------------------------------------------ parse
def parse_org(root: dict[str, Any], idgen: Any, plan: Any) -> OrgPlan:
    """The organization sections of `root`, checked against the parsed projects of `plan`."""
    out = OrgPlan()
    if "organization" in root:
        _parse_organization(root["organization"], idgen, plan, out)
    org_entity = out.organization.org_entity if out.organization else plan.default_entity
    projects = {(pp.project.entity, pp.project.name): pp for pp in plan.projects}
    for i, r in enumerate(FX._list("registries", root.get("registries", []))):
        out.registries.append(_parse_registry(f"registries[{i}]", r, idgen, org_entity, projects, plan))
    names: dict[str, str] = {}
    for i, it in enumerate(FX._list("integrations", root.get("integrations", []))):
        integ = _parse_integration(f"integrations[{i}]", it, idgen, plan.default_entity)
        key = integ.name if integ.kind == "GenericWebhookIntegration" else integ.channel_name
        if key in names:
            raise FX.FixtureError(f"integrations[{i}]", f"duplicate integration {key!r}")
        names[key or ""] = integ.id
        out.integrations.append(integ)
    seen: set[tuple[str, str]] = set()
    for i, a in enumerate(FX._list("automations", root.get("automations", []))):
        auto = _parse_automation(f"automations[{i}]", a, idgen, plan, projects, out, names)
        if (auto.entity, auto.name) in seen:
            raise FX.FixtureError(f"automations[{i}].name", f"duplicate automation {auto.name!r}")
        seen.add((auto.entity, auto.name))
        out.automations.append(auto)
    return out


def _parse_organization(value: Any, idgen: Any, plan: Any, out: OrgPlan) -> None:
    org = FX._obj("organization", value)
    FX._keys("organization", org, {"name", "entity", "teams"}, {"name"})
    name = FX._name("organization.name", org["name"])
    entity = FX._name("organization.entity", org.get("entity", name))
    out.organization = Organization(name=name, id=ids.typed_id("Organization", name), org_entity=entity,
                                    org_entity_id=ids.b64id(f"Entity:{entity}"))
    teams = FX._obj("organization.teams", org.get("teams", {}))
    for team, members in teams.items():
        tp = f"organization.teams.{team}"
        FX._name(tp, team)
        out.teams.append(team)
        usernames: set[str] = set()
        for j, m in enumerate(FX._list(tp, members)):
            mp = f"{tp}[{j}]"
            FX._keys(mp, FX._obj(mp, m), {"username", "name", "email", "role", "pending", "account_type"}, {"username"})
            username = FX._name(f"{mp}.username", m["username"])
            if username in usernames:
                raise FX.FixtureError(f"{mp}.username", f"duplicate member {username!r}")
            usernames.add(username)
            role = FX._str(f"{mp}.role", m.get("role", "member"))
            if role not in ROLES:
                raise FX.FixtureError(f"{mp}.role", f"expected one of {', '.join(sorted(ROLES))}, got {FX._show(role)}")
            out.members.append(TeamMember(
                team=team, username=username, id=ids.typed_id("User", username),
                name=FX._str(f"{mp}.name", m.get("name", username)),
                email=FX._str(f"{mp}.email", m.get("email", f"{username}@example.com")),
                admin=int(role == "admin"), pending=int(bool(m.get("pending", False))),
                account_type=FX._str(f"{mp}.account_type", m.get("account_type", "USER")), role=role))


def _source(path: str, ref: Any, projects: dict[tuple[str, str], Any], default_entity: str) -> tuple[str, str, str, int]:
    text = FX._str(path, ref)
    head, _, version = text.rpartition(":")
    parts = head.split("/")
    if len(parts) == 2:
        parts = [default_entity, *parts]
    if len(parts) != 3 or not (version.startswith("v") and version[1:].isdigit()):
        raise FX.FixtureError(path, f"expected ENTITY/PROJECT/COLLECTION:vN, got {FX._show(ref)}")
    entity, project, coll = parts
    pp = projects.get((entity, project))
    pc = next((c for c in pp.collections if c.collection.name == coll), None) if pp else None
    index = int(version[1:])
    if pc is None or index >= len(pc.versions) or pc.versions[index].artifact.state != "COMMITTED":
        raise FX.FixtureError(path, f"no committed artifact version {text!r} in this fixture")
    return entity, project, coll, index


def _parse_registry(path: str, r: Any, idgen: Any, org_entity: str, projects: dict, plan: Any) -> PlannedRegistry:
    FX._keys(path, FX._obj(path, r), {"name", "description", "visibility", "artifact_types", "created_at",
                                      "collections"}, {"name"})
    pname = registry_project(FX._name(f"{path}.name", r["name"]))
    if (org_entity, pname) in projects:
        raise FX.FixtureError(f"{path}.name", f"duplicate registry {pname!r}")
    created = FX._time(f"{path}.created_at", r["created_at"]) if "created_at" in r else FX.DEFAULT_START
    idgen.n += 1
    internal = idgen.n
    project = Project(entity=org_entity, name=pname, id=ids.project_id(internal), internal_id=str(internal),
                      description=FX._str(f"{path}.description", r.get("description"), allow_none=True),
                      created_at=created, updated_at=created, username=plan.users[0].username)
    visibility = FX._str(f"{path}.visibility", r.get("visibility", "organization"))
    if visibility not in VISIBILITY:
        raise FX.FixtureError(f"{path}.visibility", f"expected organization or restricted, got {FX._show(visibility)}")
    types = [FX._str(f"{path}.artifact_types[{k}]", t) for k, t in enumerate(FX._list(f"{path}.artifact_types",
                                                                                       r.get("artifact_types", [])))]
    out = PlannedRegistry(project=project, registry=Registry(access=VISIBILITY[visibility],
                                                             allow_all_types=int(not types),
                                                             artifact_types=json.dumps(types)))
    projects[(org_entity, pname)] = out
    seen: set[str] = set()
    for j, c in enumerate(FX._list(f"{path}.collections", r.get("collections", []))):
        cp = f"{path}.collections[{j}]"
        FX._keys(cp, FX._obj(cp, c), {"name", "type", "description", "tags", "created_at", "versions"}, {"name", "type"})
        cname = FX._name(f"{cp}.name", c["name"])
        if cname in seen:
            raise FX.FixtureError(f"{cp}.name", f"duplicate collection {cname!r}")
        seen.add(cname)
        ctype = FX._str(f"{cp}.type", c["type"])
        if types and ctype not in types:
            raise FX.FixtureError(f"{cp}.type", f"type {ctype!r} is not allowed in this registry ({', '.join(types)})")
        ccreated = FX._time(f"{cp}.created_at", c["created_at"]) if "created_at" in c else created
        coll = ArtifactCollection(name=cname, type_name=ctype, id=idgen.next("ArtifactPortfolio"), kind="PORTFOLIO",
                                  description=FX._str(f"{cp}.description", c.get("description"), allow_none=True),
                                  tags=json.dumps([FX._str(f"{cp}.tags[{k}]", t)
                                                   for k, t in enumerate(FX._list(f"{cp}.tags", c.get("tags", [])))]),
                                  created_at=ccreated, updated_at=ccreated)
        links: list[PlannedLink] = []
        taken: set[str] = set()
        for k, v in enumerate(FX._list(f"{cp}.versions", c.get("versions", []))):
            vp = f"{cp}.versions[{k}]"
            FX._keys(vp, FX._obj(vp, v), {"artifact", "aliases", "created_at"}, {"artifact"})
            src = _source(f"{vp}.artifact", v["artifact"], projects, plan.default_entity)
            aliases = [FX._str(f"{vp}.aliases[{n}]", a) for n, a in enumerate(FX._list(f"{vp}.aliases", v.get("aliases", [])))]
            for n, a in enumerate(aliases):
                if a in taken or (a.startswith("v") and a[1:].isdigit()) or a == "latest":
                    raise FX.FixtureError(f"{vp}.aliases[{n}]", f"alias {a!r} is a version, 'latest' or already used")
                taken.add(a)
            t = FX._time(f"{vp}.created_at", v["created_at"]) if "created_at" in v else ccreated
            links.append(PlannedLink(src, Link(membership_id=idgen.next("ArtifactCollectionMembership"),
                                               version_index=k, aliases=json.dumps(aliases), created_at=t)))
        if links:  # `latest` follows the newest link, as on W&B
            newest = links[-1].link
            newest.aliases = json.dumps(["latest", *json.loads(newest.aliases)])
        out.collections.append((coll, links))
    return out


def _parse_integration(path: str, it: Any, idgen: Any, default_entity: str) -> Integration:
    FX._keys(path, FX._obj(path, it), {"kind", "name", "url", "team", "channel", "entity", "created_at"}, {"kind"})
    kind = FX._str(f"{path}.kind", it["kind"])
    entity = FX._name(f"{path}.entity", it.get("entity", default_entity))
    created = FX._time(f"{path}.created_at", it["created_at"]) if "created_at" in it else FX.DEFAULT_START
    if kind == "webhook":
        FX._keys(path, it, {"kind", "name", "url", "entity", "created_at"}, {"name", "url"})
        url = FX._str(f"{path}.url", it["url"])
        if not url.startswith(("https://", "http://")):
            raise FX.FixtureError(f"{path}.url", f"expected an http(s) URL, got {FX._show(url)}")
        return Integration(id=idgen.next("Integration"), entity=entity, kind="GenericWebhookIntegration",
                           name=FX._name(f"{path}.name", it["name"]), url_endpoint=url, created_at=created)
    if kind == "slack":
        FX._keys(path, it, {"kind", "team", "channel", "entity", "created_at"}, {"team", "channel"})
        return Integration(id=idgen.next("Integration"), entity=entity, kind="SlackIntegration",
                           team_name=FX._str(f"{path}.team", it["team"]),
                           channel_name=FX._str(f"{path}.channel", it["channel"]), created_at=created)
    raise FX.FixtureError(f"{path}.kind", f"expected webhook or slack, got {FX._show(kind)}")


def _parse_automation(path: str, a: Any, idgen: Any, plan: Any, projects: dict, out: OrgPlan,
                      integrations: dict[str, str]) -> Automation:
    FX._keys(path, FX._obj(path, a), {"name", "entity", "description", "enabled", "scope", "event", "action",
                                      "created_at", "updated_at"}, {"name", "scope", "event", "action"})
    entity = FX._name(f"{path}.entity", a.get("entity", plan.default_entity))
    created = FX._time(f"{path}.created_at", a["created_at"]) if "created_at" in a else FX.DEFAULT_START
    scope = _scope(f"{path}.scope", a["scope"], entity, projects)
    ev = FX._obj(f"{path}.event", a["event"])
    FX._keys(f"{path}.event", ev, {"type", "filter"}, {"type"})
    etype = FX._str(f"{path}.event.type", ev["type"])
    if etype not in EVENTS:
        raise FX.FixtureError(f"{path}.event.type", f"expected one of {', '.join(sorted(EVENTS))}, got {FX._show(etype)}")
    event = {"eventType": etype, "filter": json.dumps(FX._obj(f"{path}.event.filter",
                                                              ev.get("filter", {"filter": {"$and": []}})))}
    action = _action(f"{path}.action", a["action"], integrations)
    return Automation(id=idgen.next("Trigger"), entity=entity, name=FX._str(f"{path}.name", a["name"]),
                      description=FX._str(f"{path}.description", a.get("description"), allow_none=True),
                      enabled=int(bool(a.get("enabled", True))), scope=json.dumps(scope), event=json.dumps(event),
                      action=json.dumps(action), created_at=created,
                      updated_at=FX._time(f"{path}.updated_at", a["updated_at"]) if "updated_at" in a else created)


def _scope(path: str, value: Any, entity: str, projects: dict) -> dict[str, Any]:
    s = FX._obj(path, value)
    FX._keys(path, s, {"project", "collection", "registry_collection", "entity"})
    if len(s) != 1:
        raise FX.FixtureError(path, "expected exactly one of project, collection, registry_collection, entity")
    if "entity" in s:
        return {"typename": "Entity", "id": ids.b64id(f"Entity:{entity}"), "name": entity}
    if "project" in s:
        pp = projects.get((entity, FX._str(f"{path}.project", s["project"])))
        if pp is None:
            raise FX.FixtureError(f"{path}.project", f"no project {entity}/{s['project']} in this fixture")
        return {"typename": "Project", "id": pp.project.id, "name": pp.project.name}
    key = "collection" if "collection" in s else "registry_collection"
    text = FX._str(f"{path}.{key}", s[key])
    pname, _, cname = text.partition("/")
    for (_, name), pp in projects.items():
        if name == (pname if key == "collection" else registry_project(pname)):
            colls = ([c.collection for c in pp.collections] if key == "collection" else [c for c, _ in pp.collections])
            c = next((c for c in colls if c.name == cname), None)
            if c is not None:
                return {"typename": "ArtifactSequence" if key == "collection" else "ArtifactPortfolio",
                        "id": c.id, "name": c.name}
    raise FX.FixtureError(f"{path}.{key}", f"no collection {text!r} in this fixture")


def _action(path: str, value: Any, integrations: dict[str, str]) -> dict[str, Any]:
    act = FX._obj(path, value)
    FX._keys(path, act, {"webhook", "payload", "slack", "title", "message", "severity", "no_op"})
    if "webhook" in act:
        name = FX._str(f"{path}.webhook", act["webhook"])
        if name not in integrations:
            raise FX.FixtureError(f"{path}.webhook", f"no webhook integration {name!r} in this fixture")
        return {"typename": "GenericWebhookTriggeredAction", "integration": integrations[name],
                "requestPayload": json.dumps(FX._obj(f"{path}.payload", act.get("payload", {})))}
    if "slack" in act:
        channel = FX._str(f"{path}.slack", act["slack"])
        if channel not in integrations:
            raise FX.FixtureError(f"{path}.slack", f"no slack integration for channel {channel!r} in this fixture")
        severity = FX._str(f"{path}.severity", act.get("severity", "INFO"))
        if severity not in SEVERITIES:
            raise FX.FixtureError(f"{path}.severity", f"expected INFO, WARN or ERROR, got {FX._show(severity)}")
        return {"typename": "NotificationTriggeredAction", "integration": integrations[channel],
                "title": FX._str(f"{path}.title", act.get("title", "")),
                "message": FX._str(f"{path}.message", act.get("message", "")), "severity": severity}
    if act.get("no_op"):
        return {"typename": "NoOpTriggeredAction", "noOp": True}
    raise FX.FixtureError(path, "expected one of webhook, slack, no_op")


# ------------------------------------------------------------------------------------------ write
def write_org(cat: Any, conn: Any, plan: OrgPlan) -> None:
    """Rows for `plan`, inside the fixture's transaction (projects and artifacts already written)."""
    if plan.organization is not None:
        upsert_organization(conn, plan.organization, plan.teams)
    for m in plan.members:
        upsert_member(conn, m)
    for pr in plan.registries:
        ppk = cat.upsert_project(pr.project)
        upsert_registry(conn, ppk, pr.registry)
        for coll, links in pr.collections:
            cpk = cat.upsert_collection(ppk, coll)
            cat.upsert_artifact_type(ppk, coll.type_name, id=ids.b64id(f"ArtifactType:{ppk}:{coll.type_name}"),
                                     created_at=coll.created_at)
            for pl in links:
                entity, project, cname, index = pl.source
                apk = artifact_pk_at(conn, entity, project, cname, index)
                assert apk is not None  # parse checked that the source version is in this fixture
                upsert_link(conn, cpk, apk, pl.link)
    for i in plan.integrations:
        upsert_integration(conn, i)
    for a in plan.automations:
        upsert_automation(conn, a)


def write_console(conn: Any, run_pk: int, lines: list[ConsoleLine]) -> int:
    conn.execute("DELETE FROM console_lines WHERE run_pk = ?", [run_pk])
    return append_console(conn, run_pk, lines)
