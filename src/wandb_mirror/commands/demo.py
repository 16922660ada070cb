"""The whole story on loopback, in under a minute, with nothing to set up.

  1. seed a demo W&B workspace (2 projects, 38 runs, a sweep, artifacts) into an "upstream" store;
  2. serve it over the W&B API on 127.0.0.1 (what the official client and wandb-mirror both speak);
  3. mirror it with every built-in plugin enabled for real (export, best_run, cleanup,
     summary_backfill): the hooks fire, the plugins write back upstream, all journaled;
  4. change the upstream as a team would (a running run finishes, a new sweep run beats the best);
  5. mirror again: only what changed is fetched, the hooks fire, the best-run tag moves;
  6. a pass with no change, then `verify --deep` of the mirror.

Everything lands in --dir (default ./wandb-mirror-demo; `make demo` uses ./.demo), which is
recreated on each run; explore it afterwards with the commands it prints at the end (`status`,
`browse`, `serve` on DIR/mirror), runnable as printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .. import jsontext
from ..errors import UsageError, WorkFailed
from ..invocation import command
from ..paths import writable_dir

MARKER = ".wandb-mirror-demo"
PROJECT = "image-classification"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="wandb-mirror-demo", metavar="DIR",
                   help="working directory, recreated on each run (default ./wandb-mirror-demo; "
                        "`make demo` uses ./.demo)")
    p.add_argument("--latency-ms", type=int, default=0, metavar="N", help="add N ms to every upstream response")


def run(args: argparse.Namespace) -> int:
    from ..demo_data import ENTITY, demo_fixture
    from ..fixtures import seed
    from ..server import start_server
    from ..store import Store
    from ..store_status import store_status
    from ..verify import verify_store

    t_start = time.monotonic()
    work = Path(args.dir).resolve()
    if work.exists():
        if not (work / MARKER).exists():
            raise UsageError(f"{work} exists and is not a demo directory; choose another --dir")
        shutil.rmtree(work)
    writable_dir(work, "--dir")
    (work / MARKER).write_text("created by `wandb-mirror demo`; safe to delete\n")
    if not args.verbose:
        logging.getLogger("wandb_mirror").setLevel(logging.ERROR)

    # 1-2. the upstream
    with Store(work / "upstream") as up:
        rep = seed(up, demo_fixture())
    say(1, f"seeded a demo W&B workspace: {rep.projects} projects, {rep.runs} runs, {rep.history_rows} history rows, "
           f"{rep.files} files, {rep.artifacts} artifact versions ({shown(work / 'upstream')})")
    server = start_server(work / "upstream", writable=True, latency_ms=args.latency_ms)
    os.environ.setdefault("WANDB_API_KEY", "demo" * 10)  # the demo server accepts any key; never printed
    try:
        say(2, f"serving it over the W&B API at {server.url} (the official client reads it: "
               f"wandb.Api(overrides={{'base_url': ...}}))")
        config = write_config(work, server.url)

        # 3. first mirror, plugins for real
        n_req, seconds = cycle(config, server)
        with Store(work / "mirror") as mirror:
            st = store_status(mirror)
            say(3, f"first mirror: {st['runs']['total']} runs, {st['history_rows']} history rows, {st['files']} files, "
                   f"{st['artifacts']} artifact versions, {human(st['bytes'])} stored for {human(st['logical_bytes'])} "
                   f"referenced (dedup {st['dedup_ratio']:.2f}x); {n_req} requests, {seconds:.1f}s")
            hooks_fired(mirror, since_pass=0)
            plugin_results(mirror, work, since=0)
            journal_mark = mirror.catalog.scalar("SELECT COALESCE(MAX(pk), 0) FROM journal")
            pass_mark = mirror.catalog.scalar("SELECT COALESCE(MAX(id), 0) FROM passes")

        # 4. upstream activity
        with Store(work / "upstream") as up:
            changes = simulate_activity(up, ENTITY, PROJECT)
        say(4, "upstream changes: " + "; ".join(changes))

        # 5. incremental pass
        n_req, seconds = cycle(config, server)
        with Store(work / "mirror") as mirror:
            say(5, f"second pass: {n_req} requests, {seconds:.1f}s; only what changed was fetched")
            hooks_fired(mirror, since_pass=pass_mark)
            plugin_results(mirror, work, since=journal_mark)

        # 6. no change, then verify
        n_req, seconds = cycle(config, server)
        with Store(work / "mirror", readonly=True) as mirror:
            vr = verify_store(mirror, deep=True)
            say(6, f"a pass with no upstream change: {n_req} requests, {seconds:.1f}s; verify --deep: "
                   + ("ok" if vr.ok else f"FAILED ({len(vr.problems)} problems)")
                   + f", {vr.objects_checked} objects and {vr.artifacts_checked} artifacts re-checked")
            for p in vr.problems[:10]:
                detail(f"BAD {p}")
    finally:
        server.stop()
    mirror_dir = shown(work / "mirror")
    print(f"\ndone in {time.monotonic() - t_start:.1f}s. Explore the mirror:")
    for args_ in (("status", "--store", mirror_dir), ("browse", "--store", mirror_dir),
                  ("serve", "--store", mirror_dir, "--port", "8080")):
        print(f"  {command(*args_)}")
    print(f"  exports in {shown(work / 'export')}")
    if not vr.ok:
        raise WorkFailed("the mirror did not verify")
    return 0


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((80, 24)).columns, 100))


def say(step: int, text: str) -> None:
    """A step, wrapped to the terminal (at most 100 columns) under its number."""
    print(textwrap.fill(text, _width(), initial_indent=f"[{step}] ", subsequent_indent="    ",
                        break_on_hyphens=False, break_long_words=False), flush=True)


def detail(text: str) -> None:
    print(textwrap.fill(text, _width(), initial_indent="    ", subsequent_indent="      ",
                        break_on_hyphens=False, break_long_words=False), flush=True)


def shown(path: Path) -> str:
    """`path` as the user can type it from here: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def write_config(work: Path, url: str) -> Path:
    path = work / "mirror.toml"
    path.write_text(f"""# written by `wandb-mirror demo`
[source]
base_url = "{url}"

[store]
path = "mirror"

[sync]
concurrency = 4
reconcile_interval = "1h"
progress = "never"

[daemon]
poll_interval = "60s"

[plugins.export]
enabled = true
out = "export"
formats = ["csv", "jsonl"]

[plugins.best_run]
enabled = true
dry_run = false
tag = "best"
materialize_dir = "best-runs"

[plugins.cleanup]
enabled = true
dry_run = false
extensions = [".png"]
min_age = "0s"
max_per_pass = 10

[plugins.summary_backfill]
enabled = true
dry_run = false
""")
    return path


