"""Shared helpers for the reliability suite (tests/test_reliability_*.py; no tests here).

- `small_doc()`: a small but varied upstream (history, NaN rows, files, artifacts with md5 and
  XXH128 digests, a sweep, a running run, a second project) that mirrors in well under a second.
- `write_config(dir, url, ...)`: a mirror configuration file with fast retries.
- `Proxy`: a misbehaving HTTP front for a real `serve` (answers instead of the server, or rewrites
  its GraphQL answers), with a timestamped request log. The data still comes from the real server.
- `mirror_state(store, entity)`: everything a user could notice about a mirrored entity, as plain
  values, to compare a mirror with its upstream store.
- `official_diff(api_a, api_b, ...)`: the same comparison through the official wandb client.
- `store_problems(path)`: temp files left behind, permissions wider than 0600/0700.
- `cli(...)`: run `wandb-mirror` as a real process.
- `RECORDER` (a plugin file that writes one line per event) and `expected_lines(store)` (the lines
  the change log says it must have written); `grow_upstream(store, i)`: upstream activity.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from client_view import clean

from wandb_mirror.store import Store
from wandb_mirror.store.location import open_store

ROOT = Path(__file__).resolve().parents[1]
ENTITY = "acme"
KEY = "k" * 40


def small_doc() -> dict[str, Any]:
    nan_rows = [{"_step": 0, "loss": 1.0}, {"_step": 1, "loss": float("nan")}, {"_step": 2, "loss": float("inf")},
                {"_step": 3, "loss": float("-inf"), "acc": 0.5}]
    return {
        "viewer": {"username": "ada", "entity": ENTITY, "name": "Ada"},
        "projects": [
            {"name": "alpha", "created_at": "2024-01-01T00:00:00",
             "sweeps": [{"name": "sw", "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                         "parameters": {"lr": {"values": [0.1, 0.01]}}}],
             "runs": [
                 {"id": "a1", "state": "finished", "sweep": "sw", "config": {"lr": 0.1, "opt": {"name": "adam"}},
                  "tags": ["base"], "history": {"steps": 120, "metrics": ["loss", "acc"], "seed": 1},
                  "events": {"count": 5, "seed": 1},
                  "files": [{"name": "config.yaml", "text": "lr: 0.1\n"}, {"name": "model.bin", "size": 200_000, "seed": 1},
                            {"name": "media/plot.png", "size": 3000, "seed": 2}]},
                 {"id": "a2", "state": "finished", "sweep": "sw", "config": {"lr": 0.01},
                  "history": {"steps": 60, "metrics": ["loss"], "seed": 2},
                  "files": [{"name": "out.log", "text": "epoch 1\nepoch 2\n"}, {"name": "w.bin", "size": 50_000, "seed": 3}]},
                 {"id": "a3", "state": "running", "config": {"lr": 0.5},
                  "history": {"steps": 40, "metrics": ["loss"], "seed": 3},
                  "files": [{"name": "live.txt", "text": "still going\n"}]},
                 {"id": "a4", "state": "crashed", "summary": {"loss": 9.0}, "files": [{"name": "err.txt", "text": "oom\n"}]},
                 {"id": "a5", "state": "finished", "history": nan_rows, "summary": {"loss": 0.1, "best": float("inf")}},
                 {"id": "a6", "state": "finished", "notes": "unicode: héllo 🌍", "tags": ["ünï"],
                  "files": [{"name": "résumé/naïve 文件.txt", "text": "unicode names mirror too\n"}]},
             ],
             "artifacts": [
                 {"name": "data", "type": "dataset", "versions": [
                     {"files": [{"path": "a.txt", "text": "A"}, {"path": "sub/b.bin", "size": 20_000, "seed": 4}],
                      "created_by": "a1"},
                     {"files": [{"path": "a.txt", "text": "A2"}, {"path": "sub/b.bin", "size": 20_000, "seed": 4}],
                      "created_by": "a2", "used_by": ["a1"], "aliases": ["best"]}]},
                 {"name": "model", "type": "model", "versions": [
                     {"files": [{"path": "weights.bin", "size": 30_000, "seed": 5, "alg": "xxh128"}], "created_by": "a2"}]},
             ]},
            {"name": "beta", "created_at": "2024-02-01T00:00:00",
             "runs": [{"id": "b1", "config": {"k": 1}, "history": {"steps": 10, "metrics": ["x"], "seed": 9}},
                      {"id": "b2", "files": [{"name": "f.txt", "text": "f\n"}]}]},
        ],
    }


def seed_store(path: Path, doc: dict[str, Any] | None = None) -> Path:
    from wandb_mirror.fixtures import seed

    with Store(path) as store:
        seed(store, doc or small_doc())
    return path


def write_config(directory: Path, url: str, *, store: str = "mirror", sync: str = "", extra: str = "",
                 name: str = "mirror.toml") -> Path:
    p = directory / name
    p.write_text(f'[source]\nbase_url = "{url}"\n\n[store]\npath = "{store}"\n\n'
                 '[sync]\nretry_wait_min = "10ms"\nretry_wait_max = "50ms"\nmax_retries = 6\nprogress = "never"\n'
                 f"{sync}\n{extra}")
    return p


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, WANDB_API_KEY=KEY, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WANDB_MIRROR_FAULTS", None)
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    """`wandb-mirror ARGS` as a real process (stdout, stderr captured as text)."""
    return subprocess.run([sys.executable, "-m", "wandb_mirror.cli", *args], env=env if env is not None else child_env(),
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout)


def one_pass(cfg: Any, path: Path, sleeps: list[float] | None = None) -> Any:
    """One sync pass of `cfg` into the store at `path`, in this process; `sleeps` collects the
    transport's backoff sleeps."""
    from wandb_mirror.sync import SyncEngine, make_client

    store = Store(path)
    client = make_client(cfg)
    if sleeps is not None:
        real = client.t._sleep

        def sleep(s: float) -> None:  # the transport's own sleep, observed (it still sleeps)
            sleeps.append(s)
            real(s)

        client.t._sleep = sleep
    try:
        with store.lock("test"):
            return SyncEngine(cfg, store, client).run_pass()
    finally:
        client.close()
        store.close()


