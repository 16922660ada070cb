"""Opaque identifiers in the shapes W&B uses, so a store seeded locally answers like a real server.

W&B relay ids are base64 of "Type:..."; a mirrored store keeps the upstream ids verbatim and only
seeding mints new ones with these helpers.
"""

from __future__ import annotations

import base64


def b64id(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def run_storage_id(entity: str, project: str, run_name: str) -> str:
    return b64id(f"Run:v1:{run_name}:{project}:{entity}")


def project_id(internal_id: int | str) -> str:
    return b64id(f"Project:{internal_id}")


def typed_id(kind: str, number: int | str) -> str:
    return b64id(f"{kind}:{number}")


def content_md5_hex(b64: str) -> str:
    """The hex md5 of a base64 md5 (a Content-MD5 header, a W&B md5 field); ValueError if it is not one."""
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 16:
        raise ValueError(f"not a base64 md5: {b64!r}")
    return raw.hex()


def md5_hex_to_b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()

