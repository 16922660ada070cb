"""Rewinding a run, as `wandb.init(resume_from="RUN?_step=N")` asks for it (wandb-core's RewindRun).

W&B truncates the run's history after step N (rows beyond N go), and the resumed run logs from
N + 1 on (wandb-core's own arithmetic: it continues at metricValue + 1). Everything else of the run stays; the client then writes on as it does after any resume.
This is how a run's history gets rewritten upstream after a mirror has copied it (issue 11, item 2).
"""

from __future__ import annotations

import json
import math
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

from ..jsontext import to_catalog
from ..store.history import History
from . import nodes as N
from .roots import _run_by_path, touch_run


class RewindMutations:
    """Mixed into the Mutation root (server/executor.py)."""

    def rewindRun(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        from .ingest import _history_keys  # ingest imports roots, as this module does

        ctx = N.ctx_of(info)
        if input.get("metricName") != "_step":
            raise GraphQLError("rewindRun: only the _step metric can be rewound to")
        value = input["metricValue"]
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise GraphQLError(f"rewindRun: metricValue must be a step, got {value!r}")
        step = int(value)
        run = _run_by_path(ctx, input.get("entityName") or N.default_entity(ctx), input.get("projectName"),
                           input["runName"])
        if run is None:
            raise GraphQLError(f"run {input['runName']} not found")
        with ctx.data.write(ctx.conn) as conn:
            history = History(None, ctx.objects, connect=lambda: conn)
            kept = list(history.texts(run["pk"], max_step=step + 1))
            # segments are immutable objects: the kept rows move to the tail, the segments are dropped
            conn.execute("DELETE FROM history WHERE run_pk = ?", [run["pk"]])
            conn.execute("DELETE FROM history_segments WHERE run_pk = ?", [run["pk"]])
            conn.executemany("INSERT INTO history (run_pk, step, row) VALUES (?, ?, ?)",
                             [(run["pk"], s, to_catalog(t)) for s, t in kept])
            keys = _history_keys({}, [json.loads(t) for _, t in kept])
            conn.execute("UPDATE runs SET history_keys = ?, last_step = ?, history_line_count = ? WHERE pk = ?",
                         [json.dumps(keys), keys["lastStep"], len(kept), run["pk"]])
            touch_run(conn, run["pk"])
        return {"rewoundRun": N.run_node_by_pk(ctx, run["pk"])}
