"""Typed access to the W&B public API: one method per question the mirror asks, dataclasses out.

Pagination is relay style. Paginators keep going past empty pages while `hasNextPage` says so
(an empty page is not the end, landscape P2), stop on a repeated cursor instead of looping, and can
drop duplicates that a server repeats across pages (landscape P4).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

from ..errors import IntegrityError
from ..store.object_api import ObjectInfo, Objects
from . import documents as D
from .convert import (
    artifact_from_node,
    collection_from_node,
    file_from_node,
    project_from_node,
    report_from_node,
    run_from_node,
    sweep_from_node,
    viewer_from_node,
)
from .single_flight import SingleFlight
from .transport import ApiError, NotFound, Transport
from .types import (
    ArtifactTypeInfo,
    Problem,
    RemoteArtifact,
    RemoteCollection,
    RemoteFile,
    RunListing,
    RunsInfo,
    Viewer,
)

log = logging.getLogger("wandb_mirror.client")

MAX_PAGES = 1_000_000
MAX_MANIFEST_BYTES = 512 * 1024 * 1024


class PaginationError(ApiError):
    """The server's cursors went round in circles."""


def _dig(data: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(data, dict):
            return None
        data = data.get(p)
    return data


class WandbClient:
    def __init__(self, transport: Transport, *, page_size: int = 50, file_page_size: int = 200,
                 artifact_page_size: int = 100):
        self.t = transport
        self._downloads = SingleFlight()
        self.page_size = page_size
        self.file_page_size = file_page_size
        self.artifact_page_size = artifact_page_size
        self._features: frozenset[str] | None = None
        self._features_lock = threading.Lock()

    @property
    def stats(self):
        return self.t.stats

    def close(self) -> None:
        self.t.close()

    # -- generic pagination ------------------------------------------------------------------
    def paginate(
        self,
        doc: D.Document,
        variables: dict[str, Any],
        path: tuple[str, ...],
        *,
        cursor_var: str = "cursor",
        per_page_var: str = "perPage",
        per_page: int | None = None,
        edge_cursor: bool = False,
        key: Callable[[dict[str, Any]], Any] | None = None,
        on_page: Callable[[dict[str, Any]], None] | None = None,
        missing_ok: bool = False,
        on_duplicate: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the edges of the connection at `path` in `data`, page after page.

        `edge_cursor`: take the next cursor from the last edge (the legacy Runs/Files paginators)
        rather than pageInfo.endCursor. `key`: drop edges whose key was already seen (and tell
        `on_duplicate`: a server that repeats entries across pages may also skip others, P4).
        `missing_ok`: a null parent (project, run, collection gone) ends the listing quietly;
        otherwise it raises NotFound.
        """
        cursor: str | None = None
        seen_cursors: set[str] = set()
        seen_keys: set[Any] = set()
        vars_ = dict(variables)
        for _page in range(MAX_PAGES):
            vars_[cursor_var] = cursor
            vars_[per_page_var] = per_page or self.page_size
            data = self.t.graphql(doc.name, doc.text, vars_)
            if on_page:
                on_page(data)
            conn = _dig(data, *path)
            if conn is None:
                if missing_ok:
                    return
                missing = next((".".join(path[:i + 1]) for i in range(len(path)) if _dig(data, *path[:i + 1]) is None),
                               ".".join(path))
                raise NotFound(f"{doc.name}: {missing} is null (not found upstream)", operation=doc.name)
            edges = conn.get("edges") if isinstance(conn, dict) else None
            edges = [e for e in edges if isinstance(e, dict)] if isinstance(edges, list) else []
            for e in edges:
                if key is not None:
                    k = key(e)
                    if k in seen_keys:
                        if on_duplicate:
                            on_duplicate(k)
                        continue
                    seen_keys.add(k)
                yield e
            info = conn.get("pageInfo") if isinstance(conn, dict) else None
            if not isinstance(info, dict) or not info.get("hasNextPage"):
                return
            nxt = None
            if edge_cursor and edges and isinstance(edges[-1].get("cursor"), str):
                nxt = edges[-1]["cursor"]
            if nxt is None:
                nxt = info.get("endCursor") if isinstance(info.get("endCursor"), str) else None
            if nxt is None:
                raise PaginationError(f"{doc.name}: hasNextPage without a cursor", operation=doc.name)
            if nxt in seen_cursors or nxt == cursor:
                raise PaginationError(f"{doc.name}: the server repeated cursor {nxt[:40]!r}", operation=doc.name)
            seen_cursors.add(nxt)
            cursor = nxt
        raise PaginationError(f"{doc.name}: more than {MAX_PAGES} pages", operation=doc.name)

    # -- server, viewer, projects -------------------------------------------------------------
    def features(self) -> frozenset[str]:
        """Enabled server features (ServerFeaturesQuery), asked once per client like wandb-core.
        A server that cannot answer has none."""
        with self._features_lock:
            if self._features is None:
                try:
                    data = self.t.graphql(D.SERVER_FEATURES.name, D.SERVER_FEATURES.text)
                    feats = _dig(data, "serverInfo", "features") or []
                    self._features = frozenset(
                        f["name"] for f in feats if isinstance(f, dict) and f.get("isEnabled") and isinstance(f.get("name"), str))
                except ApiError as e:
                    log.info("server features unavailable (%s); assuming none", e)
                    self._features = frozenset()
            return self._features

    def viewer(self) -> Viewer | None:
        data = self.t.graphql(D.VIEWER.name, D.VIEWER.text)
        node = data.get("viewer")
        return viewer_from_node(node) if isinstance(node, dict) else None

    def projects(self, entity: str) -> Iterator[Any]:
        for e in self.paginate(D.GET_PROJECTS, {"entity": entity}, ("models",), per_page=200,
                               key=lambda e: _dig(e, "node", "name")):
            node = e.get("node")
            if isinstance(node, dict):
                yield project_from_node(node, entity)

    def project(self, entity: str, name: str):
        data = self.t.graphql(D.GET_PROJECT.name, D.GET_PROJECT.text, {"name": name, "entity": entity})
        node = data.get("project")
        return project_from_node(node, entity) if isinstance(node, dict) else None

    # -- runs ----------------------------------------------------------------------------------
    def runs(self, entity: str, project: str, *, filters: dict[str, Any] | None = None, order: str = "+created_at",
             full: bool = True, info: RunsInfo | None = None, per_page: int | None = None) -> Iterator[RunListing]:
        """Runs of a project (deduplicated by run id across pages). `info` receives internalId/runCount."""
        doc = D.RUNS_FULL if full else D.RUNS_LIGHT
        where = f"{entity}/{project}"

        def on_page(data: dict[str, Any]) -> None:
            if info is None:
                return
            proj = data.get("project")
            if not isinstance(proj, dict):
                info.found = False
                return
            if info.internal_id is None and proj.get("internalId") is not None:
                info.internal_id = str(proj["internalId"])
            if info.run_count is None and isinstance(proj.get("runCount"), int):
                info.run_count = proj["runCount"]

        def on_duplicate(name: Any) -> None:
            log.warning("Runs of %s: the server listed run %r twice (pagination bug); the listing is not "
                        "trusted for deletions", where, name)
            if info is not None:
                info.duplicates += 1

        variables = {"project": project, "entity": entity, "order": order,
                     "filters": json.dumps(filters or {})}
        for e in self.paginate(doc, variables, ("project", "runs"), edge_cursor=True, on_page=on_page,
                               per_page=per_page, key=lambda e: _dig(e, "node", "name"), missing_ok=True,
                               on_duplicate=on_duplicate):
            node = e.get("node")
            if isinstance(node, dict):
                if info is not None:
                    info.listed += 1
                yield run_from_node(node, full=full, where=where)

    def run(self, entity: str, project: str, name: str) -> RunListing | None:
        data = self.t.graphql(D.RUN.name, D.RUN.text, {"project": project, "entity": entity, "name": name})
        node = _dig(data, "project", "run")
        return run_from_node(node, full=True, where=f"{entity}/{project}") if isinstance(node, dict) else None

    def history_page(self, entity: str, project: str, run: str, min_step: int, max_step: int,
                     samples: int | None = None) -> list[Any]:
        """Rows with min_step <= _step < max_step, at most `samples` of them (default: the window
        size, so nothing is sampled away). A window wider than `samples` that comes back full may
        have been downsampled: the caller must narrow it."""
        data = self.t.graphql(D.HISTORY_PAGE.name, D.HISTORY_PAGE.text, {
            "entity": entity, "project": project, "run": run, "minStep": min_step, "maxStep": max_step,
            "pageSize": samples if samples is not None else max_step - min_step})
        rows = _dig(data, "project", "run", "history")
        if _dig(data, "project", "run") is None:
            raise NotFound(f"HistoryPage: run {entity}/{project}/{run} not found", operation="HistoryPage")
        return rows if isinstance(rows, list) else []

    def events(self, entity: str, project: str, run: str, samples: int) -> list[Any]:
        data = self.t.graphql(D.RUN_EVENTS.name, D.RUN_EVENTS.text,
                              {"project": project, "entity": entity, "name": run, "samples": samples})
        if _dig(data, "project", "run") is None:
            raise NotFound(f"RunFullHistory: run {entity}/{project}/{run} not found", operation="RunFullHistory")
        rows = _dig(data, "project", "run", "events")
        return rows if isinstance(rows, list) else []

    def run_files(self, entity: str, project: str, run: str, problems: list[Problem]) -> Iterator[RemoteFile]:
        """Every file of a run; unsafe or malformed entries go to `problems` instead."""
        where = f"{entity}/{project}/{run}"
        variables = {"project": project, "entity": entity, "name": run, "fileNames": [], "upload": False,
                     "pattern": None}
        for e in self.paginate(D.RUN_FILES, variables, ("project", "run", "files"), cursor_var="fileCursor",
                               per_page_var="fileLimit", per_page=self.file_page_size, edge_cursor=True,
                               key=lambda e: _dig(e, "node", "name")):
            node = e.get("node")
            if not isinstance(node, dict):
                continue
            rf, problem = file_from_node(node, where=where)
            if problem:
                problems.append(problem)
            elif rf:
                yield rf

    # -- artifacts -----------------------------------------------------------------------------
    def run_artifacts(self, entity: str, project: str, run: str, direction: str) -> Iterator[RemoteArtifact]:
        doc = D.run_artifacts(direction, self.features())
        for e in self.paginate(doc, {"entity": entity, "project": project, "run": run}, ("project", "run", "artifacts"),
                               per_page=self.artifact_page_size, key=lambda e: _dig(e, "node", "id"), missing_ok=True):
            node = e.get("node")
            if isinstance(node, dict):
                yield artifact_from_node(node)

    def artifact_types(self, entity: str, project: str) -> Iterator[ArtifactTypeInfo]:
        for e in self.paginate(D.PROJECT_ARTIFACT_TYPES, {"entity": entity, "project": project},
                               ("project", "artifactTypes"), per_page=100, key=lambda e: _dig(e, "node", "name")):
            n = e.get("node")
            if isinstance(n, dict) and isinstance(n.get("name"), str):
                yield ArtifactTypeInfo(name=n["name"], id=n.get("id"), description=n.get("description"),
                                       created_at=n.get("createdAt"))

    def collections(self, entity: str, project: str, type_name: str) -> Iterator[RemoteCollection]:
        doc = D.artifact_type_collections(self.features())
        for e in self.paginate(doc, {"entity": entity, "project": project, "type": type_name, "order": None},
                               ("project", "artifactType", "artifactCollections"), per_page=100,
                               key=lambda e: _dig(e, "node", "name")):
            n = e.get("node")
            if isinstance(n, dict):
                rc = collection_from_node(n, entity=entity, project=project)
                if not rc.collection.type_name:
                    rc.collection.type_name = type_name
                yield rc

    def collection_versions(self, entity: str, project: str, type_name: str, collection: str) -> Iterator[RemoteArtifact]:
        """Every committed version of one collection."""
        doc = D.project_artifacts(self.features())
        variables = {"entity": entity, "project": project, "type": type_name, "collection": collection,
                     "order": None, "filters": json.dumps({"state": "COMMITTED"})}
        for e in self.paginate(doc, variables, ("project", "artifactType", "artifactCollection", "artifacts"),
                               per_page=self.artifact_page_size, key=lambda e: _dig(e, "node", "id")):
            n = e.get("node")
            if isinstance(n, dict):
                yield artifact_from_node(n)

    def manifest_url(self, artifact_id: str) -> str | None:
        data = self.t.graphql(D.FETCH_ARTIFACT_MANIFEST.name, D.FETCH_ARTIFACT_MANIFEST.text, {"id": artifact_id})
        url = _dig(data, "artifact", "currentManifest", "file", "directUrl")
        return url if isinstance(url, str) and url else None

    def artifact_file_urls(self, entity: str, project: str, collection: str, version_index: int) -> dict[str, str]:
        out: dict[str, str] = {}
        variables = {"entity": entity, "project": project, "collection": collection, "alias": f"v{version_index}"}
        for e in self.paginate(D.ARTIFACT_FILE_URLS, variables,
                               ("project", "artifactCollection", "artifactMembership", "files"), per_page=5000,
                               missing_ok=True):
            n = e.get("node")
            if isinstance(n, dict) and isinstance(n.get("name"), str) and isinstance(n.get("directUrl"), str):
                out.setdefault(n["name"], n["directUrl"])
        return out

    # -- sweeps, reports ----------------------------------------------------------------------
    def sweeps(self, entity: str, project: str, problems: list[Problem]) -> Iterator[Any]:
        feats = self.features()
        doc = D.get_sweeps(feats)
        variables: dict[str, Any] = {"project": project, "entity": entity}
        if "SWEEPS_QUERY_FILTERING" in feats:
            variables["filters"] = "{}"
        for e in self.paginate(doc, variables, ("project", "sweeps"), key=lambda e: _dig(e, "node", "name")):
            n = e.get("node")
            if not isinstance(n, dict):
                continue
            s, problem = sweep_from_node(n)
            if problem:
                problems.append(Problem("sweep", f"{entity}/{project}/{s.name}", problem, str(n.get("config"))[:4096]))
            yield s

    def reports(self, entity: str, project: str, problems: list[Problem]) -> Iterator[Any]:
        variables = {"project": project, "entity": entity, "viewType": "runs", "viewName": None}
        for e in self.paginate(D.PROJECT_VIEWS, variables, ("project", "allViews"), cursor_var="reportCursor",
                               per_page_var="reportLimit", edge_cursor=True, key=lambda e: _dig(e, "node", "id")):
            n = e.get("node")
            if not isinstance(n, dict):
                continue
            r, problem = report_from_node(n)
            if problem:
                problems.append(Problem("report", f"{entity}/{project}/{r.id}", f"spec: {problem}",
                                        str(n.get("spec"))[:4096]))
                continue
            yield r

    # -- bytes ----------------------------------------------------------------------------------
    def fetch_to_store(self, url: str, objects: Objects, *, operation: str, expected_md5: str | None = None,
                       expected_size: int | None = None, xxh128_b64: str | None = None) -> ObjectInfo:
        """Download `url` into the object store, verified while it streams.

        The bytes must match `expected_md5` (hex) and/or `xxh128_b64` and `expected_size`; on a
        mismatch nothing is published and the download is retried (RetryPolicy.integrity_attempts
        in all), then IntegrityError is raised for the caller to quarantine.
        """
        if expected_md5 is None:
            return self._fetch_to_store(url, objects, operation, None, expected_size, xxh128_b64)
        while True:
            if objects.has(expected_md5):
                return ObjectInfo(expected_md5, objects.size(expected_md5))
            with self._downloads.lead(expected_md5) as mine:  # another worker may be fetching these bytes
                if mine:
                    return self._fetch_to_store(url, objects, operation, expected_md5, expected_size, xxh128_b64)

    def _fetch_to_store(self, url: str, objects: Objects, operation: str, expected_md5: str | None,
                        expected_size: int | None, xxh128_b64: str | None) -> ObjectInfo:
        last: IntegrityError | None = None
        for _ in range(max(1, self.t.retry.integrity_attempts)):
            def consume(chunks: Iterator[bytes]) -> ObjectInfo:
                src = _xxh128_checked(chunks, xxh128_b64) if xxh128_b64 else chunks
                return objects.put_stream(src, expected_md5=expected_md5, expected_size=expected_size)
            try:
                return self.t.download(url, operation, consume)
            except IntegrityError as e:
                last = e
                log.warning("%s: %s; fetching again", operation, e)
        assert last is not None
        raise last

    def fetch_bytes(self, url: str, *, operation: str, max_bytes: int = MAX_MANIFEST_BYTES) -> bytes:
        def consume(chunks: Iterator[bytes]) -> bytes:
            buf = bytearray()
            for c in chunks:
                buf += c
                if len(buf) > max_bytes:
                    raise IntegrityError(f"{operation}: larger than {max_bytes} bytes")
            return bytes(buf)
        return self.t.download(url, operation, consume)


def _xxh128_checked(chunks: Iterator[bytes], want_b64: str) -> Iterator[bytes]:
    """Pass chunks through; after the last one, fail (before the store publishes) on a digest mismatch."""
    h = xxhash.xxh3_128()
    for c in chunks:
        h.update(c)
        yield c
    got = base64.b64encode(h.digest()).decode()
    if got != want_b64:
        raise IntegrityError(f"xxh128 mismatch: expected {want_b64}, got {got}")
