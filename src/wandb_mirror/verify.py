"""Store verification: every catalog reference resolves to an object; deep mode re-hashes every
object, re-checks every artifact manifest entry and artifact digest, and runs SQLite's integrity
check on the catalog.

Objects that are damaged (content or size wrong, a symlink, unreadable) and objects the catalog
references but the store lacks are listed by key in the report, for `repair`."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from . import ids
from .digests import manifest_digest
from .store import Store, segments


@dataclass
class VerifyReport:
    references: int = 0
    objects_checked: int = 0
    bytes_checked: int = 0
    artifacts_checked: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)  # object key -> why it cannot be trusted
    missing: set[str] = field(default_factory=set)         # referenced object keys the store lacks

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(store: Store, *, deep: bool = False, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    rep = VerifyReport()
    cat, objs = store.catalog, store.objects
    local_path = getattr(objs, "path", None)  # symlinks exist only in a local objects folder
    expected_size: dict[str, int] = {}
    needs_xxh: set[str] = set()
    for md5, size, what in cat.conn.execute(
        "SELECT md5, size, 'run file ' || p.entity || '/' || p.name || '/' || r.run_id || '/' || v.name "
        "FROM file_versions v JOIN runs r ON r.pk = v.run_pk JOIN projects p ON p.pk = r.project_pk "
        "UNION ALL SELECT f.md5, f.size, 'artifact file ' || a.id || ' ' || f.path "
        "FROM artifact_files f JOIN artifacts a ON a.pk = f.artifact_pk WHERE f.md5 IS NOT NULL "
        "UNION ALL SELECT manifest_md5, NULL, 'manifest of artifact ' || id FROM artifacts WHERE manifest_md5 IS NOT NULL "
        "UNION ALL SELECT s.md5, s.size, 'history segment ' || p.entity || '/' || p.name || '/' || r.run_id || '@' || "
        "s.first_step FROM history_segments s JOIN runs r ON r.pk = s.run_pk JOIN projects p ON p.pk = r.project_pk"
    ):
        rep.references += 1
        try:
            present = objs.has(md5)
        except ValueError:
            rep.problems.append(f"{what}: malformed object key {md5!r}")
            continue
        if local_path is not None and local_path(md5).is_symlink():
            # an object must be the store's own file: a link can point anywhere and change under us
            rep.problems.append(f"{what}: object {md5} is a symlink")
            rep.damaged.setdefault(md5, "a symlink")
            continue
        if not present:
            rep.problems.append(f"{what}: object {md5} is missing")
            rep.missing.add(md5)
            continue
        if size is not None:
            expected_size.setdefault(md5, size)
            actual = objs.size(md5)
            if actual != size:
                rep.problems.append(f"{what}: object {md5} has {actual} bytes, catalog says {size}")
                rep.damaged.setdefault(md5, f"{actual} bytes instead of {size}")
    for (md5,) in cat.conn.execute("SELECT md5 FROM artifact_files WHERE md5 IS NOT NULL AND extra LIKE '%XXH128%'"):
        needs_xxh.add(md5)

    if not deep:
        return rep

    # deep: the catalog's own pages, then every object on disk once (referenced or not), then manifests
    try:
        check = [r[0] for r in cat.conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as e:
        check = [str(e)]
    if check != ["ok"]:
        rep.problems += [f"catalog: SQLite integrity check: {line}" for line in check[:20]]
    xxh_of: dict[str, str] = {}
    all_objects = list(objs.iter_objects())
    for n, obj in enumerate(all_objects, 1):
        key = obj.md5
        if local_path is not None and local_path(key).is_symlink():
            if key not in rep.damaged:
                rep.problems.append(f"object {key}: is a symlink")
                rep.damaged[key] = "a symlink"
            continue
        try:
            info = objs.hash_object(key, extra=("xxh128",) if key in needs_xxh else ())
        except (OSError, ValueError) as e:
            rep.problems.append(f"object {key}: unreadable: {e}")
            rep.damaged.setdefault(key, "unreadable")
            continue
        rep.objects_checked += 1
        rep.bytes_checked += info.size
        if info.md5 != key:
            rep.problems.append(f"object {key}: content hashes to {info.md5} (corrupt)")
            rep.damaged.setdefault(key, f"content hashes to {info.md5}")
        if "xxh128" in info.extra:
            xxh_of[key] = base64.b64encode(bytes.fromhex(info.extra["xxh128"])).decode()
        if progress:
            progress(n, len(all_objects))

    rep.problems += check_segments(store)

    for art in cat.query("SELECT pk, id, digest, digest_algorithm, manifest_md5 FROM artifacts WHERE manifest_md5 IS NOT NULL"):
        rep.artifacts_checked += 1
        label = f"artifact {art['id']}"
        try:
            manifest = json.loads(objs.read_bytes(art["manifest_md5"]))
            contents = manifest["contents"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            rep.problems.append(f"{label}: manifest unreadable: {e}")
            continue
        rows = {r["path"]: r for r in cat.query("SELECT * FROM artifact_files WHERE artifact_pk = ?", [art["pk"]])}
        if set(rows) != set(contents):
            rep.problems.append(f"{label}: catalog entries differ from the manifest "
                                f"({len(set(rows) ^ set(contents))} paths)")
        for path, entry in contents.items():
            row = rows.get(path)
            if entry.get("ref") or row is None or row["md5"] is None:
                continue
            alg = (entry.get("extra") or {}).get("alg", "")
            if alg.upper() == "XXH128":
                hashed = xxh_of.get(row["md5"])
            else:
                hashed = ids.md5_hex_to_b64(row["md5"])
            if hashed != entry.get("digest"):
                rep.problems.append(f"{label}: {path}: digest {hashed} does not match manifest {entry.get('digest')}")
        if art["digest"]:
            algorithm = art["digest_algorithm"] or "MANIFEST_MD5"
            try:
                recomputed = manifest_digest({p: e.get("digest", "") for p, e in contents.items()}, algorithm)
            except ValueError as e:
                rep.problems.append(f"{label}: {e}")
                continue
            if recomputed != art["digest"]:
                rep.problems.append(f"{label}: manifest digest {recomputed} does not match {art['digest']}")
    return rep


def check_segments(store: Store) -> list[str]:
    """Each history segment parses, and its rows and step range are what the catalog indexed."""
    problems: list[str] = []
    segs = list(store.history.all_segments())
    if segs and not segments.available():
        return [f"{len(segs)} history segments cannot be checked: pyarrow is not installed (the `parquet` extra)"]
    for s in segs:
        label = f"history segment of run {s.run_pk} @{s.first_step}"
        if not store.objects.has(s.md5):
            continue  # reported above as a missing object
        local = getattr(store.objects, "path", None)
        got = segments.check(local(s.md5) if local is not None else io.BytesIO(store.objects.read_bytes(s.md5)))
        if isinstance(got, str):
            problems.append(f"{label}: {got}")
        elif got != (s.rows, s.first_step, s.last_step):
            problems.append(f"{label}: holds {got[0]} rows, steps {got[1]}..{got[2]}; catalog says "
                            f"{s.rows} rows, steps {s.first_step}..{s.last_step}")
    return problems
