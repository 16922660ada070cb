"""Opaque identifiers in the shapes W&B uses, so a store seeded locally answers like a real server.

W&B relay ids are base64 of "Type:..."; a mirrored store keeps the upstream ids verbatim and only
seeding mints new ones with these helpers.
"""

from __future__ import annotations

import base64
import hashlib


def b64id(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def run_storage_id(entity: str, project: str, run_name: str) -> str:
    return b64id(f"Run:v1:{run_name}:{project}:{entity}")


def project_id(internal_id: int | str) -> str:
    return b64id(f"Project:{internal_id}")


def typed_id(kind: str, number: int | str) -> str:
    return b64id(f"{kind}:{number}")


def md5_b64_to_hex(b64: str) -> str:
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 16:
        raise ValueError(f"not a base64 md5: {b64!r}")
    return raw.hex()


def md5_hex_to_b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def artifact_manifest_digest(contents: dict[str, str]) -> str:
    """The artifact digest W&B computes from a v1 manifest: {path: entry digest} -> hex md5."""
    h = hashlib.md5(b"wandb-artifact-manifest-v1\n")
    for path in sorted(contents):
        h.update(f"{path}:{contents[path]}\n".encode())
    return h.hexdigest()
