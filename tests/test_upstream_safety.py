"""Write-back never harms upstream: a read-modify-write changes only the keys it means to change,
against upstream's state read just before the write (a user's edit made through the official client
after the mirror's copy survives), and every real write is journaled ahead of the call, settled
after a kill -9 by reading upstream, and never an error when its effect already happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_plugins_support import ENTITY, PROJECT, seed_store, serve_writable_copy

from wandb_mirror.daemon import Daemon
from wandb_mirror.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seeded_upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_store(tmp_path_factory.mktemp("safety") / "upstream")


@pytest.fixture
def upstream(seeded_upstream: Path, tmp_path: Path, start_mirror_server, monkeypatch: pytest.MonkeyPatch):
    return serve_writable_copy(seeded_upstream, tmp_path, start_mirror_server, monkeypatch)


def _config(tmp_path: Path, url: str, plugins: str) -> Path:
    cfg = tmp_path / "mirror.toml"
    # reconcile once a day: finished runs are not re-read, so the mirror's copy stays what it was
    cfg.write_text(f'[source]\nbase_url = "{url}"\nprojects = ["{ENTITY}/{PROJECT}"]\nreports = false\n'
                   f'[store]\npath = "{tmp_path / "mirror"}"\n[sync]\nreconcile_interval = "24h"\n'
                   f'[daemon]\npoll_interval = "1s"\n{plugins}\n')
    return cfg


def _cycle(cfg: Path) -> None:
    assert Daemon(cfg, install_signals=False, max_cycles=1, watch=False).run() == 0


def _up(path: Path, sql: str, args: list[Any]) -> Any:
    with Store(path, create=False, readonly=True) as s:
        return s.catalog.scalar(sql, args)


def test_summary_backfill_keeps_a_key_the_user_added_upstream(upstream, tmp_path: Path, make_wandb_api) -> None:
    server, up = upstream
    plugin = '[plugins.summary_backfill]\nenabled = true\ndry_run = {dry}\n[plugins.summary_backfill.rules]\nloss = "min"\n'
    cfg = _config(tmp_path, server.url, plugin.format(dry="true"))
    _cycle(cfg)  # the mirror's copy of a1 (summary {"loss": 0.3}); the repair journaled in dry-run
    run = make_wandb_api(server.url).run(f"{ENTITY}/{PROJECT}/a1")
    run.summary.update({"user_eval": 0.93})  # the user's edit, through the official client
    assert json.loads(_up(up, "SELECT summary FROM runs WHERE run_id = 'a1'", []))["user_eval"] == 0.93
    cfg.write_text(cfg.read_text().replace("dry_run = true", "dry_run = false"))
    _cycle(cfg)
    summary = json.loads(_up(up, "SELECT summary FROM runs WHERE run_id = 'a1'", []))
    assert summary == {"loss": 0.05, "acc": 0.7, "user_eval": 0.93}
    with Store(tmp_path / "mirror", create=False, readonly=True) as s:
        row = s.catalog.query_one("SELECT before, after, result FROM journal WHERE plugin = 'summary_backfill' "
                                  "AND dry_run = 0")
    assert row["result"] == "ok"
    assert json.loads(row["before"])["user_eval"] == 0.93 and json.loads(row["after"])["user_eval"] == 0.93


def _writer(server: Any, store: Store) -> Any:
    from wandb_mirror.config import minimal_config
    from wandb_mirror.hooks.upstream import Upstream
    from wandb_mirror.sync.engine import make_client

    return Upstream("tester", store, make_client(minimal_config(server.url, store.path)).t, dry_run=False)


def test_every_read_modify_write_keeps_upstream_edits(upstream, tmp_path: Path, make_wandb_api) -> None:
    from wandb_mirror.hooks.store_view import StoreView

    server, up = upstream
    _cycle(_config(tmp_path, server.url, ""))
    api = make_wandb_api(server.url)
    with Store(tmp_path / "mirror") as store:
        view = StoreView(store, "tester")
        a1 = view.run(ENTITY, PROJECT, "a1")  # the mirror's copy, taken before the user's edits
        art = next(a for a in view.artifacts(ENTITY, PROJECT, collection="weights") if a.version_index == 0)
        # the user edits upstream through the official client
        r = api.run(f"{ENTITY}/{PROJECT}/a1")
        r.summary.update({"user_eval": 1})
        r = api.run(f"{ENTITY}/{PROJECT}/a1")
        r.config["user_cfg"] = "theirs"
        r.tags = [*r.tags, "user-tag"]
        r.update()
        a = api.artifact(f"{ENTITY}/{PROJECT}/weights:v0")
        a.aliases.append("user-alias")
        a.save()
        w = _writer(server, store)
        assert w.set_summary(a1, {**a1.summary_values(), "acc": 0.7}).result == "ok"
        assert w.set_config(a1, {**a1.config_values(), "lr": 0.5}).result == "ok"
        assert w.set_tags(a1, [*a1.tag_list(), "best"]).result == "ok"
        assert w.set_notes(a1, "checked").result == "ok"
        assert w.add_alias(art, "champion").result == "ok"
        # the mirror never saw "user-alias": the writer reads upstream, so removing it works
        assert w.remove_alias(art, "user-alias").result == "ok"
    r = make_wandb_api(server.url).run(f"{ENTITY}/{PROJECT}/a1")
    assert r.summary["user_eval"] == 1 and r.summary["acc"] == 0.7 and r.summary["loss"] == 0.3
    assert r.config["user_cfg"] == "theirs" and r.config["lr"] == 0.5
    assert sorted(r.tags) == ["best", "keep", "user-tag"] and r.notes == "checked"
    aliases = json.loads(_up(up, "SELECT aliases FROM artifacts WHERE version_index = 0", []))
    assert "champion" in aliases and "user-alias" not in aliases


KILLER = textwrap.dedent('''
    import os, signal, sys
    from wandb_mirror.config import minimal_config
    from wandb_mirror.hooks.store_view import StoreView
    from wandb_mirror.hooks.upstream import Upstream
    from wandb_mirror.store import Store
    from wandb_mirror.sync.engine import make_client

    url, path, name = sys.argv[1:4]
    store = Store(path)
    inner = make_client(minimal_config(url, store.path)).t

    class DieAfterSending:
        def graphql(self, operation, query, variables=None):
            out = inner.graphql(operation, query, variables)
            if "deleteFiles" in query:  # the mutation reached upstream: die before recording its answer
                os.kill(os.getpid(), signal.SIGKILL)
            return out

    view = StoreView(store, "cleanup")
    run = view.run("acme", "sweepy", "a1")
    f = next(f for f in view.files(run) if f.name == name)
    Upstream("cleanup", store, DieAfterSending(), dry_run=False).delete_file(run, f)
''')


def test_write_ahead_journal_survives_a_kill_and_settles(upstream, tmp_path: Path) -> None:
    from wandb_mirror.hooks.delivery import Dispatcher
    from wandb_mirror.hooks.manager import PluginSet
    from wandb_mirror.hooks.store_view import StoreView

    server, up = upstream
    _cycle(_config(tmp_path, server.url, ""))
    mirror = tmp_path / "mirror"
    # 1. intent before the call: while the mutation is in flight, its row is already committed
    seen: list[Any] = []
    with Store(mirror) as store:
        w = _writer(server, store)
        inner = w._transport

        class Spy:
            def graphql(self, operation: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
                if query.lstrip().startswith("mutation"):
                    with Store(mirror, create=False, readonly=True) as other:
                        seen.append(other.catalog.query_one("SELECT action, result FROM journal ORDER BY pk DESC"))
                return inner.graphql(operation, query, variables)

        w._transport = Spy()
        a1 = StoreView(store, "tester").run(ENTITY, PROJECT, "a1")
        assert w.add_tags(a1, "x").result == "ok"
    assert seen == [{"action": "tags", "result": "pending"}]
    # 2. kill -9 between the request and its answer: the intent stays, nothing else
    p = subprocess.run([sys.executable, "-c", KILLER, server.url, str(mirror), "plot.png"], cwd=ROOT,
                       env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    assert _up(up, "SELECT tombstoned_at FROM files WHERE name = 'plot.png' AND run_pk = "
                   "(SELECT pk FROM runs WHERE run_id = 'a1')", [])  # the deletion did happen upstream
    with Store(mirror) as store:
        rows = store.catalog.query("SELECT pk, action, result FROM journal WHERE plugin = 'cleanup'")
        assert [(r["action"], r["result"]) for r in rows] == [("delete_files", "pending")]
        # an intent that never left (a kill before the send) is settled as not applied
        with store.catalog.transaction() as conn:
            conn.execute("INSERT INTO journal (at, plugin, action, target, before, after, dry_run, result) "
                         "VALUES ('t', 'cleanup', 'notes', ?, '\"\"', '\"never sent\"', 0, 'pending')",
                         [f"{ENTITY}/{PROJECT}/a2"])
        # 3. the next start settles both by reading upstream
        d = Dispatcher(store, PluginSet(), transport=_writer(server, store)._transport)
        d.close()
        results = {r["action"]: r["result"] for r in store.catalog.query(
            "SELECT action, result FROM journal WHERE plugin = 'cleanup'")}
        assert results == {"delete_files": "ok: applied (settled at restart)",
                           "notes": "not applied (settled at restart)"}
        # 4. the redelivered event deletes again: already done, not an error (and nothing is sent)
        view = StoreView(store, "cleanup")
        a1 = view.run(ENTITY, PROJECT, "a1")
        f = next(f for f in view.files(a1) if f.name == "plot.png")
        server.reset_log()
        w = _writer(server, store)
        w.plugin = w._journal.plugin = "cleanup"
        assert w.delete_file(a1, f).result == "ok: already done upstream"
        assert "deleteFiles" not in [e["operation"] for e in server.request_log()]
        # and an alias add whose effect is there already is "unchanged", never an error
        art = next(a for a in view.artifacts(ENTITY, PROJECT, collection="weights") if a.version_index == 1)
        assert w.add_alias(art, "latest").result in ("unchanged", "ok")
        assert not [r for r in store.catalog.query("SELECT result FROM journal") if r["result"].startswith("error")]