def cycle(config: Path, server: Any) -> tuple[int, float]:
    """One daemon cycle (sync pass, then plugin delivery); returns (upstream requests, seconds)."""
    from ..daemon.core import Daemon

    server.reset_log()
    t0 = time.monotonic()
    code = Daemon(config, max_cycles=1, install_signals=False, watch=False).run()
    seconds = time.monotonic() - t0
    if code not in (0, None):
        raise WorkFailed(f"the mirror cycle failed (exit {code}); run with -v for details")
    return len(server.request_log()), seconds


def hooks_fired(store: Any, since_pass: int) -> None:
    kinds = Counter(r["kind"] for r in store.catalog.query(
        "SELECT kind FROM changes WHERE pass_id > ? ORDER BY seq", [since_pass]))
    detail("hooks fired: " + (", ".join(f"{k} x{n}" for k, n in kinds.most_common()) or "none"))


def plugin_results(store: Any, work: Path, since: int) -> None:
    rows = store.catalog.query("SELECT plugin, action, target, before, after, dry_run, result FROM journal "
                               "WHERE pk > ? ORDER BY pk", [since])
    by_plugin: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_plugin.setdefault(r["plugin"], []).append(r)
    for r in by_plugin.get("best_run", []):
        before, after = jsontext.loads(r["before"] or "[]"), jsontext.loads(r["after"] or "[]")
        change = ", ".join([f"+{t}" for t in after if t not in before] + [f"-{t}" for t in before if t not in after])
        detail(f"best_run: {r['action']} {change or '(unchanged)'} on {r['target']} -> {r['result']}")
    cleaned = by_plugin.get("cleanup", [])
    if cleaned:
        kept = sum(1 for r in cleaned if r["result"] == "ok")
        detail(f"cleanup: {kept} .png files deleted upstream after their local copies re-hashed; "
               f"the mirror keeps them (e.g. {cleaned[0]['target']})")
    for r in by_plugin.get("summary_backfill", [])[:3]:
        before = set(jsontext.loads(r["before"] or "{}"))
        after = jsontext.loads(r["after"] or "{}")
        added = sorted(k for k in after if k not in before and not k.startswith("_"))
        detail(f"summary_backfill: {r['target']}: restored {', '.join(added) or 'values'} from history -> {r['result']}")
    export = work / "export"
    if export.exists() and since == 0:
        files = [p for p in export.rglob("*") if p.is_file()]
        detail(f"export: {len(files)} files in {shown(export)} (runs, history and system metrics; csv, parquet)")


