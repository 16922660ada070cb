"""GraphQL nodes -> dataclasses, defensively: the upstream may be buggy or hostile.

Rules: JSON-typed fields keep the upstream's text exactly (the store serves it back byte for byte)
but are checked to parse; names are checked by `name_rules` (file names are kept exactly unless the
official client itself would refuse them). Whatever fails a check becomes a `Problem` instead of an
exception, so one bad record never stops a pass.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, overload

import yaml

from ..models import Artifact, ArtifactCollection, Project, Report, Run, RunFile, Sweep, User
from ..name_rules import file_path_problem, identifier_problem
from .types import Problem, RemoteArtifact, RemoteCollection, RemoteFile, RunListing, Viewer

MAX_JSON_DETAIL = 4096    # how much of a malformed value the quarantine keeps
VERSION_ALIAS = re.compile(r"^v\d+$")


def _detail(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:MAX_JSON_DETAIL]


def check_json_text(value: Any, *, want: type | tuple[type, ...] | None = dict) -> tuple[str | None, str | None]:
    """(text, problem). W&B sends JSONString fields as text; keep that text when it parses.

    An already-decoded value (a server that sends an object) is re-encoded. NaN/Infinity tokens are
    accepted (W&B writes them); control characters inside strings too (the SDK retries with
    strict=False, runs.py:164-185).
    """
    if value is None:
        return None, None
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value, allow_nan=True, separators=(",", ":")), None
        except (TypeError, ValueError) as e:
            return None, f"unencodable value: {e}"
    if not isinstance(value, str):
        return None, f"expected JSON text, got {type(value).__name__}"
    try:
        parsed = json.loads(value, strict=False)
    except ValueError as e:
        return None, f"malformed JSON: {e}"
    if want is not None and not isinstance(parsed, want):
        return None, f"expected a JSON {'object' if want is dict else 'value'}, got {type(parsed).__name__}"
    return value, None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


@overload
def _int(v: Any, default: int = 0) -> int: ...
@overload
def _int(v: Any, default: None) -> int | None: ...
def _int(v: Any, default: int | None = 0) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return default
    return default


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def md5_b64_to_hex(b64: Any) -> str | None:
    """W&B's base64 md5 -> the store's hex key; None if it is not a 16-byte base64 digest."""
    if not isinstance(b64, str) or not b64:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


# ---------------------------------------------------------------------------------------------
# viewer, projects
# ---------------------------------------------------------------------------------------------
def viewer_from_node(node: dict[str, Any]) -> Viewer:
    teams = []
    for edge in ((node.get("teams") or {}).get("edges") or []):
        name = ((edge or {}).get("node") or {}).get("name")
        if isinstance(name, str):
            teams.append(name)
    username = _str(node.get("username")) or _str(node.get("entity")) or "unknown"
    user = User(username=username, id=_str(node.get("id")), name=_str(node.get("name")) or username,
                email=_str(node.get("email")), entity=_str(node.get("entity")), admin=1 if node.get("admin") else 0,
                teams=json.dumps(teams))
    return Viewer(user=user, entity=_str(node.get("entity")), teams=teams)


def project_from_node(node: dict[str, Any], entity: str | None = None) -> Project:
    user = node.get("user") or {}
    return Project(entity=_str(node.get("entityName")) or entity or "", name=_str(node.get("name")) or "",
                   id=_str(node.get("id")), created_at=_str(node.get("createdAt")),
                   username=_str(user.get("username")) if isinstance(user, dict) else None)


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
def run_from_node(node: dict[str, Any], *, full: bool, where: str) -> RunListing:
    """A Runs/Run node -> RunListing. `where` is "entity/project" for problem paths."""
    problems: list[Problem] = []
    name = node.get("name")
    path = f"{where}/{name}"
    user = _dict(node.get("user"))
    tags_in = node.get("tags")
    tags = [t for t in tags_in if isinstance(t, str)] if isinstance(tags_in, list) else []
    if isinstance(tags_in, list) and len(tags) != len(tags_in):
        problems.append(Problem("run", path, "non-string tags dropped", _detail(tags_in)))
    run = Run(
        run_id=name if isinstance(name, str) else "",
        storage_id=_str(node.get("id")),
        display_name=_str(node.get("displayName")),
        state=_str(node.get("state")),
        tags=json.dumps(tags),
        notes=_str(node.get("notes")),
        description=_str(node.get("description")),
        group_name=_str(node.get("group")),
        job_type=_str(node.get("jobType")),
        commit_hash=_str(node.get("commit")),
        host=_str(node.get("host")),
        username=_str(user.get("username")),
        user_display_name=_str(user.get("name")),
        sweep_name=_str(node.get("sweepName")),
        read_only=1 if node.get("readOnly") else 0,
        created_at=_str(node.get("createdAt")),
        heartbeat_at=_str(node.get("heartbeatAt")),
        updated_at=_str(node.get("updatedAt")),
        history_line_count=_int(node.get("historyLineCount"), 0) or 0,
    )
    listing = RunListing(run=run, full=full, file_count=_int(node.get("fileCount"), None), problems=problems)
    if not full:
        return listing
    for src, attr in (("config", "config"), ("summaryMetrics", "summary"), ("systemMetrics", "system_metrics")):
        text, problem = check_json_text(node.get(src))
        if problem:
            problems.append(Problem("run", path, f"{src}: {problem}", _detail(node.get(src))))
        elif text is not None:
            setattr(run, attr, text)
    hk = node.get("historyKeys")
    if isinstance(hk, str):  # a server that encodes JSON as text
        text, problem = check_json_text(hk)
        hk = json.loads(text, strict=False) if text else None
        if problem:
            problems.append(Problem("run", path, f"historyKeys: {problem}", _detail(node.get("historyKeys"))))
    if isinstance(hk, dict):
        try:
            run.history_keys = json.dumps(hk, allow_nan=True, separators=(",", ":"))
        except (TypeError, ValueError):
            problems.append(Problem("run", path, "historyKeys: unencodable", _detail(hk)))
        last = _int(hk.get("lastStep"), -1)
        listing.last_step = last if last is not None else -1
    elif hk is not None:
        problems.append(Problem("run", path, "historyKeys: expected an object", _detail(hk)))
    return listing


# One decoder for every row: json.loads(..., strict=False) would build a new one per call, and
# history rows come by the million (5-13% of a history pass's CPU, measured by the bench).
_LENIENT = json.JSONDecoder(strict=False)


def parse_history_row(text: Any) -> tuple[int | None, str | None, str | None]:
    """(step, row text, problem) for one HistoryPage row (a JSON string)."""
    if isinstance(text, dict):
        try:
            text = json.dumps(text, allow_nan=True)
        except (TypeError, ValueError) as e:
            return None, None, f"unencodable row: {e}"
    if not isinstance(text, str):
        return None, None, f"expected a JSON string, got {type(text).__name__}"
    try:
        row = _LENIENT.decode(text)
    except ValueError as e:
        return None, None, f"malformed JSON: {e}"
    if not isinstance(row, dict):
        return None, None, "row is not a JSON object"
    step = row.get("_step")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or (isinstance(step, float) and not step.is_integer()):
        return None, None, f"row has no integer _step ({step!r})"
    return int(step), text, None


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def file_from_node(node: dict[str, Any], *, where: str) -> tuple[RemoteFile | None, Problem | None]:
    name = node.get("name")
    reason = file_path_problem(name)
    if reason:
        return None, Problem("file", f"{where}/{_detail(name)[:300]}", f"refused file name: {reason}")
    size = _int(node.get("sizeBytes"), None)
    if size is None or size < 0:
        return None, Problem("file", f"{where}/{name}", f"invalid sizeBytes {node.get('sizeBytes')!r}")
    md5 = md5_b64_to_hex(node.get("md5"))
    if md5 is None and node.get("md5") not in (None, ""):
        return None, Problem("file", f"{where}/{name}", f"invalid md5 {node.get('md5')!r}")
    f = RunFile(name=str(name), size=size, md5=md5 or "", id=_str(node.get("id")), mimetype=_str(node.get("mimetype")),
                updated_at=_str(node.get("updatedAt")))
    return RemoteFile(file=f, url=_str(node.get("url")), direct_url=_str(node.get("directUrl"))), None


# ---------------------------------------------------------------------------------------------
# artifacts
# ---------------------------------------------------------------------------------------------
def artifact_from_node(node: dict[str, Any]) -> RemoteArtifact:
    problems: list[Problem] = []
    seq = _dict(node.get("artifactSequence"))
    proj = _dict(seq.get("project"))
    entity = _str(_dict(proj.get("entity")).get("name")) or ""
    project = _str(proj.get("name")) or ""
    coll = _str(seq.get("name")) or ""
    aid = _str(node.get("id")) or ""
    where = f"{entity}/{project}/{coll}:v{node.get('versionIndex')}"
    for label, value in (("entity", entity), ("project", project), ("collection", coll)):
        reason = identifier_problem(value)
        if reason:
            problems.append(Problem("artifact", where, f"unsafe {label} name: {reason}"))
    if not aid:
        problems.append(Problem("artifact", where, "artifact has no id"))
    aliases = []
    for a in node.get("aliases") or []:
        if not isinstance(a, dict) or not isinstance(a.get("alias"), str):
            continue
        ac = a.get("artifactCollection")
        if isinstance(ac, dict) and ac.get("name") not in (None, coll):
            continue  # an alias in another collection (a portfolio link), not this sequence's
        if VERSION_ALIAS.match(a["alias"]):
            continue  # "vN" is the version, not an alias
        if a["alias"] not in aliases:
            aliases.append(a["alias"])
    tags = [t.get("name") for t in (node.get("tags") or []) if isinstance(t, dict) and isinstance(t.get("name"), str)]
    metadata, problem = check_json_text(node.get("metadata"))
    if problem:
        problems.append(Problem("artifact", where, f"metadata: {problem}", _detail(node.get("metadata"))))
    vi = _int(node.get("versionIndex"), None)
    art = Artifact(
        id=aid,
        version_index=vi if vi is not None else -1,
        type_name=_str((node.get("artifactType") or {}).get("name")) or "",
        collection_name=coll,
        aliases=json.dumps(aliases),
        tags=json.dumps(tags),
        state=_str(node.get("state")) or "COMMITTED",
        digest=_str(node.get("digest")),
        digest_algorithm=_str(node.get("digestAlgorithm")) or "MANIFEST_MD5",
        description=_str(node.get("description")),
        metadata=metadata or "{}",
        size=_int(node.get("size"), 0) or 0,
        file_count=_int(node.get("fileCount"), 0) or 0,
        commit_hash=_str(node.get("commitHash")),
        history_step=_int(node.get("historyStep"), None),
        ttl_duration_seconds=_int(node.get("ttlDurationSeconds"), -1) if node.get("ttlDurationSeconds") is not None else -1,
        created_at=_str(node.get("createdAt")),
        updated_at=_str(node.get("updatedAt")),
    )
    if vi is None:
        problems.append(Problem("artifact", where, "artifact has no versionIndex"))
    return RemoteArtifact(artifact=art, entity=entity, project=project, project_id=_str(proj.get("id")),
                          project_internal_id=_str(proj.get("internalId")), problems=problems)


def collection_from_node(node: dict[str, Any], *, entity: str, project: str) -> RemoteCollection:
    tags = []
    for e in ((node.get("tags") or {}).get("edges") or []):
        n = (e or {}).get("node") or {}
        if isinstance(n.get("name"), str):
            tags.append(n["name"])
    kind = "PORTFOLIO" if node.get("__typename") == "ArtifactPortfolio" else "SEQUENCE"
    c = ArtifactCollection(name=_str(node.get("name")) or "", type_name=_str((node.get("type") or {}).get("name")) or "",
                           id=_str(node.get("id")), kind=kind, description=_str(node.get("description")),
                           tags=json.dumps(tags), created_at=_str(node.get("createdAt")),
                           updated_at=_str(node.get("updatedAt")))
    return RemoteCollection(collection=c, entity=entity, project=project)


# ---------------------------------------------------------------------------------------------
# sweeps, reports
# ---------------------------------------------------------------------------------------------
def sweep_from_node(node: dict[str, Any]) -> tuple[Sweep, str | None]:
    """(sweep, problem). The config is YAML text; its metric name/goal are read for best_run."""
    config = node.get("config")
    problem = None
    metric_name = metric_goal = None
    if isinstance(config, str):
        try:
            parsed = yaml.safe_load(config)
        except yaml.YAMLError as e:
            parsed = None
            problem = f"config is not valid YAML: {str(e)[:200]}"
        if isinstance(parsed, dict) and isinstance(parsed.get("metric"), dict):
            metric_name = _str(parsed["metric"].get("name"))
            metric_goal = _str(parsed["metric"].get("goal")) or ("minimize" if metric_name else None)
    elif config is not None:
        problem = f"config is not text ({type(config).__name__})"
        config = None
    s = Sweep(name=_str(node.get("name")) or "", id=_str(node.get("id")), display_name=_str(node.get("displayName")),
              config=config or "", method=_str(node.get("method")), state=_str(node.get("state")),
              description=_str(node.get("description")), best_loss=_float(node.get("bestLoss")),
              metric_name=metric_name, metric_goal=metric_goal, run_count=_int(node.get("runCount"), 0) or 0,
              run_count_expected=_int(node.get("runCountExpected"), None), created_at=_str(node.get("createdAt")),
              updated_at=_str(node.get("updatedAt")))
    return s, problem


def report_from_node(node: dict[str, Any]) -> tuple[Report, str | None]:
    spec, problem = check_json_text(node.get("spec"), want=None)
    user = _dict(node.get("user"))
    r = Report(id=_str(node.get("id")) or "", name=_str(node.get("name")), display_name=_str(node.get("displayName")),
               description=_str(node.get("description")), spec=spec or "{}", username=_str(user.get("username")),
               created_at=_str(node.get("createdAt")), updated_at=_str(node.get("updatedAt")))
    return r, problem
