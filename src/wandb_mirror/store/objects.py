"""The local object store: a directory keyed by hex md5, with restic-style atomic publication.

Layout: `objects/md5/ab/cdef...` (the first two hex digits are a directory), temp files in
`objects/tmp/` on the same filesystem. A write streams into a temp file while hashing, checks the
size and md5 it was announced with, fsyncs, renames into place and fsyncs the directory. Only
then may a catalog row reference the object. Objects are read-only (0400) once published.
The interface it implements is declared in object_api.py.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .. import times
from ..errors import IntegrityError
from . import faults
from .object_api import Digests, ObjectInfo, ObjectsBase, StoredObject, check_md5

__all__ = ["LocalObjects", "ObjectInfo", "fsync_dir"]

CHUNK = 1 << 20


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


class LocalObjects(ObjectsBase):
    """Objects in a directory (see the module docstring); implements object_api.Objects."""

    def __init__(self, root: Path, *, create: bool = True):
        self.root = Path(root)
        self.md5_root = self.root / "md5"
        self.tmp = self.root / "tmp"
        if create:
            for d in (self.root, self.md5_root, self.tmp):
                d.mkdir(mode=0o700, exist_ok=True)

    def describe(self) -> str:
        return str(self.root)

    # -- paths -----------------------------------------------------------------------------
    def path(self, md5: str) -> Path:
        """The file holding the object (local stores only: plugins may hard-link it)."""
        check_md5(md5)
        return self.md5_root / md5[:2] / md5[2:]

    def has(self, md5: str) -> bool:
        return self.path(md5).is_file()

    def size(self, md5: str) -> int:
        return self.path(md5).stat().st_size

    def open(self, md5: str) -> BinaryIO:
        return open(self.path(md5), "rb")

    # -- writing ---------------------------------------------------------------------------
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
        digests = Digests(extra)
        fd, tmpname = tempfile.mkstemp(prefix="obj-", dir=self.tmp)
        tmp = Path(tmpname)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    if not chunk:
                        continue
                    digests.update(chunk)
                    if expected_size is not None and digests.size > expected_size:
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
            info = digests.info()
            check_announced(info, expected_md5, expected_size)
            final = self.path(info.md5)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.chmod(tmp, 0o400)
            if faults.active:
                faults.hit("objects.publish")
            os.replace(tmp, final)
            fsync_dir(final.parent)
            if faults.active:
                faults.hit("objects.published")
            return info
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a filesystem gone read-only: the next writer's clean_tmp() removes it
                pass

    # -- reading / checking ----------------------------------------------------------------
    def iter_objects(self) -> Iterator[StoredObject]:
        if not self.md5_root.exists():
            return
        for sub in sorted(self.md5_root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for p in sorted(sub.iterdir()):
                try:
                    st = p.stat()
                except FileNotFoundError:  # removed meanwhile
                    continue
                yield StoredObject(sub.name + p.name, st.st_size, st.st_mtime)

    def remove(self, md5: str) -> None:
        p = self.path(md5)
        p.unlink(missing_ok=True)

    def quarantine(self, md5: str, why: str) -> str | None:
        """Into `quarantine/objects/` beside the objects folder (under the store by default)."""
        src = self.path(md5)
        if not os.path.lexists(src):
            return None
        folder = self.root.parent / "quarantine" / "objects"
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        dst = folder / f"{md5}.{times.filename_stamp()}.{os.getpid()}"
        os.replace(src, dst)
        (folder / (dst.name + ".why")).write_text(why + "\n")
        return str(dst)

    def clean_tmp(self, *, untouched_for: float | None = None) -> int:
        """Remove temp files left by a killed writer; returns how many. With `untouched_for`
        (seconds), only those not written to for that long: other writers' downloads in progress
        keep theirs fresh."""
        n = 0
        if self.tmp.exists():
            cutoff = None if untouched_for is None else time.time() - untouched_for
            for p in self.tmp.iterdir():
                if cutoff is not None:
                    try:
                        if p.stat().st_mtime >= cutoff:
                            continue
                    except FileNotFoundError:
                        continue
                p.unlink(missing_ok=True)
                n += 1
        return n


def require_local(objects: object, what: str) -> LocalObjects:
    """`objects` when it is a local directory, else one clear line: `what` needs files on disk."""
    if not isinstance(objects, LocalObjects):
        from ..errors import UsageError

        raise UsageError(f"{what} needs the objects in a local directory, not {objects.describe()}"  # type: ignore[attr-defined]
                         " (not supported yet)")
    return objects


def check_announced(info: ObjectInfo, expected_md5: str | None, expected_size: int | None) -> None:
    """IntegrityError unless the bytes are what they were announced as (checked before publishing)."""
    if expected_size is not None and info.size != expected_size:
        raise IntegrityError(f"size mismatch: expected {expected_size} bytes, got {info.size}")
    if expected_md5 is not None and info.md5 != expected_md5:
        raise IntegrityError(f"md5 mismatch: expected {expected_md5}, got {info.md5}")


# The name every caller used before backends existed: the local store is still the default one.
