"""The edits users make to finished runs, made through the official client against an upstream
(a writable `serve`), for the round-trip tests and bench/marker_cost.py (issue 11, items 1 and 2).

Each edit is one function `(api, run, scratch)`; `history_rewrite` resumes the run from an earlier
step with `wandb.init(resume_from=...)` and logs new rows, as a user rewrites a run's history.
`plan` spreads the edits over a project's runs; `alias_move` moves an artifact alias to an older
version, as `artifact.aliases.append(...); artifact.save()` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY = "k" * 40


def summary_update(api: Any, run: Any, scratch: Path) -> None:
    run.summary["user_eval"] = 0.75
    run.summary.update()


def run_update(api: Any, run: Any, scratch: Path) -> None:
    run.tags = [*run.tags, "reviewed"]
    run.notes = "checked by hand"
    run.config["edited"] = True
    run.update()


def file_upload(api: Any, run: Any, scratch: Path) -> None:
    f = scratch / "uploaded" / "extra.txt"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f"uploaded to {run.id} after it finished\n")
    run.upload_file(str(f), root=str(f.parent))


def file_deletion(api: Any, run: Any, scratch: Path) -> None:
    """The run's last file (file_reupload takes the first: on a run with two files both edits show)."""
    list(run.files())[-1].delete()


def file_reupload(api: Any, run: Any, scratch: Path) -> None:
    """The run's first file uploaded again under its own name, with other bytes."""
    name = next(iter(run.files())).name
    f = scratch / "again" / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f"{name}, uploaded again\n")
    run.upload_file(str(f), root=str(scratch / "again"))


def run_deletion(api: Any, run: Any, scratch: Path) -> None:
    run.delete()


# Run in a process of its own: `wandb.init` leaves a process-wide service and settings behind, and
# tearing them down inside a test process that also holds an Api (wandb.teardown()) was seen to hang
# waiting for the service to exit. A child process ends its service when it exits.
_RESUME = """
import os, sys
import wandb
base_url, entity, project, run_id, at, root = sys.argv[1:]
settings = wandb.Settings(base_url=base_url, api_key=os.environ["WANDB_API_KEY"], mode="online",
                          x_graphql_retry_max=2, x_file_stream_retry_max=2, x_file_transfer_retry_max=2,
                          x_graphql_retry_wait_max_seconds=1, x_file_stream_retry_wait_max_seconds=1,
                          init_timeout=60, root_dir=root, silent=True)
resumed = wandb.init(entity=entity, project=project, resume_from=f"{run_id}?_step={at}", settings=settings)
for i in range(5):
    resumed.log({"rewritten": float(i), "loss": 7.0})
resumed.finish()
"""


def history_rewrite(api: Any, run: Any, scratch: Path) -> None:
    """`wandb.init(resume_from="RUN?_step=N")` at the run's middle row, then 5 new rows and finish."""
    span = max(1000, run.lastHistoryStep + 1)  # one page: the client pays a call per page_size steps
    steps = [r["_step"] for r in run.scan_history(page_size=span, use_cache=False)]
    at = steps[len(steps) // 2]
    scratch.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WANDB_API_KEY=KEY, WANDB_SILENT="true")
    env.pop("WANDB_RUN_ID", None)
    done = subprocess.run([sys.executable, "-c", _RESUME, api.settings["base_url"], run.entity, run.project, run.id,
                           str(at), str(scratch)], env=env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]


def alias_move(api: Any, path: str) -> str | None:
    """The first collection's oldest listed version takes the alias of its newest ("latest" aside), as
    `artifact.aliases.append(...); artifact.save()` moves an alias; the alias moved, or None."""
    for t in api.artifact_types(path):
        for coll in t.collections():
            versions = list(coll.artifacts())
            if len(versions) < 2:
                continue
            newest = max(versions, key=lambda a: int(a.version[1:]))
            oldest = min(versions, key=lambda a: int(a.version[1:]))
            alias = next((a for a in newest.aliases if a != "latest"), None)
            if alias is None:
                alias = "moved"
                newest.aliases.append(alias)
                newest.save()
            oldest.aliases.append(alias)
            oldest.save()
            return alias
    return None


Edit = Callable[[Any, Any, Path], None]

# name -> (edit, does the run need files, does it need history)
EDITS: dict[str, tuple[Edit, bool, bool]] = {
    "summary update": (summary_update, False, False),
    "run.update() tags/notes/config": (run_update, False, False),
    "file upload": (file_upload, False, False),
    "file re-upload": (file_reupload, True, False),
    "file deletion": (file_deletion, True, False),
    "run deletion": (run_deletion, False, False),
    "history rewrite (resume_from)": (history_rewrite, False, True),
}


def plan(runs: list[Any]) -> list[tuple[str, str]]:
    """(edit, run id) for every edit a project's runs allow: each edit on its own run where the project
    has enough runs (the deletion always on a run no other edit touches), else shared."""
    has_files = {r.id: len(r.files()) > 0 for r in runs}
    has_history = {r.id: (r.lastHistoryStep or 0) > 0 for r in runs}
    ids = [r.id for r in runs]
    if not ids:
        return []
    victim = ids[-1] if len(ids) > 1 else None
    usable = [i for i in ids if i != victim]
    out: list[tuple[str, str]] = []
    for n, (name, (_, files, history)) in enumerate(EDITS.items()):
        if name == "run deletion":
            if victim:
                out.append((name, victim))
            continue
        ok = [i for i in usable if (not files or has_files[i]) and (not history or has_history[i])]
        if ok:
            out.append((name, ok[n % len(ok)]))
    return out


def apply(api: Any, path: str, edits: list[tuple[str, str]], scratch: Path) -> None:
    """Make `edits` (from `plan`) through `api` on project `path`."""
    for name, run_id in edits:
        EDITS[name][0](api, api.run(f"{path}/{run_id}"), scratch)
