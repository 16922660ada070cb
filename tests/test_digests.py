"""Artifact manifest digests for both algorithms, in one place; `verify --deep` recomputes either."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xxhash
from conftest import copy_store

from wandb_mirror.cli import main
from wandb_mirror.digests import manifest_digest
from wandb_mirror.store import Store


def test_both_algorithms() -> None:
    contents = {"b.txt": "Yg==", "a.txt": "YQ=="}
    lines = b"wandb-artifact-manifest-v1\na.txt:YQ==\nb.txt:Yg==\n"
    assert manifest_digest(contents) == manifest_digest(contents, "MANIFEST_MD5")
    assert manifest_digest(contents, "MANIFEST_XXH128") == xxhash.xxh3_128(lines).hexdigest()
    with pytest.raises(ValueError, match="MANIFEST_SHA"):
        manifest_digest(contents, "MANIFEST_SHA")


def _as_xxh128(store_dir: Path, digest: str | None = None) -> str:
    """Make the first artifact an XXH128-digest one (as W&B records it); returns its id."""
    with Store(store_dir) as store:
        art = store.catalog.query_one("SELECT pk, id, manifest_md5 FROM artifacts WHERE manifest_md5 IS NOT NULL "
                                      "ORDER BY pk LIMIT 1")
        assert art is not None
        manifest = json.loads(store.objects.read_bytes(art["manifest_md5"]))
        right = manifest_digest({p: e["digest"] for p, e in manifest["contents"].items()}, "MANIFEST_XXH128")
        store.catalog.conn.execute("UPDATE artifacts SET digest_algorithm = 'MANIFEST_XXH128', digest = ? WHERE pk = ?",
                                   [digest or right, art["pk"]])
        store.catalog.conn.commit()
        return art["id"]


def test_verify_deep_recomputes_xxh128_manifest_digests(seeded_store: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    good = copy_store(seeded_store, tmp_path / "good")
    _as_xxh128(good)
    assert main(["verify", "--store", str(good), "--deep"]) == 0
    capsys.readouterr()

    bad = copy_store(seeded_store, tmp_path / "bad")
    aid = _as_xxh128(bad, digest="0" * 32)
    assert main(["verify", "--store", str(bad), "--deep"]) == 1
    out = capsys.readouterr()
    assert f"artifact {aid}: manifest digest" in out.out + out.err