def simulate_activity(up: Any, entity: str, project: str) -> list[str]:
    """What a team does between two passes: a running run finishes, a new sweep run beats the best."""
    from ..ids import run_storage_id
    from ..models import Run
    from ..times import utcnow, wandb_time

    cat = up.catalog
    ppk = cat.project_pk(entity, project)
    now = wandb_time()
    out = []
    running = cat.query_one("SELECT * FROM runs WHERE project_pk = ? AND state = 'running' ORDER BY pk LIMIT 1", [ppk])
    last = [r for _, r in up.history.rows(running["pk"], min_step=up.history.last_step(running["pk"]))][-1]
    rows = []
    for k in range(1, 61):
        row = dict(last, _step=last["_step"] + k, _runtime=last["_runtime"] + 1.5 * k)
        row["loss"] = round(last["loss"] * (1 - k / 200), 6)
        rows.append(row)
    up.history.append(running["pk"], ((r["_step"], json.dumps(r)) for r in rows))
    summary = dict(jsontext.loads(running["summary"]), **{k: v for k, v in rows[-1].items()})
    keys = jsontext.loads(running["history_keys"])
    keys["lastStep"] = rows[-1]["_step"]
    with cat.transaction() as conn:
        conn.execute("UPDATE runs SET state = 'finished', summary = ?, history_keys = ?, last_step = ?, "
                     "history_line_count = history_line_count + ?, heartbeat_at = ?, updated_at = ? WHERE pk = ?",
                     [jsontext.dumps(summary), jsontext.dumps(keys), rows[-1]["_step"], len(rows), now, now, running["pk"]])
    out.append(f"run {running['run_id']} finished with {len(rows)} more history rows")

    sweep = cat.query_one("SELECT * FROM sweeps WHERE project_pk = ? LIMIT 1", [ppk])
    metric = sweep["metric_name"]
    best = cat.query_one(
        "SELECT * FROM runs WHERE project_pk = ? AND sweep_name = ? AND state = 'finished' "
        f"ORDER BY json_extract(summary, '$.\"{metric}\"') ASC LIMIT 1", [ppk, sweep["name"]])
    new = Run.from_row(best)
    new.run_id = "sweep-new-best"
    new.storage_id = run_storage_id(entity, project, new.run_id)
    new.display_name = "lucky-comet-99"
    s = jsontext.loads(best["summary"])
    s[metric] = round(s[metric] * 0.5, 6)
    new.summary = json.dumps(s)
    new.created_at = new.heartbeat_at = new.updated_at = now
    new.tags = "[]"
    npk = cat.upsert_run(ppk, new)
    with cat.transaction() as conn:
        up.history.append(npk, up.history.texts(best["pk"]))
        conn.execute("UPDATE sweeps SET run_count = run_count + 1, best_loss = ?, updated_at = ? WHERE pk = ?",
                     [s[metric], utcnow(), sweep["pk"]])
    up.history.compact_due()  # both runs are finished: their history into segments, as a sync pass leaves it
    out.append(f"new sweep run {new.run_id} reached {metric}={s[metric]}, better than {best['run_id']}")
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
