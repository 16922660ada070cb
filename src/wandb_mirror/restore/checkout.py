"""`checkout`: a run's or an artifact version's files out of the store into a folder, every byte verified.

A run gives its files under their names, plus `history.parquet`, `events.parquet` and `run.json`
(metadata, config, summary); an artifact version gives its files laid out by their manifest paths.
Items upstream deleted are included (the mirror kept them to be given back).

Files are hard links to the store's objects when the folder is on the same filesystem (objects are
read-only, so a link cannot be used to damage the store by accident) and copies otherwise; each
object is re-hashed before it is linked, and a copy is hashed as it is written. Names are kept
exactly in the store, whatever upstream allowed; one that is not a plain relative path here (`..`,
a leading or doubled `/`, a backslash, a control character, `%`, over-long, or a name checkout
itself writes) is mapped by `fsnames.safe_relpath` (percent-encoding, one to one), and every
mapping is reported.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, UsageError
from ..fsnames import safe_relpath
from ..hooks.tables import atomic_write, flatten_columns, have_parquet, write_table
from ..store import Store
from ..store.objects import require_local
from ..store.reader import StoreReader

RUN_OUTPUTS = ("history.parquet", "events.parquet", "run.json")


@dataclass
class CheckoutReport:
    files: int = 0
    bytes: int = 0
    linked: int = 0
    copied: int = 0
    mapped: list[tuple[str, str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


def _dest_relpath(name: str, reserved: tuple[str, ...] = ()) -> str:
    """Where `name` goes inside the destination: fsnames' one-to-one safe path, under files/ when
    it would take the place of a file checkout itself writes."""
    rel = safe_relpath(name)
    return f"files/{rel}" if rel in reserved else rel


def _parse(path: str) -> tuple[str, str, str]:
    """ENTITY/PROJECT/RUN_ID or ENTITY/PROJECT/NAME:VERSION -> (entity, project, last part)."""
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise UsageError(f"PATH must be ENTITY/PROJECT/RUN_ID or ENTITY/PROJECT/ARTIFACT:VERSION, got {path!r}")
    return parts[0], parts[1], parts[2]


class Checkout:
    def __init__(self, store: Store, dest: Path, *, copy: bool = False):
        self.store = store
        self.objects = store.objects
        self.reader = StoreReader(store, include_deleted=True)
        self.dest = dest
        self.copy = copy
        self.report = CheckoutReport()

    def _prepare_dest(self) -> None:
        if self.dest.exists() and (not self.dest.is_dir() or any(self.dest.iterdir())):
            raise UsageError(f"DEST {self.dest} exists and is not an empty directory (checkout never overwrites)")
        self.dest.mkdir(parents=True, exist_ok=True)

    def run(self, path: str) -> CheckoutReport:
        entity, project, last = _parse(path)
        stored = self.reader.project(entity, project)
        if stored is None:
            raise UsageError(f"the store holds no project {entity}/{project}")
        # a run id may hold ':' (the mirror keeps any run id W&B has): a run of that id comes first
        run = self.reader.run(stored.pk, last)
        name, sep, version = last.partition(":")
        if run is None and not sep:
            raise UsageError(f"the store holds no run {entity}/{project}/{last}")
        if run is not None:
            if not have_parquet():
                raise UsageError("checkout of a run writes history.parquet and needs pyarrow: "
                                 "pip install 'wandb-mirror[parquet]'")
            self._prepare_dest()
            self._run(run)
        else:
            if not (name and version):
                raise UsageError(f"artifact PATH must be ENTITY/PROJECT/NAME:VERSION (vN or an alias), got {path!r}")
            art = self.reader.artifact_version(stored.pk, name, version)
            if art is None:
                raise UsageError(f"the store holds no artifact version {entity}/{project}/{name}:{version}")
            self._prepare_dest()
            for e in self.reader.entries(art.pk):
                if e.md5 is None:
                    self.report.mapped.append((e.path, f"(reference {e.ref}: not in the store, skipped)"))
                    continue
                self._place(e.path, e.md5, e.size)
        return self.report

    def _run(self, stored: Any) -> None:
        for f in self.reader.files(stored.pk):
            self._place(f.file.name, f.file.md5, f.file.size, reserved=RUN_OUTPUTS)
        rows = [json.loads(r) for _, r in self.reader.history(stored.pk)]
        write_table(self.dest / "history.parquet", rows, "parquet", columns=flatten_columns(rows, first=["_step"]))
        events = [json.loads(r) for r in self.reader.events(stored.pk)]
        write_table(self.dest / "events.parquet", events, "parquet",
                    columns=flatten_columns(events, first=["_timestamp", "_runtime"]))
        run = stored.run
        doc = {k: v for k, v in run.to_row().items() if k not in ("config", "summary", "system_metrics", "tags",
                                                                   "history_keys")}
        doc.update(config=run.config_values(), raw_config=json.loads(run.config or "{}"),
                   summary=run.summary_values(), tags=run.tag_list(), deleted_upstream=stored.deleted)
        with atomic_write(self.dest / "run.json", "w") as fh:
            json.dump(doc, fh, indent=2, allow_nan=True)
        self.report.written += list(RUN_OUTPUTS)

    def _place(self, name: str, md5: str, size: int, reserved: tuple[str, ...] = ()) -> None:
        rel = base = _dest_relpath(name, reserved)
        if not self._free(rel):
            # a reserved name's files/ twin, or a file `d` beside a file `d/x` (upstream may hold
            # both): the later one goes flat, with a suffix
            base = rel.replace("/", "%2F")
            rel, n = base, 1
            while not self._free(rel):
                rel, n = f"{base}~{n}", n + 1
        if rel != name:
            self.report.mapped.append((name, rel))
        out = self.dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        src = require_local(self.objects, "checkout").path(md5)
        if not self.copy:
            info = self.objects.hash_object(md5)
            if info.md5 != md5 or info.size != size:
                raise IntegrityError(f"{name}: the store's object {md5} is damaged; run verify/repair")
            try:
                os.link(src, out)
                self.report.linked += 1
                self._count(size)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise
        h = hashlib.md5()
        with open(src, "rb") as fin, atomic_write(out, "wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
            if h.hexdigest() != md5:  # raising inside atomic_write leaves nothing behind
                raise IntegrityError(f"{name}: the store's object {md5} is damaged; run verify/repair")
        self.report.copied += 1
        self._count(size)

    def _free(self, rel: str) -> bool:
        """True when a file can be created at `rel`: nothing there, and no file where a parent would go."""
        path = self.dest / rel
        if path.exists() or path.is_symlink():
            return False
        return all(not (self.dest / p).exists() or (self.dest / p).is_dir() for p in Path(rel).parents)

    def _count(self, size: int) -> None:
        self.report.files += 1
        self.report.bytes += size
