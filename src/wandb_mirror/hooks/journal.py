"""The write-ahead journal of upstream writes (catalog table `journal`).

A real write is journaled twice: its intent (`result = 'pending'`, with before and after) is
committed before the request leaves, and the row is updated with the outcome when the answer is
back. A process killed in between leaves a `pending` row; `settle_pending` (at the next start,
once there is an upstream to ask) reads upstream and records what actually happened:
`ok: applied (settled at restart)` when the effect is there, `not applied (settled at restart)`
when it is not (the hook's event was never acknowledged, so it is delivered again and the plugin
decides afresh). Either way it is not an error and never counts against the plugin.

Results: `ok`, `ok: already done upstream` (the effect was there before we sent anything),
`dry-run`, `pending`, `ok: applied (settled at restart)`, `not applied (settled at restart)`,
`error: ...`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .. import jsontext
from ..client.documents import Document
from ..models import loads_lenient
from ..store import Store
from ..times import utcnow
from .upstream_documents import ARTIFACT_ALIASES_QUERY, RUN_FILE_QUERY, RUN_STATE_QUERY

log = logging.getLogger("wandb_mirror.upstream")

PENDING = "pending"
ALREADY_DONE = "ok: already done upstream"
SETTLED_APPLIED = "ok: applied (settled at restart)"
SETTLED_NOT_APPLIED = "not applied (settled at restart)"

# How status and metrics count journal rows: the one place result texts map to kinds.
RESULT_KIND_SQL = ("CASE WHEN dry_run <> 0 THEN 'dry_run' WHEN result LIKE 'ok%' THEN 'ok' "
                   "WHEN result = 'pending' THEN 'pending' WHEN result LIKE 'not applied%' THEN 'not_applied' "
                   "ELSE 'error' END")

# runs one document: (document, variables) -> data
GraphQL = Callable[[Document, dict[str, Any]], dict[str, Any]]


def _enc(v: Any) -> str | None:
    return None if v is None else jsontext.dumps(v)


class Journal:
    """One plugin's rows in the journal; `stats` counts results for metrics and status."""

    def __init__(self, store: Store, plugin: str, stats: dict[str, int]):
        self.store = store
        self.plugin = plugin
        self.stats = stats

    def record(self, action: str, target: str, before: Any, after: Any, dry_run: bool, result: str) -> None:
        self._count(result)
        with self.store.catalog.transaction() as conn:
            conn.execute(
                "INSERT INTO journal (at, plugin, action, target, before, after, dry_run, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [utcnow(), self.plugin, action, target, _enc(before), _enc(after), int(dry_run), result])

    def intent(self, action: str, target: str, before: Any, after: Any, ref: Any) -> int:
        """Commit the intent of a real write before it is sent; returns the row's key.

        `ref` (what settling needs: the upstream id of the file or artifact) travels in `after`
        for deletions and alias changes, whose `after` would otherwise say little.
        """
        with self.store.catalog.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO journal (at, plugin, action, target, before, after, dry_run, result) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                [utcnow(), self.plugin, action, target, _enc(before), _enc(_with_ref(after, ref)), PENDING])
            return int(cur.lastrowid or 0)

    def outcome(self, pk: int, result: str) -> None:
        self._count(result)
        with self.store.catalog.transaction() as conn:
            conn.execute("UPDATE journal SET result = ?, at = ? WHERE pk = ?", [result, utcnow(), pk])

    def _count(self, result: str) -> None:
        key = ("dry_run" if result == "dry-run" else "error" if result.startswith("error")
               else "ok" if result.startswith("ok") else result)
        self.stats[key] = self.stats.get(key, 0) + 1


def _with_ref(after: Any, ref: Any) -> Any:
    if ref is None:
        return after
    return {"ref": ref, "value": after}


def _unref(after: Any) -> tuple[Any, Any]:
    if isinstance(after, dict) and set(after) == {"ref", "value"}:
        return after["ref"], after["value"]
    return None, after


