"""Mirroring the organization side: registries and links, console output, members, integrations and
automations. The official client reads the same answers from the served upstream and the served
mirror, before and after upstream edits; each edit arrives with its event; no secret is stored."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import ENGINES, ENTITY, PROJECT
from org_fixture import org_fixture_doc, seed_org_store

from wandb_mirror.client.org_documents import ALL as ORG_DOCUMENTS
from wandb_mirror.client.redact import REDACTED, redact
from wandb_mirror.config import minimal_config
from wandb_mirror.hooks import hookimpl
from wandb_mirror.hooks.delivery import DeliverySettings, Dispatcher
from wandb_mirror.hooks.manager import PluginSet
from wandb_mirror.store import Store
from wandb_mirror.store.location import StoreLocation
from wandb_mirror.sync import SyncEngine, make_client
from wandb_mirror.sync.org_units import RunRef, sync_org_side

SECRET = "hunter2-s3cr3t"


class OrgRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def artifact_linked(self, artifact, registry, collection):
        self.calls.append(("artifact_linked", (artifact.qualified_name, registry, collection)))

    @hookimpl
    def artifact_unlinked(self, artifact, registry, collection):
        self.calls.append(("artifact_unlinked", (artifact.qualified_name, registry, collection)))

    @hookimpl
    def registry_aliases_changed(self, artifact, registry, collection, added, removed):
        self.calls.append(("registry_aliases_changed", (artifact.qualified_name, collection, added, removed)))

    @hookimpl
    def console_appended(self, run, first_line, last_line):
        self.calls.append(("console_appended", (run.run_id, first_line, last_line)))

    @hookimpl
    def automation_changed(self, automation, changes):
        self.calls.append(("automation_changed", (automation.name, sorted(changes))))


def _api(url: str, make_wandb_api: Any) -> Any:
    import wandb

    make_wandb_api(url)  # a fresh cache dir
    return wandb.Api(api_key="x" * 40, overrides={"base_url": url, "entity": ENTITY}, timeout=60)


def _view(api: Any, tmp: Path) -> dict[str, Any]:
    """What a user reads of the organization side through the official client."""
    out: dict[str, Any] = {}
    out["registries"] = sorted((r.name, r.description, r.visibility, sorted(r.artifact_types)) for r in api.registries())
    out["collections"] = sorted((c.name, c.type, c.tags, c.description) for c in api.registries().collections())
    out["versions"] = sorted((a.name, sorted(a.aliases), a.source_name) for a in api.registries().versions())
    out["production"] = sorted(a.name for a in api.registries().versions(filter={"alias": "production"}))
    art = api.artifact("wandb-registry-model/yolo-detector:production")
    root = art.download(str(tmp / "prod"))
    art.verify(root)
    out["download"] = (art.source_name, sorted(p.name for p in Path(root).iterdir()))
    out["console"] = {r: [(ln.number, ln.level, ln.content, ln.timestamp) for ln in api.run(f"{ENTITY}/{PROJECT}/{r}").console_logs()]
                      for r in ("r01", "r04")}
    out["tail"] = [ln.number for ln in api.run(f"{ENTITY}/{PROJECT}/r04").console_logs(last=3)]
    out["org"] = (api.organization().name, api.organization().org_entity.name)
    out["members"] = sorted((m.username, m.admin, m.pending) for m in api.team(ENTITY).members)
    out["automations"] = sorted((a.name, a.enabled, a.description, a.scope.name, a.event.event_type.value,
                                 type(a.action).__name__) for a in api.automations(entity=ENTITY))
    out["webhooks"] = sorted((i.name, i.url_endpoint) for i in api.webhook_integrations(entity=ENTITY))
    out["slack"] = sorted((i.team_name, i.channel_name) for i in api.slack_integrations(entity=ENTITY))
    return out


def _mirror_pass(cfg: Any, store: Store, client: Any) -> dict[str, Any]:
    """One sync pass; the organization side is part of it. Returns the pass's statistics."""
    with store.lock("test"):
        result = SyncEngine(cfg, store, client).run_pass()
    assert result.status == "ok", result.errors
    return {k: result.stats.get(k, 0) for k in ("registries", "registry_links", "links_new", "links_removed",
                                                 "link_alias_moves", "console_lines", "automations_changed")}


def _events(store: Store) -> list[tuple[str, str | None, dict[str, Any]]]:
    rows = store.catalog.conn.execute("SELECT kind, subject, payload FROM changes WHERE kind IN "
                                      "('artifact_linked', 'artifact_unlinked', 'registry_aliases_changed', "
                                      "'console_appended', 'automation_changed') ORDER BY seq").fetchall()
    return [(k, s, json.loads(p)) for k, s, p in rows]


