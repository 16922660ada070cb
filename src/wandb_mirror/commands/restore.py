"""Re-create the mirrored projects on a W&B server: runs with their ids, history, events and files,
artifact versions with their aliases and digests, sweeps; then the organization side: registries,
their collections and links with aliases, and automations whose integrations exist on the target.

Examples:
  wandb-mirror restore --store /var/lib/wandb-mirror --to https://wandb.example.com --dry-run
  wandb-mirror restore --store DIR --to https://api.wandb.ai --project vision=vision-restored
  wandb-mirror restore --store DIR --to https://wandb.new.example.com --entity new-team

The target's key comes from WANDB_API_KEY, else ~/.netrc for the target's host. A journal of what
was sent (default: DIR/restore/<target host>.jsonl) makes a restore that was stopped at any moment
finish without duplicates when it is started again. What W&B does not let a client set (creation
times, the user who logged a run, sweep names, ...) is listed in docs/restore.md; what it does not
let a client create (integrations' secrets, team members, ...) is printed, one line per kind.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import UsageError
from .store_args import add_store_arguments, open_store_from_args

if TYPE_CHECKING:
    from ..restore.org import OrgRestore


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p, help="the store to restore from")
    p.add_argument("--to", required=True, metavar="BASE_URL", help="the target W&B server, e.g. https://api.wandb.ai")
    p.add_argument("--project", action="append", default=[], metavar="SRC[=DST]",
                   help="restore only this project, optionally under a new name; SRC and DST are PROJECT or "
                        "ENTITY/PROJECT (repeatable; default: every project in the store)")
    p.add_argument("--entity", metavar="ENTITY", help="put every restored project under this existing entity")
    p.add_argument("--include-deleted", action="store_true",
                   help="also restore what upstream deleted (runs, files, artifact versions, sweeps) as live")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing (needs no key)")
    p.add_argument("--journal", metavar="FILE",
                   help="journal file (default: STORE/restore/<target host>.jsonl, STORE the store's path)")
    p.add_argument("--organization", metavar="ORG",
                   help="the target organization for registries (default: the organization of the entity the "
                        "projects are restored into)")
    p.add_argument("--rate-limit", type=float, default=0.0, metavar="N",
                   help="at most N requests per second to the target (default: no limit; 429s are honoured)")


def journal_path(store: Path, base_url: str) -> Path:
    host = urlsplit(base_url).netloc or base_url
    return store / "restore" / (re.sub(r"[^A-Za-z0-9._-]", "_", host) + ".jsonl")


def run(args: argparse.Namespace) -> int:
    from ..restore.plan import plan_project, resolve_moves
    from ..store.reader import StoreReader

    if not args.to.startswith(("http://", "https://")):
        raise UsageError(f"--to must be a http:// or https:// URL, got {args.to!r}")
    if args.entity is not None and not args.entity.strip():
        raise UsageError("--entity must not be empty")
    with open_store_from_args(args, readonly=True) as store:
        reader = StoreReader(store, include_deleted=args.include_deleted)
        moves = resolve_moves(reader, args.project, args.entity)
        if args.dry_run:
            print(f"restore plan (dry run) for {args.to}:")
            for m in moves:
                print("  " + plan_project(reader, m).line())
            ids = {a.pk: "" for m in moves for a in reader.artifacts(m.source.pk)}
            for line in _org_restore(args, store, moves, ids, None, None).plan_lines():
                print("  " + line)
            return 0
        return _restore(args, store, reader, moves)


def _org_restore(args: argparse.Namespace, store: Any, moves: list, artifact_ids: dict[int, str],
                 target: Any, journal: Any) -> OrgRestore:
    from ..restore.org import OrgRestore
    from ..store.org_reader import OrgStoreReader

    return OrgRestore(OrgStoreReader(store, include_deleted=args.include_deleted), target, journal,
                      moves, artifact_ids, args.organization,
                      progress=lambda s: print(f"  {s}", file=sys.stderr) if args.verbose else None)


def _restore(args: argparse.Namespace, store: object, reader: object, moves: list) -> int:
    from ..client.auth import resolve_api_key
    from ..client.transport import Transport
    from ..restore.journal import Journal
    from ..restore.org_target import OrgTarget
    from ..restore.runner import ProjectRestore
    from ..restore.target import Target

    key = resolve_api_key(args.to)
    base = args.to.rstrip("/")
    journal = Journal(Path(args.journal) if args.journal else journal_path(store.path, base))  # type: ignore[attr-defined]
    transport = Transport(base, key, rate_limit=args.rate_limit)
    target = Target(transport)
    artifact_ids: dict[int, str] = {}
    try:
        for m in moves:
            job = ProjectRestore(reader, target, journal, m, base,  # type: ignore[arg-type]
                                 progress=lambda s: print(f"  {s}", file=sys.stderr) if args.verbose else None)
            c = job.run()
            print(f"{m.src} -> {m.dst}: {c.runs} runs, {c.history_rows} history rows, {c.events} event rows, "
                  f"{c.files} files, {c.artifact_versions} artifact versions, {c.sweeps} sweeps written "
                  f"({c.bytes / 1e6:.1f} MB); {c.skipped} steps already done")
            artifact_ids.update(job.artifact_ids)
        org = _org_restore(args, store, moves, artifact_ids, OrgTarget(transport), journal)
        oc = org.run()
        print(f"organization side: {oc.registries} registries, {oc.links} links, {oc.collections} collection "
              f"descriptions and tags, {oc.automations} automations written; {oc.skipped} steps already done")
        for line in [*oc.lines(), *org.static_lines()]:
            print(line)
    finally:
        transport.close()
        journal.close()
    print(f"restore finished; journal: {journal.path}")
    return 0
