"""Small pieces of the sync engine: manifest parsing and digests, diffs, the change log API, progress."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re

import pytest
import xxhash

from wandb_mirror import events as ev
from wandb_mirror.digests import manifest_digest
from wandb_mirror.models import Run
from wandb_mirror.store import Store
from wandb_mirror.sync import changes as ch
from wandb_mirror.sync.engine import parse_manifest, run_diff
from wandb_mirror.sync.progress import Progress


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_parse_manifest_entries() -> None:
    xx = base64.b64encode(xxhash.xxh3_128(b"big").digest()).decode()
    m = {"version": 1, "storagePolicy": "wandb-storage-policy-v1", "contents": {
        "a.txt": {"digest": b64md5(b"hello"), "size": 5, "birthArtifactID": "QXJ0OjE="},
        "big.bin": {"digest": xx, "size": 3, "extra": {"alg": "XXH128"}},
        "ref/x.csv": {"digest": "etag123", "ref": "s3://bucket/x.csv", "size": 10, "extra": {"etag": "etag123"}},
    }}
    entries, problem = parse_manifest(m)
    assert problem is None
    by = {e.path: e for e in entries}
    assert by["a.txt"].md5 == hashlib.md5(b"hello").hexdigest() and by["a.txt"].birth_artifact_id == "QXJ0OjE="
    assert by["big.bin"].md5 is None and json.loads(by["big.bin"].extra) == {"alg": "XXH128"}
    assert by["ref/x.csv"].ref == "s3://bucket/x.csv" and by["ref/x.csv"].md5 is None


@pytest.mark.parametrize("manifest,needle", [
    ([], "not a JSON object"),
    ({"version": 2, "contents": {}}, "unsupported manifest version"),
    ({"version": 1}, "no contents"),
    ({"version": 1, "contents": {"../x": {"digest": "AAAAAAAAAAAAAAAAAAAAAA==", "size": 1}}}, "refused entry path"),
    ({"version": 1, "contents": {"/x": {"digest": "AAAAAAAAAAAAAAAAAAAAAA==", "size": 1}}}, "absolute path"),
    ({"version": 1, "contents": {"x": {"digest": "nope", "size": 1}}}, "invalid md5 digest"),
    ({"version": 1, "contents": {"x": {"digest": "AAAAAAAAAAAAAAAAAAAAAA==", "size": -1}}}, "invalid size"),
    ({"version": 1, "contents": {"x": {"size": 1}}}, "no digest"),
])
def test_parse_manifest_rejects(manifest, needle: str) -> None:
    entries, problem = parse_manifest(manifest)
    assert entries == [] and needle in problem


def test_manifest_digests() -> None:
    # the example W&B documents: a.txt + a reference + an XXH128 entry -> 6ce019f0...
    contents = {"a.txt": "XUFAKrxLKna5cZ2REBfFkg==", "ref/x.csv": "etag123", "big.bin": "AAAAAAAAAAAAAAAAAAAAAA=="}
    assert manifest_digest(contents, "MANIFEST_MD5") == "6ce019f0354dd7171bf61ec4ae0399bf"
    text = "wandb-artifact-manifest-v1\n" + "".join(f"{p}:{contents[p]}\n" for p in sorted(contents))
    assert manifest_digest(contents, "MANIFEST_XXH128") == xxhash.xxh3_128(text.encode()).hexdigest()


def test_run_diff() -> None:
    old = Run(run_id="r", summary='{"loss": 0.5, "acc": 0.9, "nan": NaN}', config='{"lr": {"value": 0.1, "desc": null}}',
              tags='["a"]', notes=None)
    new = Run(run_id="r", summary='{"loss": 0.4, "acc": 0.9, "nan": NaN, "extra": 1}',
              config='{"lr": {"value": 0.1, "desc": null}}', tags='["a", "b"]', notes="hi")
    d = run_diff(old, new)
    assert d["summary"] == {"before": {"loss": 0.5}, "after": {"loss": 0.4, "extra": 1}}
    assert "config" not in d
    new.config = '{"lr": {"value": 0.2, "desc": null}, "bs": {"value": 8, "desc": null}}'
    assert run_diff(old, new)["config"] == {"before": {"lr": {"value": 0.1, "desc": None}},
                                            "after": {"lr": {"value": 0.2, "desc": None}, "bs": {"value": 8, "desc": None}}}
    assert d["tags"] == {"before": ["a"], "after": ["a", "b"]} and d["notes"] == {"before": None, "after": "hi"}
    assert run_diff(old, old) == {}


def test_change_log_functions_write_in_the_callers_transaction(tmp_path) -> None:
    store = Store(tmp_path / "s")
    scope = ch.Scope(7, "e", "p")
    try:
        with store.catalog.transaction() as conn:
            ch.emit(conn, scope, ev.RunCreated(run="r1", state="running", display_name="x",
                                               created_at="2024-01-01T00:00:00"))
            ch.emit(conn, scope, ev.RunStateChanged(run="r1", old="running", new="finished"))
            ch.emit(conn, scope, ev.FileMirrored(run="r1", name="a.txt", md5="0" * 32, size=3, changed=False))
        with pytest.raises(RuntimeError):
            with store.catalog.transaction() as conn:
                ch.emit(conn, scope, ev.Tombstoned(run="r1", what="run", key="e/p/r1"))
                raise RuntimeError("the data was not written, so neither is its event")
        feed = ch.changes_feed(store.catalog.conn)
        assert [c["kind"] for c in feed] == ["run_created", "run_state_changed", "file_mirrored"]
        assert feed[1]["payload"] == {"old": "running", "new": "finished"} and feed[2]["subject"] == "a.txt"
        assert feed[0]["pass_id"] == 7 and feed[0]["entity"] == "e" and feed[0]["run"] == "r1"
        assert [c["kind"] for c in ch.changes_feed(store.catalog.conn, feed[0]["seq"], kinds=("file_mirrored",))] == \
            ["file_mirrored"]
    finally:
        store.close()


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", [80, 60])
def test_progress_on_a_terminal_redraws_one_line_that_fits(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out = FakeTTY()
    p = Progress(stream=out, interval=0.0, requests=lambda: 42)
    p.set_project("acme/vision")
    p.add_runs(3)
    p.start -= 2
    p.run_done()
    p.add(rows=1000, files=2, bytes=2_000_000)
    p.finish()
    text = out.getvalue()
    assert "\r" in text and "\n" not in text
    frames = [f for f in text.split("\r") if f.strip()]
    assert frames and all(len(f) <= columns for f in frames)
    last = frames[-1]
    assert "acme/vision" in last and "1/3 runs" in last and "1000 rows" in last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d\]", last)  # elapsed < ETA
    assert text.endswith("\r")  # cleared for the summary line


def test_progress_elsewhere_writes_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wandb_mirror.sync")
    out = io.StringIO()
    p = Progress(stream=out, log_every=0.0)
    p.start -= 1
    p.add_runs(2)
    p.run_done()
    assert out.getvalue() == ""
    assert any("progress:" in r.message and "runs 1/2" in r.message for r in caplog.records)
    quiet = Progress(stream=FakeTTY(), mode="never")
    quiet.add(rows=5)
    assert quiet.stream.getvalue() == ""
