"""Content-addressed object store keyed by hex md5, with restic-style atomic publication.

Layout: `objects/md5/ab/cdef...` (the first two hex digits are a directory), temp files in
`objects/tmp/` on the same filesystem. A write streams into a temp file while hashing, checks the
size and md5 it was announced with, fsyncs, renames into place and fsyncs the directory. Only
then may a catalog row reference the object. Objects are read-only (0400) once published.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from ..errors import IntegrityError
from . import faults

CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    md5: str  # hex
    size: int
    extra: dict[str, str] = field(default_factory=dict)  # other digests asked for, e.g. {"xxh128": hex}


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where the filesystem cannot fsync a directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot fsync a directory; that is not a failed write
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class ObjectStore:
    def __init__(self, root: Path, *, create: bool = True):
        self.root = Path(root)
        self.md5_root = self.root / "md5"
        self.tmp = self.root / "tmp"
        if create:
            for d in (self.root, self.md5_root, self.tmp):
                d.mkdir(mode=0o700, exist_ok=True)

    # -- paths -----------------------------------------------------------------------------
    def path(self, md5: str) -> Path:
        if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
            raise ValueError(f"not a hex md5: {md5!r}")
        return self.md5_root / md5[:2] / md5[2:]

    def has(self, md5: str) -> bool:
        return self.path(md5).is_file()

    def size(self, md5: str) -> int:
        return self.path(md5).stat().st_size

    def open(self, md5: str) -> BinaryIO:
        return open(self.path(md5), "rb")

    def read_bytes(self, md5: str) -> bytes:
        return self.path(md5).read_bytes()

    # -- writing ---------------------------------------------------------------------------
    def put_bytes(self, data: bytes, expected_md5: str | None = None, *, extra: tuple[str, ...] = ()) -> ObjectInfo:
        return self.put_stream([data], expected_md5=expected_md5, expected_size=len(data), extra=extra)

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected_md5: str | None = None,
        expected_size: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> ObjectInfo:
        """Store a stream of bytes; raise IntegrityError (and store nothing) on a size or md5 mismatch.

        `extra` names other digests to compute on the way ("xxh128", "sha256"), so a caller can check
        a digest W&B gave in another algorithm without reading the bytes twice.
        """
        if expected_md5 is not None and self.has(expected_md5):
            # Already present and verified when it was published: drain nothing, download nothing.
            if not extra:
                return ObjectInfo(expected_md5, self.size(expected_md5))
        md5 = hashlib.md5()
        hashers = {name: _new_hasher(name) for name in extra}
        size = 0
        fd, tmpname = tempfile.mkstemp(prefix="obj-", dir=self.tmp)
        tmp = Path(tmpname)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    if not chunk:
                        continue
                    md5.update(chunk)
                    for h in hashers.values():
                        h.update(chunk)
                    size += len(chunk)
                    if expected_size is not None and size > expected_size:
                        # stop the moment a body passes its announced size: an endless body must
                        # not fill the disk before the size check at the end
                        raise IntegrityError(f"size mismatch: more than the expected {expected_size} bytes")
                    if faults.active:
                        faults.hit("objects.write")
                    f.write(chunk)
                f.flush()
                if faults.active:
                    faults.hit("objects.fsync")
                os.fsync(f.fileno())
            digest = md5.hexdigest()
            if expected_size is not None and size != expected_size:
                raise IntegrityError(f"size mismatch: expected {expected_size} bytes, got {size}")
            if expected_md5 is not None and digest != expected_md5:
                raise IntegrityError(f"md5 mismatch: expected {expected_md5}, got {digest}")
            final = self.path(digest)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.chmod(tmp, 0o400)
            if faults.active:
                faults.hit("objects.publish")
            os.replace(tmp, final)
            fsync_dir(final.parent)
            if faults.active:
                faults.hit("objects.published")
            return ObjectInfo(digest, size, {n: h.hexdigest() for n, h in hashers.items()})
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a filesystem gone read-only: the next writer's clean_tmp() removes it
                pass

    # -- reading / checking ----------------------------------------------------------------
    def hash_object(self, md5: str, *, extra: tuple[str, ...] = ()) -> ObjectInfo:
        h = hashlib.md5()
        hashers = {name: _new_hasher(name) for name in extra}
        size = 0
        with self.open(md5) as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                for x in hashers.values():
                    x.update(chunk)
                size += len(chunk)
        return ObjectInfo(h.hexdigest(), size, {n: x.hexdigest() for n, x in hashers.items()})

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        if not self.md5_root.exists():
            return
        for sub in sorted(self.md5_root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for p in sorted(sub.iterdir()):
                yield sub.name + p.name, p

    def remove(self, md5: str) -> None:
        p = self.path(md5)
        p.unlink(missing_ok=True)

    def clean_tmp(self) -> int:
        """Remove temp files left by a killed writer; returns how many."""
        n = 0
        if self.tmp.exists():
            for p in self.tmp.iterdir():
                p.unlink(missing_ok=True)
                n += 1
        return n


def _new_hasher(name: str) -> Any:
    if name == "xxh128":
        return xxhash.xxh3_128()
    return hashlib.new(name)
