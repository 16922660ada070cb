"""Creating and updating sweeps, as `wandb.sweep()` (the public API's UpsertSweep) does it.

W&B names a new sweep itself (8 random characters); the client cannot choose the name. An
`id` updates an existing sweep (its state, config, description or display name).
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import yaml
from graphql import GraphQLError, GraphQLResolveInfo

from .. import ids, times
from . import nodes as N
from .roots import _ensure_project

_ALPHABET = string.ascii_lowercase + string.digits


def _method(config: str | None) -> str | None:
    try:
        doc = yaml.safe_load(config or "") or {}
    except yaml.YAMLError:
        raise GraphQLError("sweep config is not valid YAML") from None
    return doc.get("method") if isinstance(doc, dict) else None


class SweepMutations:
    """Mixed into the Mutation root (server/engine.py)."""

    def upsertSweep(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        ctx = N.ctx_of(info)
        t = times.wandb_time()
        with ctx.data.write(ctx.conn) as conn:
            if input.get("id"):
                row = conn.execute("SELECT * FROM sweeps WHERE id = ? AND tombstoned_at IS NULL", [input["id"]]).fetchone()
                if row is None:
                    raise GraphQLError(f"sweep {input['id']} not found")
                sets = {col: input[k] for k, col in (("config", "config"), ("description", "description"),
                                                      ("displayName", "display_name"), ("state", "state"))
                        if input.get(k) is not None}
                if "config" in sets:
                    sets["method"] = _method(sets["config"])
                sets["updated_at"] = t
                conn.execute(f"UPDATE sweeps SET {', '.join(f'{c} = ?' for c in sets)} WHERE pk = ?",
                             [*sets.values(), row["pk"]])
                pk, inserted = row["pk"], False
            else:
                if not input.get("config") or not input.get("projectName"):
                    raise GraphQLError("a new sweep needs a config and a projectName")
                project = _ensure_project(ctx, input.get("entityName") or N.default_entity(ctx), input["projectName"])
                name = "".join(secrets.choice(_ALPHABET) for _ in range(8))
                cur = conn.execute(
                    "INSERT INTO sweeps (project_pk, name, id, display_name, config, method, state, description, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [project["pk"], name, ids.typed_id("Sweep", f"{project['pk']}:{name}"), input.get("displayName"),
                     input["config"], _method(input["config"]), input.get("state") or "PENDING",
                     input.get("description"), t, t])
                pk, inserted = cur.lastrowid, True
        row = dict(ctx.conn.execute("SELECT * FROM sweeps WHERE pk = ?", [pk]).fetchone())
        owner = ctx.data.project_by_pk(ctx.conn, row["project_pk"])
        assert owner is not None  # the sweep was just written under it
        node = N.SweepNode(ctx, row, owner)
        node.project = N.ProjectNode(ctx, owner)  # type: ignore[attr-defined]  # wandb.sweep() asks for it
        return {"sweep": node, "inserted": inserted}
