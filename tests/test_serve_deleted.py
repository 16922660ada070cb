"""The daemon scenario: cleanup deletes an upstream file, the mirror keeps it, and the official client
downloads it from `serve --include-deleted` (and `restore --include-deleted` gives it back)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from test_plugins_builtin import cycle, seeded_upstream, upstream, write_config  # noqa: F401  (fixtures)
from test_plugins_support import ENTITY, PROJECT

from wandb_mirror.cli import main
from wandb_mirror.store import Store

CLEANUP = """
[plugins.cleanup]
enabled = true
dry_run = false
extensions = [".png"]
max_per_pass = 50
"""


def test_cleanup_deleted_upstream_file_is_served_with_include_deleted(upstream: Any, tmp_path: Path,  # noqa: F811
                                                                      start_mirror_server: Any,
                                                                      make_wandb_api: Any) -> None:
    server, _ = upstream
    cfg = write_config(tmp_path, server.url, CLEANUP)
    cycle(cfg)  # mirror, then cleanup deletes the .png files of finished runs upstream
    upstream_api = make_wandb_api(server.url)
    upstream_api.run(f"{ENTITY}/{PROJECT}/a3").delete()  # and a whole run goes away upstream
    cycle(cfg)  # the next pass sees both deletions: tombstones, the bytes stay
    assert "plot.png" not in {f.name for f in make_wandb_api(server.url).run(f"{ENTITY}/{PROJECT}/a1").files()}
    mirror = tmp_path / "mirror"
    with Store(mirror, create=False, readonly=True) as s:
        kept = s.catalog.query_one("SELECT f.md5, f.size FROM files f JOIN runs r ON r.pk = f.run_pk "
                                   "WHERE r.run_id = 'a1' AND f.name = 'plot.png' AND f.tombstoned_at IS NOT NULL")
        assert kept is not None and s.objects.has(kept["md5"])

    plain = start_mirror_server(mirror, read_only=True)
    api = make_wandb_api(plain.url)
    assert "plot.png" not in {f.name for f in api.run(f"{ENTITY}/{PROJECT}/a1").files()}
    assert "a3" not in {r.id for r in api.runs(f"{ENTITY}/{PROJECT}")}

    with_deleted = start_mirror_server(mirror, include_deleted=True, writable=True)  # still read-only
    api = make_wandb_api(with_deleted.url)
    files = {f.name: f for f in api.run(f"{ENTITY}/{PROJECT}/a1").files()}
    assert "plot.png" in files
    files["plot.png"].download(root=str(tmp_path / "got"), replace=True).close()
    data = (tmp_path / "got" / "plot.png").read_bytes()
    assert hashlib.md5(data).hexdigest() == kept["md5"] and len(data) == kept["size"]
    assert "a3" in {r.id for r in api.runs(f"{ENTITY}/{PROJECT}")}
    # it is read-only whatever else was asked: serving deleted data as live never changes the store
    run = api.run(f"{ENTITY}/{PROJECT}/a1")
    with pytest.raises(Exception, match="read-only"):
        run.summary.update({"x": 1})
    with Store(mirror, create=False, readonly=True) as s:
        assert '"x"' not in s.catalog.scalar("SELECT summary FROM runs WHERE run_id = 'a1'")

    # restore --include-deleted gives the deleted file and run back, as live, to a new server
    Store(tmp_path / "target").close()
    target = start_mirror_server(tmp_path / "target", writable=True)
    args = ["restore", "--store", str(mirror), "--to", target.url, "--journal", str(tmp_path / "j.jsonl")]
    assert main(args) == 0
    api = make_wandb_api(target.url)
    assert "plot.png" not in {f.name for f in api.run(f"{ENTITY}/{PROJECT}/a1").files()}
    assert main([*args, "--include-deleted"]) == 0
    api = make_wandb_api(target.url)
    restored = {f.name: f for f in api.run(f"{ENTITY}/{PROJECT}/a1").files()}
    assert "plot.png" in restored and restored["plot.png"].md5 == files["plot.png"].md5
    assert "a3" in {r.id for r in api.runs(f"{ENTITY}/{PROJECT}")}
