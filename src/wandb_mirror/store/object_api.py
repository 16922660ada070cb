"""The object store as a declared interface: what sync, verify, gc, serve and plugins may ask of it.

Objects are immutable byte strings keyed by their hex md5 (the digest W&B itself gives), laid out
as `md5/ab/cdef...` under a root: a local directory (`LocalObjects`, objects.py) or a bucket
prefix (`S3Objects`, s3objects.py). Every backend keeps the same promises:

- `put_stream` verifies size and md5 *before* the object becomes visible, and publishes nothing
  on a mismatch or a failure; publishing an object that is already there is a success.
- Only after `put_stream` returns may a catalog row reference the object.
- `iter_objects` lists what is stored with each object's size and age, for gc's grace period;
  `remove` is only ever called by gc, for an object no catalog row references; `quarantine`
  (repair) moves a damaged object aside and never deletes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, runtime_checkable

import xxhash

HEX = frozenset("0123456789abcdef")
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    md5: str  # hex
    size: int
    extra: dict[str, str] = field(default_factory=dict)  # other digests asked for, e.g. {"xxh128": hex}


@dataclass(frozen=True)
class StoredObject:
    """One listed object: its key, its size and when it was published (seconds since the epoch)."""

    md5: str
    size: int
    mtime: float


def check_md5(md5: str) -> str:
    """`md5` if it is a lowercase hex md5, else ValueError (keys never come from unchecked input)."""
    if not isinstance(md5, str) or len(md5) != 32 or not HEX.issuperset(md5):
        raise ValueError(f"not a hex md5: {md5!r}")
    return md5


def object_key(md5: str) -> str:
    """The key of an object below the store's root: `md5/ab/cdef...`."""
    check_md5(md5)
    return f"md5/{md5[:2]}/{md5[2:]}"


class Digests:
    """The md5, the size and any `extra` digests of a byte stream, computed in one read."""

    def __init__(self, extra: tuple[str, ...] = ()):
        self.md5 = hashlib.md5()
        self.others: dict[str, Any] = {name: _new_hasher(name) for name in extra}
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        for h in self.others.values():
            h.update(chunk)
        self.size += len(chunk)

    def info(self) -> ObjectInfo:
        return ObjectInfo(self.md5.hexdigest(), self.size, {n: h.hexdigest() for n, h in self.others.items()})


def _new_hasher(name: str) -> Any:
    if name == "xxh128":
        return xxhash.xxh3_128()
    return hashlib.new(name)


@runtime_checkable
class Objects(Protocol):
    """A content-addressed object store keyed by hex md5."""

    def describe(self) -> str:
        """Where the objects live, for messages and `status` (a directory or s3://bucket/prefix)."""
        ...

    def has(self, md5: str) -> bool: ...

    def size(self, md5: str) -> int:
        """The stored size in bytes; FileNotFoundError when absent."""
        ...

    def open(self, md5: str) -> BinaryIO:
        """A readable binary stream of the object; FileNotFoundError when absent."""
        ...

    def read_bytes(self, md5: str) -> bytes: ...

    def put_stream(self, chunks: Iterable[bytes], *, expected_md5: str | None = None,
                   expected_size: int | None = None, extra: tuple[str, ...] = ()) -> ObjectInfo:
        """Store a stream; IntegrityError (and nothing stored) on a size or md5 mismatch.

        `extra` names other digests ("xxh128", "sha256") to compute on the way.
        """
        ...

    def put_bytes(self, data: bytes, expected_md5: str | None = None, *, extra: tuple[str, ...] = ()) -> ObjectInfo: ...

    def hash_object(self, md5: str, *, extra: tuple[str, ...] = ()) -> ObjectInfo:
        """Re-read the stored bytes and hash them (what `verify --deep` trusts)."""
        ...

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every stored object, in key order."""
        ...

    def remove(self, md5: str) -> None:
        """Delete one object (gc only; absent is fine)."""
        ...

    def quarantine(self, md5: str, why: str) -> str | None:
        """Move a damaged object aside, never deleting it (repair); where it went, or None if absent."""
        ...

    def clean_tmp(self) -> int:
        """Remove what killed writers left behind (temp files, unfinished uploads); returns how many."""
        ...


class ObjectsBase:
    """What every backend derives from its own `open` and `put_stream`."""

    def open(self, md5: str) -> BinaryIO:
        raise NotImplementedError

    def put_stream(self, chunks: Iterable[bytes], *, expected_md5: str | None = None,
                   expected_size: int | None = None, extra: tuple[str, ...] = ()) -> ObjectInfo:
        raise NotImplementedError

    def put_bytes(self, data: bytes, expected_md5: str | None = None, *, extra: tuple[str, ...] = ()) -> ObjectInfo:
        return self.put_stream([data], expected_md5=expected_md5, expected_size=len(data), extra=extra)

    def read_bytes(self, md5: str) -> bytes:
        with self.open(md5) as f:
            return f.read()

    def hash_object(self, md5: str, *, extra: tuple[str, ...] = ()) -> ObjectInfo:
        digests = Digests(extra)
        with self.open(md5) as f:
            for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
                digests.update(chunk)
        return digests.info()
