"""The write side of the HTTP routes: file_stream, artifact file and manifest uploads.

Each function takes the request handler (server/app.py) and answers the request itself. All of
them refuse on a read-only server and demand the URL signature (or the API key for file_stream)
when the server has a key; uploads are verified against their md5 before they are published.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from ..errors import IntegrityError
from ..store.objects import ObjectInfo
from . import artifact_writes, ingest


def _refuse_read_only(h: Any, what: str) -> bool:
    if not h.server.read_only:
        return False
    if h.command == "PUT":
        h._drain_body()
    h._send_json(403, {"errors": [{"message": f"this wandb-mirror server is read-only: {what} refused"}]})
    return True


def file_stream(h: Any, path: str, body: bytes) -> None:
    """POST /files/{entity}/{project}/{run}/file_stream."""
    if _refuse_read_only(h, "file_stream"):
        return
    parts = path.split("/")  # ['', 'files', e, p, r, 'file_stream']
    if len(parts) != 6:
        h._send_json(404, {"errors": [{"message": "expected /files/{entity}/{project}/{run}/file_stream"}]})
        return
    entity, project, run = (unquote(p) for p in parts[2:5])
    try:
        # unpacked, a body may be 4x the cap on what is read (history lines compress about that well)
        payload = ingest.decode_body(body, h.headers.get("Content-Encoding"), 4 * h.server.limits.max_body)
    except ingest.StreamError as e:
        h._send_json(400, {"errors": [{"message": str(e)}]})
        return
    with h.server.data.connection() as conn:
        r = conn.execute("SELECT r.pk FROM runs r JOIN projects p ON p.pk = r.project_pk WHERE p.entity = ? "
                         "AND p.name = ? AND r.run_id = ? AND r.tombstoned_at IS NULL", [entity, project, run]).fetchone()
        if r is None:
            h._send_json(404, {"errors": [{"message": f"run {entity}/{project}/{run} not found"}]})
            return
        try:
            with h.server.data.write(conn):
                ingest.apply(conn, h.server.objects, r["pk"], payload)
        except ingest.StreamError as e:
            h._send_json(400, {"errors": [{"message": str(e)}]})
            return
    h._send_json(200, {"exitcode": None, "limits": {}})


def _signed(h: Any, canonical: str, query: dict[str, list[str]]) -> bool:
    if h.server.api_key and not h.server.signer.check(canonical, (query.get("sig") or [""])[0]):
        h._drain_body()
        h._send_json(403, {"errors": [{"message": "wandb-mirror: bad or missing URL signature"}]})
        return False
    return True


def artifact_object(h: Any, path: str, query: dict[str, list[str]]) -> None:
    """PUT /_mirror/upload-object/{md5}: an artifact file, published only if it hashes to md5."""
    if _refuse_read_only(h, "upload"):
        return
    md5 = path.rsplit("/", 1)[-1]
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        h._drain_body()
        h._send_json(404, {"errors": [{"message": "expected /_mirror/upload-object/{md5}"}]})
        return
    if not _signed(h, f"/_mirror/upload-object/{md5}", query):
        return
    if store_body(h, md5) is not None:
        h._send(200, b"", "text/plain")


def store_body(h: Any, expected_md5: str | None) -> ObjectInfo | None:
    """The request body published as an object if it matches its md5 and length; else 400 and None."""
    size = h.headers.get("Content-Length")
    chunks = h._body_chunks()
    try:
        return h.server.objects.put_stream(chunks, expected_md5=expected_md5,
                                           expected_size=int(size) if size else None)
    except IntegrityError as e:
        h._send_json(400, {"errors": [{"message": f"upload rejected: {e}"}]})
        return None
    finally:
        for _ in chunks:  # an object already present is not re-read: the body must still be consumed
            pass


def artifact_manifest(h: Any, path: str, query: dict[str, list[str]]) -> None:
    """PUT /_mirror/upload-manifest/{artifact id}: the manifest of a pending artifact version."""
    if _refuse_read_only(h, "upload"):
        return
    artifact_id = unquote(path[len("/_mirror/upload-manifest/"):])
    if not _signed(h, f"/_mirror/upload-manifest/{quote(artifact_id, safe='')}", query):
        return
    body = h._read_body(64 << 20)
    with h.server.data.connection() as conn:
        with h.server.data.write(conn):
            err = artifact_writes.store_manifest(conn, h.server.objects, artifact_id, body)
    if err:
        h._send_json(400, {"errors": [{"message": err}]})
        return
    h._send(200, b"", "text/plain")
