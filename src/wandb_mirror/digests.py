"""Artifact manifest digests, as W&B computes them: the one place for both algorithms.

An artifact's digest is a hash over its manifest's sorted `path:entry digest` lines, after a
fixed header line. `digestAlgorithm` says which hash: MANIFEST_MD5 (hex md5, W&B's default) or
MANIFEST_XXH128 (hex XXH3-128). Sync checks each fetched manifest with it; `verify --deep`
recomputes it for every stored artifact.
"""

from __future__ import annotations

import hashlib
from typing import Any

import xxhash

ALGORITHMS = ("MANIFEST_MD5", "MANIFEST_XXH128")
_HEADER = b"wandb-artifact-manifest-v1\n"


def manifest_digest(contents: dict[str, str], algorithm: str = "MANIFEST_MD5") -> str:
    """The artifact digest of a manifest given as {path: entry digest}; ValueError for an unknown algorithm."""
    h: Any
    if algorithm == "MANIFEST_MD5":
        h = hashlib.md5(_HEADER)
    elif algorithm == "MANIFEST_XXH128":
        h = xxhash.xxh3_128(_HEADER)
    else:
        raise ValueError(f"unknown artifact digest algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})")
    for path in sorted(contents):
        h.update(f"{path}:{contents[path]}\n".encode())
    return h.hexdigest()