def _edit_upstream(path: Path) -> None:
    """What users do upstream between two passes: link a version, move an alias, log more lines,
    edit an automation, and add a webhook whose URL carries credentials."""
    conn = sqlite3.connect(path / "catalog.db")
    with conn:
        coll = conn.execute("SELECT pk FROM artifact_collections WHERE name = 'yolo-detector'").fetchone()[0]
        cnn = conn.execute("SELECT pk FROM artifacts a WHERE a.type_name = 'model'").fetchone()[0]
        conn.execute("UPDATE artifact_links SET aliases = '[\"staging\"]' WHERE collection_pk = ? AND version_index = 1",
                     [coll])
        conn.execute("UPDATE artifact_links SET aliases = '[\"production\"]' WHERE collection_pk = ? AND version_index = 0",
                     [coll])
        conn.execute("INSERT INTO artifact_links (collection_pk, artifact_pk, membership_id, version_index, aliases, "
                     "created_at) VALUES (?, ?, 'QUNNOm5ldw==', 2, '[\"latest\"]', '2024-05-01T00:00:00')", [coll, cnn])
        run = conn.execute("SELECT pk FROM runs WHERE run_id = 'r04'").fetchone()[0]
        conn.executemany("INSERT INTO console_lines (run_pk, number, timestamp, level, label, line) VALUES (?,?,?,?,?,?)",
                         [(run, 2500 + i, "2024-06-01T00:00:00", "", "", f"late line {i}") for i in range(7)])
        conn.execute("UPDATE automations SET enabled = 0, description = 'paused', updated_at = '2024-06-01T00:00:00' "
                     "WHERE name = 'deploy'")
        conn.execute("INSERT INTO integrations (id, entity, kind, name, url_endpoint, created_at) VALUES "
                     f"('SW50OjE=', ?, 'GenericWebhookIntegration', 'leaky', "
                     f"'https://bot:{SECRET}@hooks.example.com/x?token={SECRET}&team=ml', '2024-06-01T00:00:00')",
                     [ENTITY])
    conn.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_registries_console_and_org_mirrored_incrementally(request: pytest.FixtureRequest, engine: str,
                                                          tmp_path: Path, start_mirror_server: Any,
                                                          make_wandb_api: Any, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    up_path = seed_org_store(tmp_path / "up")
    up = start_mirror_server(up_path, read_only=True)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = minimal_config(up.url, tmp_path / "mirror")
    catalog = str(request.getfixturevalue("pg_url")) if engine == "postgresql" else None
    where = StoreLocation(path=tmp_path / "mirror", catalog=catalog)
    store, client = Store(tmp_path / "mirror", catalog=catalog), make_client(cfg)
    try:
        first = _mirror_pass(cfg, store, client)
        assert (first["registries"], first["registry_links"], first["links_new"]) == (2, 3, 3)
        assert first["console_lines"] == 2503 and first["automations_changed"] == 2
        kinds = [k for k, _, _ in _events(store)]
        assert kinds.count("artifact_linked") == 3 and kinds.count("automation_changed") == 2
        assert kinds.count("console_appended") == 2
        mirror = start_mirror_server(where, read_only=True)
        before = _view(_api(up.url, make_wandb_api), tmp_path / "a")
        assert _view(_api(mirror.url, make_wandb_api), tmp_path / "b") == before
        assert before["production"] == ["yolo-detector:v1"]

        # an unchanged pass: nothing new
        seen = len(_events(store))
        up.reset_log()
        again = _mirror_pass(cfg, store, client)
        assert [again[k] for k in ("links_new", "link_alias_moves", "console_lines", "automations_changed")] == [0] * 4
        assert len(_events(store)) == seen
        # what the organization side costs an unchanged pass: a constant, plus one count per unfinished run
        names = {d.name for d in ORG_DOCUMENTS}
        ops = Counter(e["operation"] for e in up.request_log() if e["operation"] in names)
        unfinished = [r for r in org_fixture_doc()["projects"][0]["runs"] if r.get("state") == "running"]
        assert ops == Counter({"FetchOrgInfoFromEntity": 1, "FetchOrganization": 1, "TeamMembers": 1,
                               "IntegrationsByEntity": 1, "GetEntityAutomations": 1, "FetchRegistries": 1,
                               "RegistryCollections": 1, "RegistryLinks": 1, "RunConsoleLogCount": len(unfinished)})

        _edit_upstream(up_path)
        up.reset_log()
        edited = _mirror_pass(cfg, store, client)
        new = _events(store)[seen:]
        assert (edited["links_new"], edited["link_alias_moves"], edited["console_lines"]) == (1, 2, 7)
        assert [p["version_index"] for k, _, p in new if k == "artifact_linked"] == [2]
        moves = {p["version_index"]: (p["added"], p["removed"]) for k, _, p in new if k == "registry_aliases_changed"}
        assert moves == {0: (["production"], ["staging"]), 1: (["staging"], ["latest", "production"])}
        [console] = [p for k, _, p in new if k == "console_appended"]
        assert (console["first_line"], console["last_line"]) == (2500, 2506)
        [auto] = [p for k, _, p in new if k == "automation_changed"]
        assert auto["changes"]["enabled"] == {"before": 1, "after": 0} and auto["name"] == "deploy"
        # console lines of the running run: the count, then only the missing tail
        ops = [e["operation"] for e in up.request_log()]
        assert ops.count("RunConsoleLogTail") == 1
        after = _view(_api(up.url, make_wandb_api), tmp_path / "c")
        assert after != before and after["production"] == ["yolo-detector:v0"]
        mirrored = _view(_api(mirror.url, make_wandb_api), tmp_path / "d")
        # the only difference: the mirror keeps no credentials of a webhook URL
        leaky = [w for w in after["webhooks"] if w[0] == "leaky"]
        assert leaky and SECRET in leaky[0][1]
        assert mirrored["webhooks"] == sorted([w for w in after["webhooks"] if w[0] != "leaky"]
                                              + [("leaky", f"https://hooks.example.com/x?token={REDACTED}&team=ml"
                                                  .replace("[", "%5B").replace("]", "%5D"))])
        assert {k: v for k, v in mirrored.items() if k != "webhooks"} == {k: v for k, v in after.items()
                                                                           if k != "webhooks"}
        # the hooks: delivered to a plugin with catalog objects, like every other event
        rec = OrgRecorder()
        plugins = PluginSet.load(builtins=False, entrypoints=False, extra={"rec": rec})
        assert plugins.configure({"rec": {"enabled": True}}) == []
        d = Dispatcher(store, plugins, settings=DeliverySettings(hook_timeout=5.0, max_failures=3, retry_backoff=0.0,
                                                                 retry_backoff_max=0.0, stop_grace=0.5))
        d.deliver()
        d.close()
        assert rec.calls.count(("artifact_linked", (f"{ENTITY}/{PROJECT}/cnn:v0", "model", "yolo-detector"))) == 1
        assert ("artifact_linked", (f"{ENTITY}/{PROJECT}/mnist:v1", "model", "yolo-detector")) in rec.calls
        assert ("registry_aliases_changed", (f"{ENTITY}/{PROJECT}/mnist:v0", "yolo-detector", ["production"],
                                             ["staging"])) in rec.calls
        assert ("console_appended", ("r04", 2500, 2506)) in rec.calls
        assert ("automation_changed", ("deploy", ["description", "enabled"])) in rec.calls
        if catalog is not None:  # no secret in any row of the PostgreSQL catalog
            for (table,) in store.catalog.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                assert SECRET not in repr(store.catalog.query(f"SELECT * FROM {table}")), table
    finally:
        client.close()
        store.close()
    # no secret in the catalog (its WAL included), nor in anything logged
    for f in (tmp_path / "mirror").glob("catalog.db*"):
        assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in caplog.text


def test_redact_keeps_names_and_urls_but_no_secrets() -> None:
    got = redact({"name": "hook", "secretRef": "abc", "accessToken": "t", "urlEndpoint":
                  f"https://u:{SECRET}@h.example.com/p?sig={SECRET}&a=1", "nested": [{"api_key": "k", "ok": 1}]})
    assert got["name"] == "hook" and got["secretRef"] == REDACTED and got["accessToken"] == REDACTED
    assert SECRET not in json.dumps(got) and got["nested"] == [{"api_key": REDACTED, "ok": 1}]
    assert got["urlEndpoint"].startswith("https://h.example.com/p?")


def test_a_server_without_the_organization_api_is_skipped_not_failed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An older W&B answers these queries with validation errors: nothing to mirror, no pass error,
    and console output is not asked once per run."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Old(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(body.get("operationName") or "")
            out = json.dumps({"errors": [{"message": 'Cannot query field "organization" on type "Entity".'}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = minimal_config(f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "m")
    store, client = Store(tmp_path / "m"), make_client(cfg)
    try:
        runs = [RunRef(ENTITY, PROJECT, f"r{i}", i) for i in range(5)]
        stats, errors = sync_org_side(store.catalog, client, None, [ENTITY], runs)
    finally:
        client.close()
        store.close()
        server.shutdown()
    assert errors == []
    assert stats.unsupported == [f"{ENTITY}: organization", f"{ENTITY}/{PROJECT}/r0: console"]
    assert asked.count("RunConsoleLogCount") == 1