def killed_at(config: Path, point: str, n: int, command: str) -> subprocess.CompletedProcess:
    """`wandb-mirror COMMAND --config CONFIG --once` as a process killed with SIGKILL at the n-th
    time it reaches the fault point `point` (store/faults.py)."""
    env = child_env(WANDB_MIRROR_FAULTS=f"kill@{point}#{n}")
    args = [sys.executable, "-m", "wandb_mirror.cli", command, "--config", str(config), "--once"]
    if command == "run":
        args.append("--no-watch")
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------------------------------
# a misbehaving front for a real server
# ---------------------------------------------------------------------------------------------
Answer = tuple[int, dict[str, str], bytes]


class Proxy:
    """Forwards every request to `upstream` (a real `serve`), except where the test intervenes.

    `intercept(req) -> Answer | None` may answer instead of the server (req: method, path, headers,
    body, op, variables), or change req["body"] and return None to forward the changed request.
    `rewrite(req, doc) -> doc` may change a GraphQL answer. Every request is logged with its arrival
    time and the status the client got.
    """

    def __init__(self, upstream: str, *, intercept: Callable[[dict[str, Any]], Answer | None] | None = None,
                 rewrite: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None):
        self.upstream = upstream.rstrip("/")
        self.intercept = intercept
        self.rewrite = rewrite
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {}
        proxy = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # headers and body in one segment

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed ACKs

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

            def do_HEAD(self) -> None:
                self.handle_any("HEAD")

            def do_PUT(self) -> None:
                self.handle_any("PUT")

            def handle_any(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req: dict[str, Any] = {"method": method, "path": self.path, "headers": dict(self.headers), "body": body,
                                       "op": None, "variables": {}, "t": time.monotonic(),
                                       "digest": hashlib.sha256(method.encode() + self.path.encode() + body).hexdigest()}
                if method == "POST" and self.path.rstrip("/").endswith("graphql"):
                    try:
                        doc = json.loads(body)
                        req["op"] = doc.get("operationName")
                        req["variables"] = doc.get("variables") or {}
                    except ValueError:
                        pass
                answer = proxy.intercept(req) if proxy.intercept else None
                if answer is None:
                    s = getattr(local, "session", None)
                    if s is None:
                        s = local.session = requests.Session()
                        s.trust_env = False
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                    r = s.request(method, proxy.upstream + self.path, data=req["body"] or None, headers=headers,
                                  allow_redirects=False, timeout=60)
                    status, out = r.status_code, r.content
                    rh = {k: v for k, v in r.headers.items()
                          if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding")}
                    if proxy.rewrite and req["op"] and status == 200:
                        try:
                            doc = json.loads(out)
                        except ValueError:
                            doc = None
                        if isinstance(doc, dict):
                            out = json.dumps(proxy.rewrite(req, doc)).encode()
                    answer = (status, rh, out)
                status, rh, out = answer
                req["status"] = status
                with proxy.lock:
                    proxy.log.append(req)
                if status == 0:  # drop the connection without an answer
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in rh.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def requests(self, op: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.log if op is None or r["op"] == op]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_answer(status: int, doc: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode()


# ---------------------------------------------------------------------------------------------
# comparing a mirror with its upstream
# ---------------------------------------------------------------------------------------------
def _h(rows: list[Any]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _norm_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return ("unparsable", text)


def mirror_state(path: Any, entity: str = ENTITY) -> dict[str, Any]:
    """What the store holds for `entity`: runs with config/summary/history/events/files, artifact
    versions with their entries, sweeps, reports. Local bookkeeping (pks, mirrored_at) is left out.
    `path`: a store directory, or a StoreLocation (a PostgreSQL catalog, S3 objects)."""
    store = open_store(path, create=False, readonly=True)
    try:
        q = store.catalog.query
        out: dict[str, Any] = {}
        for p in q("SELECT pk, name FROM projects WHERE entity = ? ORDER BY name", [entity]):
            runs = {}
            for r in q("SELECT * FROM runs WHERE project_pk = ? ORDER BY run_id", [p["pk"]]):
                hist = [(step, _norm_json(text)) for step, text in store.history.texts(r["pk"])]
                runs[r["run_id"]] = {
                    **{k: r[k] for k in ("state", "display_name", "tags", "notes", "group_name", "job_type", "sweep_name",
                                         "created_at", "heartbeat_at", "last_step", "tombstoned_at")},
                    "tombstoned_at": r["tombstoned_at"] is not None,
                    "config": _norm_json(r["config"]), "summary": _norm_json(r["summary"]),
                    "history": (len(hist), _h(hist)),
                    "events": q("SELECT COUNT(*) AS n FROM events WHERE run_pk = ?", [r["pk"]])[0]["n"],
                    "files": [(f["name"], f["md5"], f["size"]) for f in q(
                        "SELECT name, md5, size FROM files WHERE run_pk = ? AND tombstoned_at IS NULL ORDER BY name",
                        [r["pk"]])],
                }
            arts = {}
            for a in q("SELECT a.*, c.name AS coll FROM artifacts a JOIN artifact_collections c ON c.pk = a.collection_pk "
                       "WHERE c.project_pk = ? ORDER BY c.name, a.version_index", [p["pk"]]):
                entries = [(e["path"], e["digest"], e["size"], e["md5"]) for e in q(
                    "SELECT path, digest, size, md5 FROM artifact_files WHERE artifact_pk = ? ORDER BY path", [a["pk"]])]
                arts[f"{a['coll']}:v{a['version_index']}"] = {
                    "digest": a["digest"], "aliases": _norm_json(a["aliases"]), "state": a["state"], "size": a["size"],
                    "entries": entries, "tombstoned": a["tombstoned_at"] is not None}
            sweeps = {s["name"]: (s["state"], s["best_loss"], s["run_count"], s["config"]) for s in q(
                "SELECT * FROM sweeps WHERE project_pk = ? ORDER BY name", [p["pk"]])}
            reports = sorted((r["id"], r["name"]) for r in q("SELECT id, name FROM reports WHERE project_pk = ?", [p["pk"]]))
            out[p["name"]] = {"runs": runs, "artifacts": arts, "sweeps": sweeps, "reports": reports}
        return out
    finally:
        store.close()


def state_diff(a: dict[str, Any], b: dict[str, Any], where: str = "") -> list[str]:
    """Human-readable differences between two `mirror_state` values (empty: equal)."""
    out: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{where}/{k}: only in the mirror")
            elif k not in b:
                out.append(f"{where}/{k}: missing from the mirror")
            else:
                out += state_diff(a[k], b[k], f"{where}/{k}")
    elif clean(a) != clean(b):
        out.append(f"{where}: upstream {str(a)[:150]} != mirror {str(b)[:150]}")
    return out


def official_diff(A: Any, B: Any, entity: str, projects: list[str], tmp: Path) -> list[str]:
    """Differences between two servers as the official client sees them (A: upstream, B: mirror)."""
    diffs: list[str] = []

    def cmp(what: str, a: Any, b: Any) -> None:
        ja, jb = (json.dumps(x, sort_keys=True, default=str) for x in (a, b))  # NaN == NaN here
        if ja != jb:
            diffs.append(f"{what}: upstream {ja[:300]} != mirror {jb[:300]}")

    cmp("projects", sorted(p.name for p in A.projects(entity)), sorted(p.name for p in B.projects(entity)))
    for p in projects:
        path = f"{entity}/{p}"
        ra, rb = list(A.runs(path)), list(B.runs(path))
        cmp(f"{p} runs", [r.id for r in ra], [r.id for r in rb])
        for x, y in zip(ra, rb):
            for attr in ("name", "state", "tags", "notes", "group", "job_type", "created_at", "sweep_name",
                         "lastHistoryStep"):
                cmp(f"{x.id}.{attr}", getattr(x, attr), getattr(y, attr))
            cmp(f"{x.id}.config", x.config, y.config)
            cmp(f"{x.id}.summary", dict(x.summary), dict(y.summary))
            cmp(f"{x.id}.scan_history", list(x.scan_history()), list(y.scan_history()))
            cmp(f"{x.id}.files", sorted((f.name, f.md5, f.size) for f in x.files()),
                sorted((f.name, f.md5, f.size) for f in y.files()))
            cmp(f"{x.id}.logged", [(a.name, a.digest, a.aliases) for a in x.logged_artifacts()],
                [(a.name, a.digest, a.aliases) for a in y.logged_artifacts()])
        for t in A.artifact_types(path):
            for c in t.collections():
                va = [(v.name, v.digest, v.aliases, v.size) for v in A.artifacts(t.name, f"{path}/{c.name}")]
                vb = [(v.name, v.digest, v.aliases, v.size) for v in B.artifacts(t.name, f"{path}/{c.name}")]
                cmp(f"{c.name} versions", va, vb)
                for v in B.artifacts(t.name, f"{path}/{c.name}"):
                    root = v.download(root=str(tmp / p / c.name / v.version))
                    v.verify(root=root)  # raises on any byte that does not match the manifest
        cmp(f"{p} sweeps", sorted((s.id, s.state) for s in A.project(p, entity).sweeps()),
            sorted((s.id, s.state) for s in B.project(p, entity).sweeps()))
    return diffs


# ---------------------------------------------------------------------------------------------
# store hygiene
# ---------------------------------------------------------------------------------------------
def store_problems(path: Path) -> list[str]:
    """Temp files left behind, and files or directories others could read or write."""
    out: list[str] = []
    tmp = path / "objects" / "tmp"
    if tmp.exists():
        out += [f"temp file left: {p.name}" for p in tmp.iterdir()]
    for p in [path, *path.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            out.append(f"{p.relative_to(path.parent)}: mode {mode:04o} lets others in")
    return out


def verify_deep(path: Any) -> list[str]:
    from wandb_mirror.verify import verify_store

    store = open_store(path, create=False)
    try:
        return verify_store(store, deep=True).problems
    finally:
        store.close()


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    """Every path under `root` except those under `skip` (to prove nothing was written elsewhere)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if any(d == s or s in d.parents for s in skip):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            out.add(str((d / n).relative_to(root)))
    return out


# ---------------------------------------------------------------------------------------------
# change events: a recording plugin, and what it must have seen
# ---------------------------------------------------------------------------------------------
RECORDER = '''"""recorder: one line per event received (reliability tests)."""
import os

from wandb_mirror.hooks import hookimpl


def _w(config, line):
    fd = os.open(config["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@hookimpl
def run_created(run, config):
    _w(config, f"run_created {run.path}")


@hookimpl
def run_state_changed(run, old, new, config):
    _w(config, f"run_state_changed {run.path} {old}->{new}")


@hookimpl
def run_updated(run, changes, config):
    _w(config, f"run_updated {run.path} {sorted(changes)}")


@hookimpl
def history_appended(run, first_step, last_step, config):
    _w(config, f"history_appended {run.path} {first_step}-{last_step}")


@hookimpl
def file_mirrored(run, file, config):
    _w(config, f"file_mirrored {run.path}/{file.name}")


@hookimpl
def artifact_version_mirrored(artifact, config):
    _w(config, f"artifact_version_mirrored {artifact.id}")


@hookimpl
def artifact_aliases_changed(artifact, added, removed, config):
    _w(config, f"artifact_aliases_changed {artifact.id} {sorted(added)} {sorted(removed)}")


@hookimpl
def sweep_updated(sweep, config):
    _w(config, f"sweep_updated {sweep.name}")


@hookimpl
def sweep_finished(sweep, config):
    _w(config, f"sweep_finished {sweep.name}")


@hookimpl
def tombstoned(kind, key, config):
    _w(config, f"tombstoned {kind} {key}")
'''


def expected_lines(store_path: Any) -> list[str]:
    """What the recorder must have written, from the change log."""
    out = []
    with open_store(store_path, create=False) as s:
        for c in s.catalog.query("SELECT * FROM changes ORDER BY seq"):
            p = json.loads(c["payload"])
            run = f"{c['entity']}/{c['project']}/{c['run']}"
            k = c["kind"]
            line = {
                "run_created": lambda: f"{k} {run}",  # noqa: B023 - used at once
                "run_state_changed": lambda: f"{k} {run} {p.get('old')}->{p.get('new')}",  # noqa: B023
                "run_updated": lambda: f"{k} {run} {sorted(p.get('changes') or {})}",  # noqa: B023
                "history_appended": lambda: f"{k} {run} {p.get('first_step')}-{p.get('last_step')}",  # noqa: B023
                "file_mirrored": lambda: f"{k} {run}/{p.get('name')}",  # noqa: B023
                "artifact_version_mirrored": lambda: f"{k} {c['subject']}",  # noqa: B023
                "artifact_aliases_changed": lambda: f"{k} {c['subject']} {sorted(p['added'])} {sorted(p['removed'])}",  # noqa: B023
                "sweep_updated": lambda: f"{k} {c['subject']}",  # noqa: B023
                "sweep_finished": lambda: f"{k} {c['subject']}",  # noqa: B023
                "tombstoned": lambda: f"{k} {p.get('kind')} {p.get('key')}",  # noqa: B023
            }[k]()
            out.append(line)
    return out


def undelivered(where: Any, events: Path) -> list[str]:
    """Change-log lines the recording plugin never wrote into `events`."""
    seen = set(events.read_text().splitlines())
    return [x for x in expected_lines(where) if x not in seen]


def announced_twice(where: Any) -> list[dict[str, Any]]:
    """Runs and artifact versions whose creation the change log holds more than once."""
    with open_store(where, create=False) as s:
        return s.catalog.query(
            "SELECT kind, entity, project, run, subject, COUNT(*) AS n FROM changes "
            "WHERE kind IN ('run_created', 'artifact_version_mirrored') "
            "GROUP BY kind, entity, project, run, subject HAVING COUNT(*) > 1")


def running_passes(where: Any) -> int:
    with open_store(where, create=False) as s:
        return int(s.catalog.scalar("SELECT COUNT(*) FROM passes WHERE status = 'running'"))


def grow_upstream(up: Path, i: int) -> None:
    """What a team does between two passes: the running run logs more history, a new run appears
    with a new file, and a new project with a run and an artifact version."""
    from wandb_mirror.fixtures import seed
    from wandb_mirror.ids import run_storage_id
    from wandb_mirror.models import Run

    with Store(up) as s:
        cat = s.catalog
        ppk = cat.project_pk(ENTITY, "alpha")
        run = cat.query_one("SELECT * FROM runs WHERE project_pk = ? AND run_id = 'a3'", [ppk])
        last = [r for _, r in s.history.rows(run["pk"], min_step=s.history.last_step(run["pk"]))][-1]
        rows = [dict(last, _step=last["_step"] + k, loss=round(1 / (k + i + 1), 6)) for k in range(1, 16)]
        s.history.append(run["pk"], ((r["_step"], json.dumps(r)) for r in rows))
        keys = json.loads(run["history_keys"])
        keys["lastStep"] = rows[-1]["_step"]
        now = (datetime(2024, 6, 1) + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S")
        with cat.transaction() as conn:
            conn.execute("UPDATE runs SET summary = ?, history_keys = ?, last_step = ?, "
                         "history_line_count = history_line_count + ?, heartbeat_at = ?, updated_at = ? WHERE pk = ?",
                         [json.dumps(rows[-1]), json.dumps(keys), rows[-1]["_step"], len(rows), now, now, run["pk"]])
        new = Run.from_row(cat.query_one("SELECT * FROM runs WHERE project_pk = ? AND run_id = 'a2'", [ppk]))
        new.run_id = f"n{i:02d}"
        new.storage_id = run_storage_id(ENTITY, "alpha", new.run_id)
        new.created_at = new.heartbeat_at = new.updated_at = now
        npk = cat.upsert_run(ppk, new)
        info = s.objects.put_bytes(f"new file of run {new.run_id}\n".encode() * 50)
        from wandb_mirror.models import RunFile

        cat.upsert_file(npk, RunFile(name="notes.txt", size=info.size, md5=info.md5, updated_at=now,
                                     mimetype="text/plain"))
        seed(s, {"projects": [{"entity": ENTITY, "name": f"delta{i:02d}", "created_at": now, "runs": [
            {"id": f"d{i:02d}", "history": {"steps": 25, "metrics": ["x"], "seed": i},
             "files": [{"name": "blob.bin", "size": 5000 + i, "seed": i}]}],
            "artifacts": [{"name": "dd", "type": "dataset", "versions": [
                {"files": [{"path": "q.txt", "text": f"q{i}"}, {"path": "r.bin", "size": 3000, "seed": i}],
                 "created_by": f"d{i:02d}"}]}]}]})
