"""The store layer and its tools: atomic verified objects, the lock, verify, gc and status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.errors import IntegrityError, StoreLocked
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wandb_mirror.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def demo_store(tmp_path):
    with Store(tmp_path / "store") as store:
        seed(store, demo_fixture())
    return tmp_path / "store"


def test_object_put_verifies_and_is_atomic(tmp_path):
    store = Store(tmp_path / "s")
    info = store.objects.put_bytes(b"hello")
    assert info.md5 == "5d41402abc4b2a76b9719d911017c592" and info.size == 5
    path = store.objects.path(info.md5)
    assert path.read_bytes() == b"hello"
    assert oct(path.stat().st_mode & 0o777) == "0o400"
    assert oct((tmp_path / "s").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "s" / "catalog.db").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(IntegrityError, match="md5 mismatch"):
        store.objects.put_stream([b"hel", b"lo!"], expected_md5="5d41402abc4b2a76b9719d911017c590")
    with pytest.raises(IntegrityError, match="size mismatch"):
        store.objects.put_stream([b"hell"], expected_size=5)
    assert list(store.objects.tmp.iterdir()) == []  # nothing half-written is left
    assert [o.md5 for o in store.objects.iter_objects()] == [info.md5]


def test_one_writer_per_store(tmp_path):
    store = Store(tmp_path / "s")
    with store.lock("sync"):
        with pytest.raises(StoreLocked, match="in use by another wandb-mirror process"):
            store.lock("sync").acquire()
    with store.lock("sync"):  # released: can be taken again
        pass


def test_verify_finds_missing_and_corrupt_objects(demo_store):
    r = cli("verify", "--store", str(demo_store), "--deep")
    assert r.returncode == 0 and "verify --deep: ok" in r.stdout, r.stdout + r.stderr
    store = Store(demo_store)
    (md5,) = store.catalog.conn.execute("SELECT md5 FROM files WHERE name = 'model.ckpt' LIMIT 1").fetchone()
    (art_md5,) = store.catalog.conn.execute("SELECT md5 FROM artifact_files WHERE md5 IS NOT NULL LIMIT 1").fetchone()
    p = store.objects.path(md5)
    os.chmod(p, 0o600)
    data = bytearray(p.read_bytes())
    data[10] ^= 0xFF  # same size, wrong bytes: only --deep can see it
    p.write_bytes(bytes(data))
    assert cli("verify", "--store", str(demo_store)).returncode == 0
    r = cli("verify", "--store", str(demo_store), "--deep")
    assert r.returncode == 1 and f"object {md5}" in r.stderr and "corrupt" in r.stderr
    store.objects.remove(art_md5)
    r = cli("verify", "--store", str(demo_store))
    assert r.returncode == 1 and f"object {art_md5} is missing" in r.stderr
    assert "FAILED" in r.stdout


def test_gc_removes_only_old_unreferenced_objects(demo_store):
    store = Store(demo_store)
    orphan_old = store.objects.put_bytes(b"orphan, old").md5
    orphan_new = store.objects.put_bytes(b"orphan, new").md5
    old = time.time() - 3 * 86400
    os.utime(store.objects.path(orphan_old), (old, old))
    before = {o.md5 for o in store.objects.iter_objects()}
    r = cli("gc", "--store", str(demo_store), "--dry-run")
    assert r.returncode == 0 and f"would remove {orphan_old}" in r.stdout
    assert {o.md5 for o in store.objects.iter_objects()} == before
    r = cli("gc", "--store", str(demo_store))
    assert r.returncode == 0, r.stderr
    after = {o.md5 for o in store.objects.iter_objects()}
    assert after == before - {orphan_old} and orphan_new in after
    assert cli("verify", "--store", str(demo_store), "--deep").returncode == 0
    with store.lock("sync"):
        r = cli("gc", "--store", str(demo_store))
        assert r.returncode == 1 and "in use" in r.stderr


def test_status_json(demo_store):
    r = cli("status", "--store", str(demo_store), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["runs"]["total"] == 38 and s["runs"]["by_state"]["finished"] == 26
    assert s["objects"] > 0 and s["bytes"] > 0 and s["dedup_ratio"] > 1.0
    assert s["last_pass"] is None
    r = cli("status", "--store", str(demo_store))
    assert "runs       38" in r.stdout


def test_missing_store_is_a_usage_error(tmp_path):
    for cmd in ("verify", "status", "gc"):
        r = cli(cmd, "--store", str(tmp_path / "nope"))
        assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_processes_racing_to_create_one_store(tmp_path):
    code = ("import sys; from wandb_mirror.store import Store; "
            "s = Store(sys.argv[1]); print(s.catalog.scalar('SELECT COUNT(*) FROM _migrations'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "new")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    counts = {r[0].strip() for r in results}
    assert len(counts) == 1 and int(counts.pop()) >= 2
