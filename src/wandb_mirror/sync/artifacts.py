"""Artifacts: a project's types and collections, a collection's versions, one verified version.

Types and their collections are listed every pass (cheap); the versions of a collection are listed
when it is new, its updatedAt moved, or on reconcile. A version is mirrored once: manifest fetched,
its artifact digest recomputed and compared, every non-reference file verified against its manifest
digest (md5, or XXH128 when extra.alg says so), then recorded in one transaction
(`Catalog.record_artifact_version`). A known version only has its aliases, tags, description and
metadata refreshed, and its links to the runs that logged or used it added.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .. import events as ev
from ..client import RemoteArtifact, RemoteCollection
from ..client.convert import md5_b64_to_hex
from ..digests import ALGORITHMS, manifest_digest
from ..models import ArtifactEntry
from ..name_rules import file_path_problem, identifier_problem
from ..store.sync_records import ArtifactVersionRecord
from . import changes as ch
from .context import Context, ProjectRef
from .reconcile import Listing, tombstone


def sync_artifacts(cx: Context, proj: ProjectRef, full: bool) -> None:
    """Types, collections and (when needed) versions of a project; tombstone candidates for the
    collections a complete listing no longer holds."""
    listing: Listing[str] = Listing()
    for t in cx.client.artifact_types(proj.entity, proj.name):
        if identifier_problem(t.name):
            cx.ledger.quarantine("artifact_type", f"{proj.where}/{t.name[:200]}", "unsafe type name")
            continue
        cx.catalog.upsert_artifact_type(proj.pk, t.name, id=t.id, description=t.description, created_at=t.created_at)
        if not proj.opts.want_artifact_type(t.name):
            continue
        for rc in cx.client.collections(proj.entity, proj.name, t.name):
            c = rc.collection
            reason = identifier_problem(c.name)
            if reason:
                cx.ledger.quarantine("collection", f"{proj.where}/{c.name[:200]}", f"unsafe collection name: {reason}")
                listing.refused()
                continue
            listing.add(c.name)
            row = cx.catalog.collection_row(proj.pk, c.name)
            changed = (row is None or row["tombstoned_at"] is not None or row["updated_at"] != c.updated_at
                       or row["description"] != c.description or row["tags"] != c.tags)
            if full or changed:
                if sync_collection(cx, proj, rc):
                    cx.catalog.upsert_collection(proj.pk, c)
                else:
                    listing.refused()
    stored = {r["name"]: r for r in cx.catalog.live_collections(proj.pk)}
    for name, row in listing.gone(stored):
        if proj.opts.want_artifact_type(row["type_name"]):
            cx.ledger.tombstone(tombstone("artifact_collections", row["pk"], proj.scope, "collection",
                                          f"{proj.where}/{name}"))


def sync_collection(cx: Context, proj: ProjectRef, rc: RemoteCollection) -> bool:
    """Every version of a collection; True when all were mirrored (so absent ones may be tombstoned)."""
    c = rc.collection
    listing: Listing[str] = Listing()
    with cx.ledger.unit(f"{proj.where}/{c.name}", on_fail=proj.failed) as unit:
        for ra in cx.client.collection_versions(proj.entity, proj.name, c.type_name, c.name):
            listing.add(ra.artifact.id)
            if mirror_artifact(cx, proj, ra) is None and ra.artifact.state == "COMMITTED":
                listing.refused()
    if unit.failed:
        return False
    stored = {r["id"]: r for r in cx.catalog.live_versions(proj.pk, c.name)}
    for _id, row in listing.gone(stored):
        cx.ledger.tombstone(tombstone("artifacts", row["pk"], proj.scope, "artifact",
                                      f"{proj.where}/{c.name}:v{row['version_index']}"))
    return listing.complete


def mirror_artifact(cx: Context, proj: ProjectRef, ra: RemoteArtifact, *, producer: tuple[str, int] | None = None,
                    consumer_pk: int | None = None) -> int | None:
    """Mirror one committed artifact version (or refresh its aliases); returns its pk, None on failure.

    `producer` (run name, run pk) / `consumer_pk` link the version to the run that logged / used it,
    in the same transaction that records (or refreshes) the version."""
    a = ra.artifact
    where = f"{ra.entity}/{ra.project}/{a.collection_name}:v{a.version_index}"
    if ra.problems:
        cx.ledger.problems(ra.problems)
        return None
    if a.state != "COMMITTED":
        return None
    scope = ch.Scope(cx.ledger.pass_id, ra.entity or proj.entity, ra.project or proj.name)
    with cx.artifact_lock(a.id):
        row = cx.catalog.artifact_row(a.id)
        if row and row["manifest_md5"] and cx.objects.has(row["manifest_md5"]):
            return _refresh(cx, scope, ra, row, producer, consumer_pk)
        pk: int | None = None
        with cx.ledger.unit(where, quarantine=("artifact", where, "")):
            pk = _mirror_new(cx, scope, ra, producer, consumer_pk, where)
        return pk


def _refresh(cx: Context, scope: ch.Scope, ra: RemoteArtifact, row: dict[str, Any],
             producer: tuple[str, int] | None, consumer_pk: int | None) -> int:
    a = ra.artifact
    pk = int(row["pk"])
    producer_pk = producer[1] if producer else None
    old_aliases = json.loads(row["aliases"] or "[]")
    new_aliases = a.alias_list()
    if (old_aliases == new_aliases and row["tags"] == a.tags and row["description"] == a.description
            and row["metadata"] == a.metadata and row["tombstoned_at"] is None):
        if producer is not None or consumer_pk is not None:
            cx.catalog.link_artifact(pk, producer_run_pk=producer_pk, consumer_run_pk=consumer_pk)
        return pk
    changes: list[ch.Change] = []
    if old_aliases != new_aliases:
        added = [x for x in new_aliases if x not in old_aliases]
        removed = [x for x in old_aliases if x not in new_aliases]
        ch.emit(changes, scope, ev.ArtifactAliasesChanged(
            artifact_id=a.id, collection=a.collection_name, version_index=a.version_index, added=added,
            removed=removed, aliases=new_aliases))
    cx.catalog.refresh_artifact(pk, a, producer_run_pk=producer_pk, consumer_run_pk=consumer_pk, changes=changes)
    return pk


def _fetch_manifest(cx: Context, url: str, a_digest: str | None, algorithm: str
                    ) -> tuple[bytes, list[ArtifactEntry], str | None, str | None]:
    """(raw bytes, entries, reason, detail): reason is None when the manifest matches the digest.
    Its bytes have no digest of their own, so a body garbled in transit shows up as unparsable or as
    a digest mismatch: fetch it again (bounded, like file downloads)."""
    reason = detail = None
    entries: list[ArtifactEntry] = []
    raw = b""
    for _attempt in range(max(1, cx.client.t.retry.integrity_attempts)):
        raw = cx.client.fetch_bytes(url, operation="GET manifest")
        reason = detail = None
        try:
            manifest = json.loads(raw)
        except ValueError as err:
            reason, detail = f"manifest is not JSON: {err}", raw[:4096].decode(errors="replace")
            continue
        entries, problem = parse_manifest(manifest)
        if problem:
            reason, detail = f"manifest rejected: {problem}", raw[:4096].decode(errors="replace")
            continue
        computed = manifest_digest({x.path: x.digest for x in entries}, algorithm)
        if a_digest != computed:
            reason = f"artifact digest mismatch: server says {a_digest}, manifest gives {computed}"
            continue
        break
    return raw, entries, reason, detail


def _mirror_new(cx: Context, scope: ch.Scope, ra: RemoteArtifact, producer: tuple[str, int] | None,
                consumer_pk: int | None, where: str) -> int | None:
    client, ledger, objects = cx.client, cx.ledger, cx.objects
    a = ra.artifact
    # 1. the manifest: fetched, parsed, checked against the artifact digest before anything is kept
    url = client.manifest_url(a.id)
    if not url:
        ledger.quarantine("artifact", where, "upstream has no manifest for this version")
        return None
    algorithm = a.digest_algorithm or "MANIFEST_MD5"
    if algorithm not in ALGORITHMS:
        ledger.quarantine("artifact", where, f"unknown digest algorithm {algorithm!r}")
        return None
    raw, entries, reason, detail = _fetch_manifest(cx, url, a.digest, algorithm)
    if reason:
        ledger.quarantine("artifact", where, reason, detail)
        return None

    # 2. every non-reference file, verified against its manifest digest while it streams
    need: list[ArtifactEntry] = []
    for x in entries:
        if x.ref is not None:
            continue
        if x.md5 and objects.has(x.md5):
            continue
        if x.md5 is None:  # XXH128 entry: known from an earlier version?
            known = cx.catalog.md5_of_xxh128(x.digest, x.size)
            if known and objects.has(known):
                x.md5 = known
                continue
        need.append(x)
    if need:
        urls = client.artifact_file_urls(ra.entity, ra.project, a.collection_name, a.version_index)
        for x in need:
            file_url = urls.get(x.path)
            if not file_url:
                # the manifest and the upstream's file listing disagree: report the entry by its path
                ledger.quarantine("artifact_file", f"{where}/{x.path}",
                                  "the manifest lists this file but upstream gives no download URL for it")
                return None
            xx = x.digest if "XXH128" in (x.extra or "") else None
            with ledger.unit(where, quarantine=("artifact_file", f"{where}/{x.path}",
                                                "download failed verification: ")) as unit:
                info = client.fetch_to_store(file_url, objects, operation="GET artifact file", expected_md5=x.md5,
                                             expected_size=x.size, xxh128_b64=xx)
            if unit.failed:
                return None
            x.md5 = info.md5
            ledger.stats.add("artifact_files")
            ledger.stats.add("artifact_bytes", info.size)
            cx.progress.add(bytes=info.size)
    a.manifest_md5 = objects.put_bytes(raw).md5

    # 3. one transaction: collection, type, version, entries, link, change event
    ppk = cx.project_pk(ra.entity, ra.project, id=ra.project_id, internal_id=ra.project_internal_id)
    changes: list[ch.Change] = []
    ch.emit(changes, scope, ev.ArtifactVersionMirrored(
        artifact_id=a.id, collection=a.collection_name, type_name=a.type_name, version_index=a.version_index,
        digest=a.digest, aliases=a.alias_list(), size=a.size, file_count=len(entries),
        run=producer[0] if producer else None))
    apk = cx.catalog.record_artifact_version(ArtifactVersionRecord(
        project_pk=ppk, artifact=a, entries=entries, producer_run_pk=producer[1] if producer else None,
        consumer_run_pk=consumer_pk, changes=changes))
    ledger.stats.add("artifacts")
    cx.progress.add(artifacts=1)
    return apk


def parse_manifest(manifest: Any) -> tuple[list[ArtifactEntry], str | None]:
    """Manifest v1 -> entries (md5 hex filled for md5 entries). Rejects paths name_rules refuses, and bad fields."""
    if not isinstance(manifest, dict):
        return [], "not a JSON object"
    if manifest.get("version") != 1:
        return [], f"unsupported manifest version {manifest.get('version')!r}"
    contents = manifest.get("contents")
    if not isinstance(contents, dict):
        return [], "no contents"
    out: list[ArtifactEntry] = []
    for path, entry in contents.items():
        reason = file_path_problem(path)
        if reason:
            return [], f"refused entry path {path[:200]!r}: {reason}"
        if not isinstance(entry, dict):
            return [], f"entry {path!r} is not an object"
        digest = entry.get("digest")
        size = entry.get("size", 0)
        if not isinstance(digest, str) or not digest:
            return [], f"entry {path!r} has no digest"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return [], f"entry {path!r} has an invalid size {size!r}"
        ref = entry.get("ref")
        if ref is not None and not isinstance(ref, str):
            return [], f"entry {path!r} has an invalid ref"
        extra = entry.get("extra") or {}
        if not isinstance(extra, dict):
            return [], f"entry {path!r} has an invalid extra"
        md5 = None
        if ref is None:
            if extra.get("alg") == "XXH128":
                try:
                    if len(base64.b64decode(digest, validate=True)) != 16:
                        raise ValueError
                except ValueError:
                    return [], f"entry {path!r} has an invalid XXH128 digest"
            else:
                md5 = md5_b64_to_hex(digest)
                if md5 is None:
                    return [], f"entry {path!r} has an invalid md5 digest {digest[:40]!r}"
        birth = entry.get("birthArtifactID")
        out.append(ArtifactEntry(path=path, digest=digest, size=size, md5=md5, ref=ref,
                                 birth_artifact_id=birth if isinstance(birth, str) else None,
                                 extra=json.dumps(extra)))
    return out, None