# ------------------------------------------------------------------------------------------ settling
def settle_pending(store: Store, graphql: GraphQL) -> int:
    """Settle every intent left without a result by a killed process; returns how many were settled.

    An intent whose upstream state cannot be read now (upstream down) stays pending for next time.
    """
    rows = store.catalog.query("SELECT pk, plugin, action, target, before, after FROM journal "
                               "WHERE result = ? ORDER BY pk", [PENDING])
    settled = 0
    for row in rows:
        try:
            applied = _applied(row, graphql)
        except Exception as e:  # noqa: BLE001 - upstream unreachable: try again at the next start
            log.warning("cannot settle the journaled %s of %s by %s yet: %s", row["action"], row["target"],
                        row["plugin"], e)
            continue
        result = SETTLED_APPLIED if applied else SETTLED_NOT_APPLIED
        with store.catalog.transaction() as conn:
            conn.execute("UPDATE journal SET result = ?, at = ? WHERE pk = ? AND result = ?",
                         [result, utcnow(), row["pk"], PENDING])
        log.info("[%s] %s %s: %s", row["plugin"], row["action"], row["target"], result)
        settled += 1
    return settled


def _applied(row: dict[str, Any], graphql: GraphQL) -> bool:
    action, target = row["action"], row["target"]
    ref, after = _unref(jsontext.loads(row["after"]))
    before = jsontext.loads(row["before"])
    if action == "delete_files":
        entity, project, run, name = target.split("/", 3)
        return not file_exists(graphql, entity, project, run, name)
    if action in ("alias_add", "alias_remove"):
        alias = ref["alias"]
        present = alias in artifact_aliases(graphql, ref["id"])
        return present if action == "alias_add" else not present
    entity, project, run = target.split("/", 2)
    node = run_state(graphql, entity, project, run)
    if node is None:
        return False
    if action == "summary":
        now = loads_lenient(node.get("summaryMetrics"), {}) or {}
        return _keys_match(before or {}, after or {}, now)
    if action == "config":
        raw = loads_lenient(node.get("config"), {}) or {}
        now = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}
        return _keys_match(before or {}, after or {}, now)
    if action == "tags":
        return set(node.get("tags") or []) == set(after or [])
    if action == "notes":
        return (node.get("notes") or "") == (after or "")
    return False


def _keys_match(before: dict[str, Any], after: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether every key the write changed has its new value upstream (other keys are not ours)."""
    changed = {k for k in after if k not in before or _dumps(before[k]) != _dumps(after[k])}
    removed = {k for k in before if k not in after}
    return all(k in now and _dumps(now[k]) == _dumps(after[k]) for k in changed) and not (removed & set(now))


def _dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, allow_nan=True)


# ------------------------------------------------------------------------------------------ reads
def run_state(graphql: GraphQL, entity: str, project: str, name: str) -> dict[str, Any] | None:
    data = graphql(RUN_STATE_QUERY, {"entity": entity, "project": project, "name": name})
    return ((data or {}).get("project") or {}).get("run")


def file_exists(graphql: GraphQL, entity: str, project: str, run: str, name: str) -> bool:
    data = graphql(RUN_FILE_QUERY, {"entity": entity, "project": project, "name": run, "fileNames": [name]})
    node = ((data or {}).get("project") or {}).get("run")
    if node is None:
        return False
    edges = ((node.get("files") or {}).get("edges")) or []
    return any((e.get("node") or {}).get("name") == name for e in edges)


def artifact_aliases(graphql: GraphQL, artifact_id: str) -> list[str]:
    data = graphql(ARTIFACT_ALIASES_QUERY, {"id": artifact_id})
    node = (data or {}).get("artifact") or {}
    return [str(a["alias"]) for a in node.get("aliases") or [] if isinstance(a, dict) and a.get("alias")]
