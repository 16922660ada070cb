"""The history of every run as one hive-partitioned Parquet dataset, for DuckDB, pandas, Spark...

    OUT/entity=E/project=P/run=R/part-00000.parquet    a history segment (a hard link: no copy)
    OUT/entity=E/project=P/run=R/tail.parquet          rows not compacted yet (a running run)

The parts are the store's own segment objects, hard-linked into place (a symbolic link where the
output is on another filesystem), so the dataset costs no bytes and is as verified as the store.
Partition values are percent-encoded (`segment_encoding="uri"`, pyarrow's default) when a name holds
`/`, `=`, `%`, a space, a backslash or a control character (`fsnames.hive_part`; a run may be called
`..` upstream, and the catalog keeps it so); the command prints each name it escaped. Running it again brings the directory up to date: new parts are linked,
parts a compaction replaced are removed, everything else is left alone; only directories this
module made (marked by `_wandb_mirror_dataset`) are ever touched. Tombstoned runs are left out.
docs/history.md has the SQL.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .fsnames import hive_part
from .store import Store, segments
from .store.history import Segment
from .store.objects import require_local

MARKER = "_wandb_mirror_dataset"


@dataclass
class DatasetReport:
    runs: int = 0
    parts: int = 0
    linked: int = 0
    removed: int = 0
    tails: int = 0
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (name, directory) of every escaped name


def _link(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        os.symlink(src.resolve(), tmp)
    os.replace(tmp, dst)


def build(store: Store, out: Path, *, project: tuple[str, str] | None = None) -> DatasetReport:
    """Create or refresh the dataset under `out` (see the module docstring)."""
    if not segments.available():
        raise UsageError("the history dataset is Parquet: install the `parquet` extra (pip install 'wandb-mirror[parquet]')")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UsageError(f"{out} is not empty and is not a history dataset: give a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by wandb-mirror dataset; parts are links into the store\n")
    rep = DatasetReport()
    sql = ("SELECT r.pk, p.entity, p.name AS project, r.run_id FROM runs r JOIN projects p ON p.pk = r.project_pk "
           "WHERE r.tombstoned_at IS NULL")
    args: list[str] = []
    if project:
        sql += " AND p.entity = ? AND p.name = ?"
        args = list(project)
    for pk, entity, proj, run_id in store.catalog.conn.execute(sql, args).fetchall():
        parts = [(key, name, hive_part(key, name)) for key, name in (("entity", entity), ("project", proj),
                                                                       ("run", run_id))]
        for key, name, part in parts:
            if part != f"{key}={name}" and (name, part) not in rep.mapped:
                rep.mapped.append((name, part))
        run_dir = out.joinpath(*(part for _, _, part in parts))
        want: dict[str, Path] = {}
        linked = _linkable(store, pk)
        for i, seg in enumerate(linked):
            want[f"part-{i:05d}-{seg.md5[:12]}.parquet"] = require_local(store.objects, "the history dataset").path(seg.md5)
        tail = [(s, r) for s, r in store.history.rows(pk, min_step=linked[-1].last_step + 1 if linked else None)]
        if not want and not tail:
            continue
        rep.runs += 1
        run_dir.mkdir(parents=True, exist_ok=True)
        for fname, src in want.items():
            rep.parts += 1
            if not (run_dir / fname).exists():
                _link(src, run_dir / fname)
                rep.linked += 1
        if tail:
            tmp = run_dir / ".tail.parquet.tmp"
            tmp.write_bytes(segments.encode(tail))
            os.replace(tmp, run_dir / "tail.parquet")
            want["tail.parquet"] = tmp
            rep.tails += 1
        for old in run_dir.glob("*.parquet"):
            if old.name not in want:
                old.unlink()
                rep.removed += 1
    return rep


def _linkable(store: Store, run_pk: int) -> list[Segment]:
    """The run's segments that end within its lastStep (linked whole); what follows them, up to
    lastStep, is written as the run's tail part."""
    stop = store.history.stop(run_pk)
    return [s for s in store.history.segments(run_pk) if stop is None or s.last_step < stop]
