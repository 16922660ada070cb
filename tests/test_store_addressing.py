"""Addressing a store: the object store as a declared interface, one `open_store`, and every
command that takes `--store DIR` also taking `--config FILE` (the store its `[store]` table names,
including a catalog and objects kept apart with no `path`)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import ENTITY, copy_store
from scale_support import served, served_run_files

from wandb_mirror.cli import main
from wandb_mirror.store import LocalObjects, Objects, Store
from wandb_mirror.store.location import StoreLocation, open_store

STORE_COMMANDS = (["status", "--json"], ["verify", "--deep"], ["gc", "--dry-run"])


def split_store(src: Path, dst: Path) -> Path:
    """The store at `src` laid out as a catalog and an objects folder in unrelated places, and a
    config naming them (no [store] path)."""
    work = copy_store(src, dst / "work")
    (dst / "db").mkdir()
    shutil.move(work / "catalog.db", dst / "db" / "mirror.db")
    shutil.move(work / "objects", dst / "bytes")
    shutil.rmtree(work)
    cfg = dst / "mirror.toml"
    cfg.write_text('[source]\nbase_url = "http://127.0.0.1:9"\n\n[store]\ncatalog = "db/mirror.db"\n'
                   'objects = "bytes"\n')
    return cfg


def config_for(path: Path, store: Path) -> Path:
    path.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n\n[store]\npath = "{store}"\n')
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_local_objects_implement_the_declared_interface(tmp_path: Path) -> None:
    objs = LocalObjects(tmp_path / "objects")
    assert isinstance(objs, Objects)
    info = objs.put_bytes(b"hello", extra=("xxh128",))
    listed = list(objs.iter_objects())
    assert [(o.md5, o.size) for o in listed] == [(info.md5, 5)] and listed[0].mtime > 0
    assert objs.hash_object(info.md5, extra=("xxh128",)) == info
    with objs.open(info.md5) as f:
        assert f.read() == b"hello"
    objs.remove(info.md5)
    assert not objs.has(info.md5) and list(objs.iter_objects()) == []
    with pytest.raises(ValueError):
        objs.has("../../etc/passwd")


def test_open_store_from_a_config_with_catalog_and_objects_apart(seeded_store: Path, tmp_path: Path) -> None:
    from wandb_mirror.config import load_config

    cfg = load_config(split_store(seeded_store, tmp_path))
    assert cfg.store_path is None
    loc = StoreLocation.from_config(cfg)
    assert loc.catalog == str(tmp_path / "db" / "mirror.db") and loc.objects == str(tmp_path / "bytes")
    with open_store(cfg, create=False, readonly=True) as store, Store(seeded_store, readonly=True) as orig:
        assert sorted(o.md5 for o in store.objects.iter_objects()) == sorted(o.md5 for o in orig.objects.iter_objects())
        assert store.describe() == f"catalog {tmp_path / 'db' / 'mirror.db'}, objects {tmp_path / 'bytes'}"
        assert store.lock_path == tmp_path / "db" / "mirror.db.lock"  # beside the catalog it guards


@pytest.mark.parametrize("argv", STORE_COMMANDS, ids=lambda a: a[0])
def test_each_store_command_takes_config_and_sees_what_store_sees(seeded_store: Path, tmp_path: Path, capsys,
                                                                  argv: list[str]) -> None:
    store = copy_store(seeded_store, tmp_path / "store")
    rc_a, out_a, err_a = run_cli(capsys, *argv, "--store", str(store))
    for cfg in (config_for(tmp_path / "a.toml", store), split_store(seeded_store, tmp_path / "split")):
        for flag in ("--config", "-c"):
            rc_b, out_b, err_b = run_cli(capsys, *argv, flag, str(cfg))
            assert rc_b == rc_a == 0, err_b
            if argv[0] == "status":
                a, b = json.loads(out_a), json.loads(out_b)
                for d in (a, b):
                    d.pop("store"), d.pop("catalog"), d.pop("objects_at"), d.pop("lag_seconds", None)
                assert a == b and b["objects"] > 0
            elif argv[0] == "verify":
                assert out_b.split(" in ")[0] == out_a.split(" in ")[0] and "ok;" in out_b
            else:
                assert out_b == out_a


def test_export_takes_config(seeded_store: Path, tmp_path: Path, capsys) -> None:
    cfg = split_store(seeded_store, tmp_path / "split")
    rc, out, err = run_cli(capsys, "export", "--config", str(cfg), "--format", "jsonl", "--out", str(tmp_path / "out"),
                           "--project", f"{ENTITY}/vision")
    assert rc == 0, err
    runs = tmp_path / "out" / "jsonl" / "runs" / f"entity={ENTITY}" / "project=vision" / "runs.jsonl"
    assert runs.exists() and "wrote" in out


def test_serve_takes_config_and_serves_objects_from_the_named_folder(seeded_store: Path, tmp_path: Path) -> None:
    with served(split_store(seeded_store, tmp_path / "split")) as url:
        files = served_run_files(url, ENTITY, "vision", "r01")
    assert len(files) >= 5
    for f in files:
        assert base64.b64encode(hashlib.md5(f["body"]).digest()).decode() == f["md5"], f["name"]


@pytest.mark.parametrize(("store_toml", "message"), [
    ('catalog = "db/none.db"\nobjects = "bytes"\n', "catalog"),
    ('objects = "bytes"\n', "missing required key path (or both catalog and objects)"),
    ('path = "x"\nobjects = "ftp://host/x"\n', "unsupported URL scheme ftp://"),
    ('path = "x"\ncatalog = "s3://b/c.db"\n', "unsupported URL scheme s3://"),
])
def test_config_store_errors_are_one_line_exit_2(tmp_path: Path, capsys, store_toml: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n\n[store]\n{store_toml}')
    for argv in (["status"], ["verify"], ["gc"]):
        rc, out, err = run_cli(capsys, *argv, "--config", str(cfg))
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "db").exists() and not (tmp_path / "x").exists()  # a refused store is not created


def test_store_and_config_together_is_a_usage_error(seeded_store: Path, tmp_path: Path, capsys) -> None:
    cfg = config_for(tmp_path / "a.toml", seeded_store)
    with pytest.raises(SystemExit) as e:
        main(["status", "--store", str(seeded_store), "--config", str(cfg)])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_gc_never_removes_an_object_a_row_came_to_reference_while_it_listed(seeded_store: Path, tmp_path: Path) -> None:
    """Another writer on a shared catalog and bucket may reuse an old unreferenced object and commit
    the row that references it while gc lists the objects: gc marks again before it removes."""
    import sqlite3

    from wandb_mirror.gc import collect

    store_dir = copy_store(seeded_store, tmp_path / "store")
    with Store(store_dir) as store:
        cur = store.catalog.conn.execute("SELECT * FROM file_versions ORDER BY size DESC LIMIT 1")
        cols = [d[0] for d in cur.description]
        row = dict(zip(cols, cur.fetchone()))
        store.catalog.conn.execute("DELETE FROM file_versions WHERE rowid = (SELECT rowid FROM file_versions "
                                   "ORDER BY size DESC LIMIT 1)")
        store.catalog.conn.commit()
        listing = store.objects.iter_objects

        def listing_while_a_writer_commits():
            for n, obj in enumerate(listing()):
                if n == 1:
                    other = sqlite3.connect(store_dir / "catalog.db")
                    other.execute(f"INSERT INTO file_versions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                  tuple(row.values()))
                    other.commit()
                    other.close()
                yield obj

        store.objects.iter_objects = listing_while_a_writer_commits  # type: ignore[method-assign]
        rep = collect(store, grace_seconds=0)
        assert row["md5"] not in rep.removed_keys and store.objects.has(row["md5"])
        assert rep.unreferenced == 1 and rep.removed == 0


def test_the_daemon_and_sync_run_on_a_catalog_and_objects_apart(seeded_server, tmp_path: Path, capsys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[source]\nbase_url = "{seeded_server.url}"\n\n[store]\ncatalog = "db/catalog.db"\n'
                   'objects = "bytes"\n\n[sync]\nprogress = "never"\n')
    assert main(["run", "--config", str(cfg), "--once", "--no-watch"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert (tmp_path / "db" / "catalog.db").exists() and not (tmp_path / "db" / "objects").exists()
    n_objects = len(list((tmp_path / "bytes" / "md5").rglob("*")))
    assert n_objects > 0
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0  # a second writer, the same lock file
    assert main(["verify", "--deep", "-c", str(cfg)]) == 0
    assert "verify --deep: ok" in capsys.readouterr().out


def test_a_plugin_backend_is_what_config_commands_open(seeded_store: Path, tmp_path: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An enabled plugin's storage_backend wins over [store] objects, for every --config command."""
    store = copy_store(seeded_store, tmp_path / "store")
    moved = tmp_path / "elsewhere"
    shutil.move(store / "objects", moved)
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "elsewhere.py").write_text(
        "from wandb_mirror.hooks import hookimpl\n"
        "from wandb_mirror.store import LocalObjects\n"
        f"@hookimpl\ndef storage_backend(config):\n    return LocalObjects({str(moved)!r}, create=False)\n")
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[source]\nbase_url = "http://127.0.0.1:9"\n\n[store]\npath = "{store}"\n\n'
                   f'[daemon]\nplugins_dir = "{plugins_dir}"\n\n[plugins.elsewhere]\nenabled = true\n')
    rc, out, err = run_cli(capsys, "verify", "--deep", "--config", str(cfg))
    assert rc == 0 and "verify --deep: ok" in out, err
    rc, out, err = run_cli(capsys, "verify", "--store", str(store))  # without the plugin: objects missing
    assert rc == 1 and "is missing" in err
