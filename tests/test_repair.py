"""Heal what rots: `verify --deep` finds flipped, truncated, missing and symlinked objects and a
damaged catalog; `serve` never completes a corrupt body (the official client ends with an error,
not a corrupt file); `repair` quarantines damaged copies, fetches them again verified, names what
upstream no longer has by its upstream path, and exits 0 only once the store verifies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability_support import ENTITY, cli, seed_store, write_config

from wandb_mirror.store import Store


@pytest.fixture
def mirrored(tmp_path: Path, start_mirror_server: Any) -> tuple[Any, Path, Path, Path]:
    up = seed_store(tmp_path / "up")
    server = start_mirror_server(up)
    cfg = write_config(tmp_path, server.url, store=str(tmp_path / "mirror"))
    p = cli("sync", "--config", str(cfg), "--once", timeout=180)
    assert p.returncode == 0, p.stderr
    return server, up, tmp_path / "mirror", cfg


def _obj(mirror: Path, md5: str) -> Path:
    return mirror / "objects" / "md5" / md5[:2] / md5[2:]


def _md5(mirror: Path, sql: str) -> str:
    with Store(mirror, create=False, readonly=True) as s:
        return s.catalog.scalar(sql)


FILE_MD5 = ("SELECT v.md5 FROM file_versions v JOIN runs r ON r.pk = v.run_pk WHERE r.run_id = '{run}' "
            "AND v.name = '{name}'")


def test_damage_is_found_refused_by_serve_and_repaired(mirrored, tmp_path: Path, start_mirror_server: Any,
                                                       make_wandb_api: Any) -> None:
    server, up, mirror, cfg = mirrored
    flipped = _md5(mirror, FILE_MD5.format(run="a1", name="model.bin"))
    truncated = _md5(mirror, "SELECT md5 FROM artifact_files WHERE path = 'weights.bin'")
    missing = _md5(mirror, "SELECT manifest_md5 FROM artifacts ORDER BY pk LIMIT 1")
    linked = _md5(mirror, FILE_MD5.format(run="a1", name="config.yaml"))
    gone = _md5(mirror, FILE_MD5.format(run="a2", name="out.log"))
    original = _obj(mirror, flipped).read_bytes()
    for md5 in (flipped, truncated, linked):
        _obj(mirror, md5).chmod(0o600)
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    _obj(mirror, flipped).write_bytes(bytes(data))
    with open(_obj(mirror, truncated), "r+b") as f:
        f.truncate(100)
    _obj(mirror, missing).unlink()
    outside = tmp_path / "elsewhere"
    shutil.copyfile(_obj(mirror, linked), outside)
    _obj(mirror, linked).unlink()
    os.symlink(outside, _obj(mirror, linked))
    _obj(mirror, gone).unlink()
    # upstream deletes the file whose only copy the mirror lost
    with Store(up) as s, s.catalog.transaction() as conn:
        conn.execute("UPDATE files SET tombstoned_at = '2025-01-01T00:00:00' WHERE name = 'out.log'")

    v = cli("verify", "--store", str(mirror), "--deep")
    assert v.returncode == 1 and "Traceback" not in v.stderr
    for md5, what in ((flipped, "corrupt"), (truncated, "bytes"), (missing, "missing"), (linked, "symlink"),
                      (gone, "missing")):
        assert any(md5 in line and what in line for line in v.stderr.splitlines()), (what, v.stderr)

    # serve never completes the corrupt body: plain HTTP sees a short body, the official client an error
    served = start_mirror_server(mirror)
    url = f"{served.url}/files/{ENTITY}/alpha/a1/model.bin"
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, auth=("api", "x" * 40), timeout=30).content  # noqa: B018
    assert requests.get(f"{served.url}/files/{ENTITY}/alpha/a1/out.log", auth=("api", "x" * 40),
                        timeout=30).status_code in (200, 404)
    api = make_wandb_api(served.url, timeout=10)
    dest = tmp_path / "dl"
    with pytest.raises(Exception):  # noqa: B017 - the official client's error type varies by path
        api.run(f"{ENTITY}/alpha/a1").file("model.bin").download(root=str(dest), replace=True)
    saved = dest / "model.bin"
    assert not saved.exists() or saved.read_bytes() != bytes(data)  # an error, never the corrupt bytes
    served.stop()

    r = cli("repair", "--config", str(cfg), timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr  # one object is gone upstream: the store cannot verify
    assert f"LOST {ENTITY}/alpha/a2/out.log: upstream no longer has it" in r.stderr
    assert "Traceback" not in r.stderr and "3 damaged objects quarantined" in r.stdout, r.stdout
    kept = {p.name.split(".")[0]: p for p in (mirror / "quarantine" / "objects").iterdir() if ".why" not in p.name}
    assert set(kept) == {flipped, truncated, linked}
    assert kept[flipped].read_bytes() == bytes(data)  # the damaged copy is kept as it was
    for md5 in (flipped, truncated, missing, linked):
        assert _obj(mirror, md5).is_file() and not _obj(mirror, md5).is_symlink()
    assert _obj(mirror, flipped).read_bytes() == original

    # upstream has the file again: the next repair fetches it and the store verifies
    with Store(up) as s, s.catalog.transaction() as conn:
        conn.execute("UPDATE files SET tombstoned_at = NULL WHERE name = 'out.log'")
    r = cli("repair", "--config", str(cfg), timeout=180)
    assert r.returncode == 0 and "ok: the store verifies" in r.stdout, r.stdout + r.stderr
    assert cli("verify", "--store", str(mirror), "--deep").returncode == 0


def test_verify_deep_runs_the_catalogs_integrity_check(mirrored) -> None:
    _, _, mirror, _ = mirrored
    db = mirror / "catalog.db"
    with Store(mirror) as s:
        s.catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = s.catalog.scalar("PRAGMA page_count")
        page = s.catalog.scalar("PRAGMA page_size")
        index_root = s.catalog.scalar("SELECT rootpage FROM sqlite_master WHERE name = 'file_versions_md5'")
    assert pages > 4 and index_root
    with open(db, "r+b") as f:  # scribble over an index's root page: the table still reads, the index is garbage
        f.seek((index_root - 1) * page)
        f.write(os.urandom(page))
    v = cli("verify", "--store", str(mirror), "--deep")
    assert v.returncode == 1 and "Traceback" not in v.stderr, v.stderr
    assert "catalog" in v.stderr
