"""Heal a store: deep-verify, set damaged objects aside, fetch them (and missing ones) again.

A damaged object (content or size wrong, a symlink, unreadable) is moved into
`quarantine/objects/` under the store, never deleted: it may be the only copy left of something.
Each damaged or missing object is fetched again from upstream through any catalog reference that
still resolves there (a run file version, an artifact file, an artifact manifest), verified against
its md5 and size like every download. What upstream no longer has (a file changed or deleted since,
an artifact version gone) is reported by its upstream path: `entity/project/run/file`,
`entity/project/collection:vN/path`, `entity/project/collection:vN (manifest)`.
The store is deep-verified again at the end: `repair` succeeds only if it then verifies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .client import ApiError, Problem
from .errors import IntegrityError
from .store import Store
from .verify import VerifyReport, verify_store

log = logging.getLogger("wandb_mirror.repair")


@dataclass
class Ref:
    """One catalog reference to an object, with what it takes to fetch it again."""

    kind: str                  # "file" | "artifact_file" | "manifest"
    entity: str
    project: str
    name: str                  # run id or collection name
    path: str = ""             # file name or artifact entry path
    version: int = 0           # artifact version index
    artifact_id: str = ""
    size: int | None = None

    @property
    def upstream_path(self) -> str:
        if self.kind == "file":
            return f"{self.entity}/{self.project}/{self.name}/{self.path}"
        where = f"{self.entity}/{self.project}/{self.name}:v{self.version}"
        return f"{where}/{self.path}" if self.kind == "artifact_file" else f"{where} (manifest)"


@dataclass
class RepairReport:
    quarantined: list[str] = field(default_factory=list)
    refetched: list[str] = field(default_factory=list)     # object keys fetched again
    lost: list[str] = field(default_factory=list)          # upstream paths upstream no longer has
    failed: list[str] = field(default_factory=list)        # fetches that failed for another reason
    before: VerifyReport | None = None
    after: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return self.after is not None and self.after.ok


def references(store: Store, md5: str) -> list[Ref]:
    """Every catalog reference to object `md5`, run files first (their listing is cheapest)."""
    cat = store.catalog
    refs = [Ref("file", r["entity"], r["project"], r["run"], r["name"], size=r["size"]) for r in cat.query(
        "SELECT p.entity, p.name AS project, r.run_id AS run, v.name, v.size FROM file_versions v "
        "JOIN runs r ON r.pk = v.run_pk JOIN projects p ON p.pk = r.project_pk WHERE v.md5 = ?", [md5])]
    arts = ("SELECT p.entity, p.name AS project, c.name AS collection, a.version_index, a.id{extra} "
            "FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
            "JOIN projects p ON p.pk = c.project_pk")
    refs += [Ref("artifact_file", r["entity"], r["project"], r["collection"], r["path"], r["version_index"], r["id"],
                 r["size"]) for r in cat.query(
        arts.format(extra=", f.path, f.size") + " JOIN artifact_files f ON f.artifact_pk = a.pk WHERE f.md5 = ?", [md5])]
    refs += [Ref("manifest", r["entity"], r["project"], r["collection"], "", r["version_index"], r["id"])
             for r in cat.query(arts.format(extra="") + " WHERE a.manifest_md5 = ?", [md5])]
    return refs


def quarantine(store: Store, md5: str, why: str) -> str | None:
    """Move a damaged object aside (never delete it); returns where it went."""
    dst = store.objects.quarantine(md5, why)
    if dst is not None:
        log.warning("object %s (%s) moved to %s", md5, why, dst)
    return dst


class _Fetcher:
    """Fetches objects again through the client, listing each run's files or artifact's URLs once."""

    def __init__(self, store: Store, client: Any):
        self.store = store
        self.client = client
        self._run_files: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._art_urls: dict[tuple[str, str, str, int], dict[str, str]] = {}

    def fetch(self, md5: str, ref: Ref) -> bool:
        """True when the object is back and verified; False when upstream no longer has these bytes."""
        objects = self.store.objects
        if ref.kind == "file":
            key = (ref.entity, ref.project, ref.name)
            if key not in self._run_files:
                problems: list[Problem] = []
                self._run_files[key] = {rf.file.name: rf for rf in
                                        self.client.run_files(ref.entity, ref.project, ref.name, problems)}
            rf = self._run_files[key].get(ref.path)
            if rf is None or rf.file.md5 != md5 or not (rf.direct_url or rf.url):
                return False
            self.client.fetch_to_store(rf.direct_url or rf.url, objects, operation="repair file", expected_md5=md5,
                                       expected_size=ref.size)
            return True
        if ref.kind == "artifact_file":
            akey = (ref.entity, ref.project, ref.name, ref.version)
            if akey not in self._art_urls:
                self._art_urls[akey] = self.client.artifact_file_urls(ref.entity, ref.project, ref.name, ref.version)
            url = self._art_urls[akey].get(ref.path)
            if not url:
                return False
            self.client.fetch_to_store(url, objects, operation="repair artifact file", expected_md5=md5,
                                       expected_size=ref.size)
            return True
        url = self.client.manifest_url(ref.artifact_id)
        if not url:
            return False
        objects.put_bytes(self.client.fetch_bytes(url, operation="repair manifest"), expected_md5=md5)
        return True


def repair_store(store: Store, client: Any, *, say: Callable[[str], None] = print) -> RepairReport:
    before = verify_store(store, deep=True)
    rep = RepairReport(before=before)
    damaged, missing = dict(before.damaged), set(before.missing)
    for md5, why in sorted(damaged.items()):
        moved = quarantine(store, md5, why)
        if moved is not None:
            rep.quarantined.append(moved)
            say(f"quarantined {md5} ({why}): {moved}")
    fetcher = _Fetcher(store, client)
    for md5 in sorted(set(damaged) | missing):
        refs = references(store, md5)
        if not refs:
            continue  # an unreferenced object: nothing needs it back
        done = False
        for ref in refs:
            try:
                done = fetcher.fetch(md5, ref)
            except (ApiError, IntegrityError) as e:
                rep.failed.append(f"{ref.upstream_path}: {e}")
                say(f"could not fetch {ref.upstream_path}: {e}")
                continue
            if done:
                rep.refetched.append(md5)
                say(f"fetched again: {ref.upstream_path}")
                break
        if not done:
            for ref in refs:
                rep.lost.append(ref.upstream_path)
                say(f"upstream no longer has {ref.upstream_path}")
    rep.after = verify_store(store, deep=True)
    return rep
