"""Writable serve: `createFilterTrigger`, what the official client's `api.create_automation()` sends.

The automation belongs to the entity of its scope (a project's, a collection's project's, or the
entity itself); its name is unique in that entity, as on W&B. Actions name an integration of that
entity by id; one that does not exist, or of the wrong kind, is refused. A registry's collection
lives in the organization's entity: its automation may use the integration of any team of the
organization, and then belongs to that team (as the mirror records such automations upstream). Queue-job and other
actions this server cannot carry out are refused rather than stored half.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids, times
from . import nodes as N
from .org import _trigger

_ACTIONS = {  # triggeredActionType -> (config key, typename, integration kind)
    "GENERIC_WEBHOOK": ("genericWebhookActionInput", "GenericWebhookTriggeredAction", "GenericWebhookIntegration"),
    "NOTIFICATION": ("notificationActionInput", "NotificationTriggeredAction", "SlackIntegration"),
    "NO_OP": ("noOpActionInput", "NoOpTriggeredAction", None),
}
_ACTION_FIELDS = {"GenericWebhookTriggeredAction": ("requestPayload",),
                  "NotificationTriggeredAction": ("title", "message", "severity")}


def _scope(conn: Any, scope_type: str, scope_id: str) -> tuple[dict[str, Any], str]:
    """({typename, id, name}, owning entity) of the scope."""
    if scope_type == "PROJECT":
        p = conn.execute("SELECT * FROM projects WHERE id = ? AND tombstoned_at IS NULL", [scope_id]).fetchone()
        if p is not None:
            return {"typename": "Project", "id": p["id"], "name": p["name"]}, p["entity"]
    elif scope_type == "ARTIFACT_COLLECTION":
        c = conn.execute("SELECT c.*, p.entity FROM artifact_collections c JOIN projects p ON p.pk = c.project_pk "
                         "WHERE c.id = ? AND c.tombstoned_at IS NULL", [scope_id]).fetchone()
        if c is not None:
            kind = "ArtifactPortfolio" if (c["kind"] or "").upper() == "PORTFOLIO" else "ArtifactSequence"
            return {"typename": kind, "id": c["id"], "name": c["name"]}, c["entity"]
    elif scope_type == "ENTITY":
        e = conn.execute("SELECT name FROM entities WHERE id = ? OR name = ?",
                         [scope_id, _entity_name(scope_id)]).fetchone()
        if e is not None:
            return {"typename": "Entity", "id": scope_id, "name": e["name"]}, e["name"]
    else:
        raise GraphQLError(f"unknown automation scope type {scope_type!r}")
    raise GraphQLError(f"automation scope {scope_type} {scope_id} not found")


def _entity_name(scope_id: str) -> str:
    """The name in an `Entity:NAME` id (how this server and its fixtures name entities)."""
    try:
        kind, _, name = base64.b64decode(str(scope_id).encode(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return ""
    return name if kind == "Entity" else ""


def _action(conn: Any, entity: str, action_type: str, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The stored action and the entity the automation belongs to."""
    if action_type not in _ACTIONS:
        raise GraphQLError(f"automation action {action_type!r} is not supported by this server")
    key, typename, kind = _ACTIONS[action_type]
    given = config.get(key)
    if given is None:
        raise GraphQLError(f"triggeredActionConfig.{key} is required for a {action_type} action")
    if kind is None:
        return {"typename": typename, "noOp": True}, entity
    row = conn.execute("SELECT * FROM integrations WHERE id = ? AND tombstoned_at IS NULL",
                       [given.get("integrationID")]).fetchone()
    in_org = row is not None and conn.execute(
        "SELECT 1 FROM organizations o JOIN entities e ON e.organization = o.name WHERE o.org_entity = ? AND "
        "e.name = ?", [entity, row["entity"]]).fetchone() is not None
    if row is None or row["kind"] != kind or (row["entity"] != entity and not in_org):
        raise GraphQLError(f"no {kind} {given.get('integrationID')} in entity {entity!r}")
    out = {"typename": typename, "integration": row["id"]}
    out.update({f: given.get(f) for f in _ACTION_FIELDS[typename] if given.get(f) is not None})
    return out, row["entity"]


class AutomationMutations:
    """Mixed into the Mutation root."""

    def createFilterTrigger(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        try:
            json.loads(input["eventFilter"])
        except ValueError:
            raise GraphQLError("eventFilter is not valid JSON") from None
        with ctx.data.write(ctx.conn) as conn:
            scope, entity = _scope(conn, input["scopeType"], input["scopeID"])
            action, entity = _action(conn, entity, input["triggeredActionType"], input.get("triggeredActionConfig") or {})
            if conn.execute("SELECT 1 FROM automations WHERE entity = ? AND name = ? AND tombstoned_at IS NULL",
                            [entity, input["name"]]).fetchone():
                raise GraphQLError(f"an automation named {input['name']!r} already exists in {entity!r}",
                                   extensions={"code": "CONFLICT"})
            t = times.wandb_time()
            row = {"id": ids.b64id(f"Trigger:{uuid.uuid4().hex}"), "entity": entity, "name": input["name"],
                   "description": input.get("description"), "enabled": int(bool(input["enabled"])),
                   "scope": json.dumps(scope),
                   "event": json.dumps({"eventType": input["triggeringEventType"], "filter": input["eventFilter"]}),
                   "action": json.dumps(action), "created_at": t, "updated_at": t}
            conn.execute(f"INSERT INTO automations ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         list(row.values()))
        return {"trigger": _trigger(ctx, row), "clientMutationId": input.get("clientMutationId")}
