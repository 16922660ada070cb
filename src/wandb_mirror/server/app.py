"""The HTTP side: routing, auth, streaming file bodies, uploads, latency, fault injection, request log.

Stdlib only (`ThreadingHTTPServer`, HTTP/1.1 keep-alive). Routes:

    POST /graphql                                   GraphQL (Basic auth when --api-key)
    GET  /files/{entity}/{project}/{run}/{name}     a run file's bytes (Basic auth), like W&B's `url`
    GET  /_mirror/objects/{md5}/{basename}?sig=     presigned-style `directUrl` (no auth, signed)
    GET  /_mirror/manifest/{artifact id}?sig=       a manifest rendered from the catalog (no auth, signed)
    GET  /_mirror/history/{md5}/{name}?sig=         a parquet history export, whole or a Range (server/parquet.py)
    PUT  /_mirror/upload/{e}/{p}/{run}/{name}?sig=  upload target handed out by createRunFiles
    POST /files/{entity}/{project}/{run}/file_stream  history, events, summary, console (server/uploads.py)
    PUT  /_mirror/upload-object/{md5}?sig=          artifact file uploads (server/uploads.py)
    PUT  /_mirror/upload-manifest/{artifact id}?sig= artifact manifest uploads (server/uploads.py)
    GET  /artifactsV2/.../{md5}/{basename}          the official client's artifact download fallback
    GET  /artifacts/{entity}/{md5}                  (V1 layout fallback)
    GET  /_mirror/requests[?reset=1]                the request log as JSON (not itself logged)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .. import ids, times
from ..name_rules import file_path_problem
from ..store import Store
from . import nodes as N
from . import parquet as PQ
from . import uploads
from .data import Data
from .executor import GraphQLExecutor
from .guard import HostCheck, Limits, Refused, check_length, check_request, needs_key
from .integrity import verified_chunks
from .roots import FEATURES, touch_run
from .urls import Signer, Urls, quote_path, quote_segment

log = logging.getLogger(__name__)

CHUNK = 1 << 20
FILE_ROUTES = ("/files/", "/_mirror/objects/", "/_mirror/manifest/", "/artifactsV2/", "/artifacts/", PQ.ROUTE)


class RequestLog:
    """Every request the server answered, for tests and benchmarks to count.

    A client has its response before the server thread has written the log entry, so readers wait
    (briefly) for requests in flight: a test that just got its answer then sees it logged.
    """

    def __init__(self, limit: int = 1_000_000):
        self._entries: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._inflight = 0
        self._limit = limit

    def begin(self) -> None:
        with self._cond:
            self._inflight += 1

    def add(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self._inflight = max(0, self._inflight - 1)
            self._entries.append(entry)
            if len(self._entries) > self._limit:
                del self._entries[: len(self._entries) - self._limit]
            self._cond.notify_all()

    def _settle(self, timeout: float) -> None:
        self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def entries(self, settle: float = 1.0) -> list[dict[str, Any]]:
        with self._cond:
            self._settle(settle)
            return list(self._entries)

    def reset(self, settle: float = 1.0) -> None:
        with self._cond:
            self._settle(settle)
            self._entries.clear()

    def take(self, reset: bool, settle: float = 1.0) -> list[dict[str, Any]]:
        with self._cond:
            self._settle(settle)
            out = list(self._entries)
            if reset:
                self._entries.clear()
            return out


class Faults:
    """Reproducible fault injection.

    Each decision is a hash of (seed, method, path, body hash, n) where n counts how many times that
    same request was seen: the set of failing requests does not depend on thread interleaving, and
    a retry of a failed request gets a fresh draw.
    """

    def __init__(self, rate: float, seed: int):
        self.rate = max(0.0, min(1.0, float(rate)))
        self.seed = seed
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def decide(self, method: str, path: str, body_digest: str, file_body: bool) -> str | None:
        if self.rate <= 0.0:
            return None
        key = f"{method}\0{path}\0{body_digest}"
        with self._lock:
            n = self._seen[key] = self._seen.get(key, 0) + 1
        h = hashlib.sha256(f"{self.seed}\0{key}\0{n}".encode()).digest()
        if int.from_bytes(h[:8], "big") / 2**64 >= self.rate:
            return None
        kinds = ["429", "500", "drop"] + (["truncate", "corrupt"] if file_body else [])
        return kinds[int.from_bytes(h[8:12], "big") % len(kinds)]


class MirrorHTTPServer(ThreadingHTTPServer):
    parquet_export_delay = 0.0  # seconds before a history segment is offered as a parquet export
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib default (5) drops bursts of parallel clients into SYN retries

    def __init__(self, addr: tuple[str, int], store: Store, *, api_key: str | None, read_only: bool,
                 latency_ms: float, fault_rate: float, fault_seed: int, allow_hosts: frozenset[str] = frozenset(),
                 limits: Limits | None = None, include_deleted: bool = False):
        self.store_path = store.path
        self.objects = store.objects
        read_only = read_only or include_deleted  # deleted data served as live is never written to
        self.data = Data(store.catalog_path, readonly=read_only, include_deleted=include_deleted)
        self.limits = limits or Limits()
        self.hosts = HostCheck(addr[0], frozenset(h.lower() for h in allow_hosts))
        self.executor = GraphQLExecutor(limits=self.limits)
        self.api_key = api_key or None
        self.read_only = read_only
        self.latency = max(0.0, float(latency_ms)) / 1000.0
        self.faults = Faults(fault_rate, fault_seed)
        self.signer = Signer(self.api_key)
        self.log = RequestLog(self.limits.request_log)
        self.features = list(FEATURES)
        self._active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        super().__init__(addr, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a killed sync, a timed-out download) is routine, not a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        log.error("error on a connection from %s", client_address[0] if client_address else "?", exc_info=exc)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            self._active.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.discard(request)

    def close_all(self) -> None:
        """Drop keep-alive connections still open (their threads would otherwise outlive the server)."""
        with self._active_lock:
            active = list(self._active)
        for s in active:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def check_auth(self, header: str | None) -> bool:
        if not self.api_key:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                _user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(password.encode(), self.api_key.encode())
        if scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.api_key.encode())
        return False


class _Dropped(Exception):
    """Fault injection: abandon the connection without a response."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MirrorHTTPServer
    timeout = 120  # idle keep-alive connections are closed after this long
    server_version = "wandb-mirror"
    sys_version = ""

    wbufsize = 1 << 16  # headers and body leave in one segment (handle_one_request flushes)

    def setup(self) -> None:
        super().setup()
        # small responses on a keep-alive connection must not wait for delayed ACKs (Nagle: ~40 ms each)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # -- dispatch -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        t0 = time.perf_counter()
        self._status = 0
        self._bytes = 0
        self._operation = ""
        self._streaming = False
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        try:
            check_request(method, path, self.headers, self.server.hosts)
            if needs_key(path) and not self._authorized():  # before any body is read
                return
            check_length(method, self.headers, self.server.limits)
        except Refused as e:
            self._refuse(e)
            return
        if path == "/_mirror/requests":
            self._requests_endpoint(query)
            return
        body = b""
        digest = ""
        self.server.log.begin()
        try:
            if method == "POST":
                try:
                    body = self._read_body(self.server.limits.max_body)
                except Refused as e:
                    self._refuse(e)
                    return
                digest = hashlib.sha256(body).hexdigest()
            elif method == "PUT":
                digest = self.headers.get("Content-MD5", "") + "/" + self.headers.get("Content-Length", "")
            fault = self.server.faults.decide(method, self.path, digest, path.startswith(FILE_ROUTES))
            if self.server.latency:
                time.sleep(self.server.latency)
            if fault in ("429", "500", "drop"):
                if method == "PUT":
                    self._drain_body()
                if fault == "drop":
                    raise _Dropped
                if method == "POST" and path.endswith("/graphql"):
                    self._operation = _operation_of(body)
                self._send_json(int(fault), {"errors": [{"message": f"injected fault {fault}"}]},
                                {"Retry-After": "1"} if fault == "429" else None)
            else:
                self._route(method, path, query, body, fault)
        except _Dropped:
            self.close_connection = True
            self._status = 0
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug must answer 500, not hang the client
            log.exception("error serving %s %s", method, path)
            if self._streaming:  # headers are out: the only honest signal left is a short body
                self.close_connection = True
                return
            try:
                self._send_json(500, {"errors": [{"message": f"internal error: {e}"}]})
            except OSError:
                self.close_connection = True
        finally:
            self.server.log.add({
                "method": method,
                "path": path,
                "operation": self._operation,
                "status": self._status,
                "bytes": self._bytes,
                "ms": round((time.perf_counter() - t0) * 1000, 3),
            })

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, fault: str | None) -> None:
        # the key (where a route needs one) was checked by _dispatch before the body was read
        if path in ("/graphql", "/api/graphql") and method == "POST":
            self._graphql(body)
        elif path.startswith("/files/") and path.endswith("/file_stream") and method == "POST":
            uploads.file_stream(self, path, body)
        elif path.startswith("/files/") and method in ("GET", "HEAD"):
            self._run_file(path, method, fault)
        elif path.startswith("/_mirror/objects/") and method in ("GET", "HEAD"):
            self._signed_object(path, query, method, fault)
        elif path.startswith(PQ.ROUTE) and method in ("GET", "HEAD"):
            PQ.send_export(self, path, query, method, fault)  # presigned-style: no key, as on W&B
        elif path.startswith("/_mirror/manifest/") and method in ("GET", "HEAD"):
            self._signed_manifest(path, query, method, fault)
        elif path.startswith("/_mirror/upload/") and method == "PUT":
            self._upload(path, query)
        elif path.startswith("/_mirror/upload-object/") and method == "PUT":
            uploads.artifact_object(self, path, query)
        elif path.startswith("/_mirror/upload-manifest/") and method == "PUT":
            uploads.artifact_manifest(self, path, query)
        elif path.startswith(("/artifactsV2/", "/artifacts/")) and method in ("GET", "HEAD"):
            parts = [unquote(p) for p in path.split("/") if p]
            if path.startswith("/artifactsV2/"):
                self._object(self._artifact_object(parts), parts[-1], method, fault)
            else:
                self._object(parts[-1], parts[-1], method, fault)
        elif path in ("/", "/healthz") and method in ("GET", "HEAD"):
            self._send(200, b"wandb-mirror\n", "text/plain; charset=utf-8", head=method == "HEAD")
        else:
            # an unknown route's body is not read: the connection closes instead
            self.close_connection = True
            self._send_json(404, {"errors": [{"message": f"no route for {method} {path}"}]})

    # -- bodies ---------------------------------------------------------------------------------
    def _body_chunks(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    raise Refused(400, "malformed chunked request body", close=True) from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    if not data:
                        raise ConnectionResetError("client went away mid-body")
                    left -= len(data)
                    yield data
                self.rfile.readline(3)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, CHUNK))
                if not data:
                    raise ConnectionResetError("client went away mid-body")
                left -= len(data)
                yield data

    def _read_body(self, limit: int) -> bytes:
        out = bytearray()
        for chunk in self._body_chunks():
            out += chunk
            if len(out) > limit:
                raise Refused(413, f"request body is over the limit of {limit} bytes", close=True)
        return bytes(out)

    def _drain_body(self) -> None:
        for _ in self._body_chunks():
            pass

    # -- responses ------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self._bytes += len(body)
        self._status = status

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, _dumps(obj), "application/json", headers)

    def _refuse(self, e: Refused) -> None:
        if e.close:  # the body (if any) stays unread: this connection cannot carry another request
            self.close_connection = True
        self._send_json(e.status, {"errors": [{"message": f"wandb-mirror: {e}"}]})

    def _authorized(self) -> bool:
        if self.server.check_auth(self.headers.get("Authorization")):
            return True
        self.close_connection = True  # the body (if any) is never read for an unknown key
        self._send_json(401, {"errors": [{"message": "wandb-mirror: invalid or missing API key"}]},
                        {"WWW-Authenticate": 'Basic realm="wandb-mirror"'})
        return False

    def _ctx(self, conn: Any) -> N.Ctx:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return N.Ctx(data=self.server.data, conn=conn, objects=self.server.objects,
                     urls=Urls(f"http://{host}", self.server.signer), read_only=self.server.read_only,
                     features=self.server.features, export_delay=self.server.parquet_export_delay)

    # -- graphql --------------------------------------------------------------------------------
    def _graphql(self, body: bytes) -> None:
        try:
            request = json.loads(body or b"null")
        except ValueError as e:  # UnicodeDecodeError included
            self._send_json(400, {"errors": [{"message": f"request body is not JSON: {e}"}]})
            return
        if not isinstance(request, dict) or not isinstance(request.get("query"), str) or \
                not isinstance(request.get("variables") or {}, dict):
            self._send_json(400, {"errors": [{"message": "request body must be a JSON object with a 'query' "
                                                         "string and optional 'variables' object"}]})
            return
        with self.server.data.connection() as conn:
            result, op = self.server.executor.execute(request, self._ctx(conn), read_only=self.server.read_only)
        self._operation = op
        # W&B answers a name already taken (an automation's) with 409, which the client turns into its own error
        conflict = any((e.get("extensions") or {}).get("code") == "CONFLICT" for e in result.get("errors") or [])
        self._send_json(409 if conflict else 200, result)

    # -- file bodies ----------------------------------------------------------------------------
    def _run_file(self, path: str, method: str, fault: str | None) -> None:
        parts = path.split("/", 5)  # ['', 'files', e, p, r, name...]
        if len(parts) < 6 or not parts[5]:
            self._send_json(404, {"errors": [{"message": "expected /files/{entity}/{project}/{run}/{name}"}]})
            return
        entity, project, run, name = (unquote(p) for p in parts[2:6])
        with self.server.data.connection() as conn:
            row = conn.execute(
                "SELECT f.md5, f.mimetype FROM files f JOIN runs r ON r.pk = f.run_pk "
                "JOIN projects p ON p.pk = r.project_pk WHERE p.entity = ? AND p.name = ? AND r.run_id = ? "
                "AND f.name = ? AND f.tombstoned_at IS NULL AND r.tombstoned_at IS NULL", [entity, project, run, name]
            ).fetchone()
        if row is None:
            self._send_json(404, {"errors": [{"message": f"file {entity}/{project}/{run}/{name} not found"}]})
            return
        self._object(row["md5"], name, method, fault, row["mimetype"])

    def _signed_object(self, path: str, query: dict[str, list[str]], method: str, fault: str | None) -> None:
        parts = path.split("/")  # ['', '_mirror', 'objects', md5, basename]
        if len(parts) != 5:
            self._send_json(404, {"errors": [{"message": "expected /_mirror/objects/{md5}/{name}"}]})
            return
        md5, basename = parts[3], unquote(parts[4])
        canonical = f"/_mirror/objects/{md5}/{quote_segment(basename)}"
        if not self._signature_ok(canonical, query):
            return
        self._object(md5, basename, method, fault)

    def _signature_ok(self, canonical: str, query: dict[str, list[str]]) -> bool:
        if self.server.api_key and not self.server.signer.check(canonical, (query.get("sig") or [""])[0]):
            self._send_json(403, {"errors": [{"message": "wandb-mirror: bad or missing URL signature"}]})
            return False
        return True

    def _signed_manifest(self, path: str, query: dict[str, list[str]], method: str, fault: str | None) -> None:
        artifact_id = unquote(path[len("/_mirror/manifest/"):])
        if not self._signature_ok(f"/_mirror/manifest/{quote(artifact_id, safe='')}", query):
            return
        with self.server.data.connection() as conn:
            row = conn.execute("SELECT pk FROM artifacts WHERE id = ?", [artifact_id]).fetchone()
            body = N.manifest_json(self._ctx(conn), row["pk"]) if row else None
        if body is None:
            self._send_json(404, {"errors": [{"message": f"artifact {artifact_id} not found"}]})
            return
        self._stream(iter([body]), len(body), "application/json", method, fault)

    def _artifact_object(self, parts: list[str]) -> str:
        """The md5 behind an artifactsV2 path. Its hash is the hex of the entry's digest, which for an
        XXH128 entry is not the object's md5: find the entry among the artifacts the path names."""
        hexhash = parts[-2]
        if self.server.objects.has(hexhash) or len(parts) < 8:
            return hexhash
        try:
            digest = ids.md5_hex_to_b64(hexhash)
        except ValueError:
            return hexhash
        with self.server.data.connection() as conn:
            row = conn.execute(
                "SELECT f.md5 FROM artifact_files f JOIN artifacts a ON a.pk = f.artifact_pk "
                "WHERE a.id IN (?, ?) AND f.digest = ? AND f.md5 IS NOT NULL LIMIT 1",
                [parts[5], parts[-3], digest]).fetchone()
        return row[0] if row else hexhash

    def _object(self, md5: str, name: str, method: str, fault: str | None, mimetype: str | None = None) -> None:
        objects = self.server.objects
        try:
            size = objects.size(md5)
            f = objects.open(md5)
        except (ValueError, OSError):
            self._send_json(404, {"errors": [{"message": f"object {md5} not found"}]})
            return
        with f:
            ctype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
            self._stream(verified_chunks(iter(lambda: f.read(CHUNK), b""), md5, size), size, ctype, method, fault)

    def _stream(self, chunks: Iterator[bytes], size: int, ctype: str, method: str, fault: str | None,
                status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._status = status
        self._streaming = True
        if method == "HEAD":
            return
        limit = size // 2 if fault == "truncate" else size
        sent = 0
        first = True
        for chunk in chunks:
            if fault == "corrupt" and first and chunk:
                # same length, different bytes: the client must catch it by md5
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            first = False
            if sent + len(chunk) > limit:
                chunk = chunk[: limit - sent]
            if chunk:
                self.wfile.write(chunk)
                sent += len(chunk)
            if sent >= limit:
                break
        self._bytes += sent
        if sent < size and fault != "truncate":  # the bytes on disk were not the object's: cut it short
            self.close_connection = True
            raise _Dropped
        if fault == "truncate" and sent < size:
            self.wfile.flush()
            self.close_connection = True
            raise _Dropped

    # -- uploads --------------------------------------------------------------------------------
    def _upload(self, path: str, query: dict[str, list[str]]) -> None:
        if self.server.read_only:
            self._drain_body()
            self._send_json(403, {"errors": [{"message": "this wandb-mirror server is read-only: upload refused"}]})
            return
        parts = path.split("/", 6)  # ['', '_mirror', 'upload', e, p, r, name]
        if len(parts) < 7 or not parts[6]:
            self._drain_body()
            self._send_json(404, {"errors": [{"message": "expected /_mirror/upload/{entity}/{project}/{run}/{name}"}]})
            return
        entity, project, run, name = (unquote(p) for p in parts[3:7])
        if file_path_problem(name):
            self._drain_body()
            self._send_json(400, {"errors": [{"message": f"invalid file name {name!r}"}]})
            return
        canonical = (f"/_mirror/upload/{quote_segment(entity)}/{quote_segment(project)}/{quote_segment(run)}/"
                     f"{quote_path(name)}")
        if self.server.api_key and not self.server.signer.check(canonical, (query.get("sig") or [""])[0]):
            self._drain_body()
            self._send_json(403, {"errors": [{"message": "wandb-mirror: bad or missing URL signature"}]})
            return
        expected_md5 = None
        if self.headers.get("Content-MD5"):
            try:
                expected_md5 = ids.content_md5_hex(self.headers["Content-MD5"].strip())
            except ValueError:
                self._drain_body()
                self._send_json(400, {"errors": [{"message": "Content-MD5 is not a base64 md5"}]})
                return
        info = uploads.store_body(self, expected_md5)
        if info is None:
            return
        with self.server.data.connection() as conn:
            ctx = self._ctx(conn)
            with self.server.data.write(conn):
                r = conn.execute(
                    "SELECT r.pk, r.storage_id FROM runs r JOIN projects p ON p.pk = r.project_pk "
                    "WHERE p.entity = ? AND p.name = ? AND r.run_id = ? AND r.tombstoned_at IS NULL",
                    [entity, project, run]).fetchone()
                if r is None:
                    found = False
                else:
                    found = True
                    t = times.wandb_time()
                    old = conn.execute("SELECT id FROM files WHERE run_pk = ? AND name = ?", [r["pk"], name]).fetchone()
                    fid = (old["id"] if old and old["id"] else None) or ids.typed_id("File", f"{r['pk']}:{name}")
                    conn.execute("INSERT OR IGNORE INTO file_versions (run_pk, name, size, md5, updated_at, mirrored_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", [r["pk"], name, info.size, info.md5, t, t])
                    conn.execute(
                        "INSERT INTO files (run_pk, name, id, size, md5, mimetype, updated_at, mirrored_at, tombstoned_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (run_pk, name) DO UPDATE SET id = excluded.id, "
                        "size = excluded.size, md5 = excluded.md5, mimetype = excluded.mimetype, "
                        "updated_at = excluded.updated_at, mirrored_at = excluded.mirrored_at, tombstoned_at = NULL",
                        [r["pk"], name, fid, info.size, info.md5, N.guess_mimetype(name), t, t])
                    touch_run(conn, r["pk"])
            del ctx
        if not found:
            self._send_json(404, {"errors": [{"message": f"run {entity}/{project}/{run} not found"}]})
            return
        self._send(200, b"", "text/plain")

    # -- request log ----------------------------------------------------------------------------
    def _requests_endpoint(self, query: dict[str, list[str]]) -> None:
        reset = (query.get("reset") or ["0"])[0] not in ("0", "", "false")
        self._send_json(200, self.server.log.take(reset))


def _operation_of(body: bytes) -> str:
    try:
        req = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(req, dict):
        return ""
    from .executor import operation_name_from_text

    return req.get("operationName") or operation_name_from_text(req.get("query") or "")


def _dumps(obj: Any) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        # NaN/Infinity inside JSON values (sampledHistory rows): strict JSON parsers (wandb-core is Go)
        # reject the bare tokens, so they travel as the strings W&B's own JSON uses for them.
        return json.dumps(_sanitize(obj), separators=(",", ":"), allow_nan=False).encode()


def _sanitize(v: Any) -> Any:
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v in (float("inf"), float("-inf")):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, dict):
        return {k: _sanitize(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_sanitize(x) for x in v]
    return v


# ------------------------------------------------------------------------------------------ in-process API
class ServerHandle:
    """A running server: `.url`, `.request_log()`, `.reset_log()`, `.stop()`."""

    def __init__(self, server: MirrorHTTPServer, thread: threading.Thread, store: Store):
        self._server = server
        self._thread = thread
        self._store = store
        host, port = server.server_address[:2]
        self.host = host
        self.port = port
        host = str(host)
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def request_log(self) -> list[dict[str, Any]]:
        return self._server.log.entries()

    def reset_log(self) -> None:
        self._server.log.reset()

    @property
    def features(self) -> list[str]:
        return self._server.features

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_all()
        self._thread.join(timeout=5)
        self._server.data.close()
        self._store.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def open_store(store_path: str | Path, *, read_only: bool) -> Store:
    """The store to serve; a UsageError (one clear line) when the path is not a store."""
    from ..store.location import open_store as open_named

    return open_named(store_path, create=False, readonly=read_only)


def make_server(store: Store, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                read_only: bool = True, latency_ms: float = 0, fault_rate: float = 0.0,
                fault_seed: int = 0, allow_hosts: frozenset[str] = frozenset(),
                limits: Limits | None = None, include_deleted: bool = False) -> MirrorHTTPServer:
    cls: type[MirrorHTTPServer] = MirrorHTTPServer
    if ":" in host:  # an IPv6 literal such as ::1
        cls = type("MirrorHTTPServer6", (MirrorHTTPServer,), {"address_family": socket.AF_INET6})
    return cls((host, port), store, api_key=api_key, read_only=read_only, latency_ms=latency_ms,
               fault_rate=fault_rate, fault_seed=fault_seed, allow_hosts=allow_hosts, limits=limits,
               include_deleted=include_deleted)


def start_server(store_path: str | Path, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 read_only: bool | None = None, latency_ms: float = 0, fault_rate: float = 0.0,
                 fault_seed: int = 0, *, writable: bool = False, allow_hosts: frozenset[str] = frozenset(),
                 limits: Limits | None = None, parquet_export_delay: float = 0.0,
                 include_deleted: bool = False) -> ServerHandle:
    """Serve `store_path` from a background thread; returns once the socket is listening.

    Read-only unless `writable=True` (or the older spelling `read_only=False`); always read-only with
    `include_deleted` (what upstream deleted, served as live).
    """
    read_only = (not writable if read_only is None else read_only) or include_deleted
    store = open_store(store_path, read_only=read_only)
    server = make_server(store, host, port, api_key=api_key, read_only=read_only, latency_ms=latency_ms,
                         fault_rate=fault_rate, fault_seed=fault_seed, allow_hosts=allow_hosts, limits=limits,
                         include_deleted=include_deleted)
    server.parquet_export_delay = parquet_export_delay
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"wandb-mirror-serve:{server.server_address[1]}", daemon=True)
    thread.start()
    return ServerHandle(server, thread, store)
