"""URLs the server hands out, and the signatures that make presigned-style URLs unforgeable.

- `url` of a run file: `{base}/files/{entity}/{project}/{run}/{name}` (needs Basic auth, as on W&B).
- `directUrl`: `{base}/_mirror/objects/{md5}/{basename}?sig=...` -- like a presigned bucket URL it needs
  no auth; the signature is an HMAC of the path keyed by a secret derived from `--api-key`, so
  without the key nobody can mint a URL for another object.
- upload URLs (`createRunFiles`): `{base}/_mirror/upload/{entity}/{project}/{run}/{name}?sig=...` (PUT).
- artifact uploads (`createArtifactFiles`, `createArtifactManifest`): `{base}/_mirror/upload-object/{md5}`
  and `{base}/_mirror/upload-manifest/{artifact id}` (PUT, signed).
- artifact manifests that were never stored as an object are rendered at
  `{base}/_mirror/manifest/{artifact id}?sig=...`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from ..urlnames import quote_path, quote_segment

__all__ = ["Signer", "Urls", "quote_path", "quote_segment"]


class Signer:
    def __init__(self, api_key: str | None):
        # With a key: derive the secret from it (stable across restarts, unknown without the key).
        # Without a key anybody may read anything anyway; a random secret still keeps URLs opaque.
        if api_key:
            self._secret = hashlib.sha256(b"wandb-mirror direct url\0" + api_key.encode()).digest()
        else:
            self._secret = secrets.token_bytes(32)

    def sign(self, path: str) -> str:
        return hmac.new(self._secret, path.encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, path: str, sig: str | None) -> bool:
        return bool(sig) and hmac.compare_digest(self.sign(path), sig or "")


class Urls:
    """Per-request URL builder (the base comes from the request's Host header)."""

    def __init__(self, base: str, signer: Signer):
        self.base = base.rstrip("/")
        self.signer = signer

    def signed(self, path: str) -> str:
        """A presigned-style URL of `path` (already quoted): no key needed, unforgeable."""
        return f"{self.base}{path}?sig={self.signer.sign(path)}"

    def run_file(self, entity: str, project: str, run: str, name: str) -> str:
        return (f"{self.base}/files/{quote_segment(entity)}/{quote_segment(project)}/{quote_segment(run)}/"
                f"{quote_path(name)}")

    def object(self, md5: str, name: str) -> str:
        basename = name.rsplit("/", 1)[-1] or "object"
        return self.signed(f"/_mirror/objects/{md5}/{quote_segment(basename)}")

    def upload(self, entity: str, project: str, run: str, name: str) -> str:
        return self.signed(
            f"/_mirror/upload/{quote_segment(entity)}/{quote_segment(project)}/{quote_segment(run)}/{quote_path(name)}"
        )

    def upload_object(self, md5: str) -> str:
        """An artifact file's upload target: the bytes must hash to `md5` (server/uploads.py)."""
        return self.signed(f"/_mirror/upload-object/{md5}")

    def upload_manifest(self, artifact_id: str) -> str:
        return self.signed(f"/_mirror/upload-manifest/{quote(artifact_id, safe='')}")

    def manifest(self, artifact_id: str) -> str:
        return self.signed(f"/_mirror/manifest/{quote(artifact_id, safe='')}")

    def artifact_fallback(self, entity: str, project: str, collection: str, artifact_id: str,
                          birth_id: str, md5: str, name: str) -> str:
        """The artifactsV2 path the official client falls back to when a directUrl fails."""
        basename = name.rsplit("/", 1)[-1]
        parts = ["artifactsV2", "default", entity, project, collection, artifact_id, birth_id or artifact_id, md5, basename]
        return self.base + "/" + "/".join(quote_segment(p) for p in parts)
