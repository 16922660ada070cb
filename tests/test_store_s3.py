"""Objects on S3-compatible storage, against a real S3 server on loopback (moto's): the key layout,
verification before upload, If-None-Match (already there = success, never overwritten), multipart
with the md5 in metadata, and a sync of the demo upstream into SQLite + S3 that verifies --deep,
is garbage-collected against the bucket and is served from it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import ENTITY
from scale_support import served, served_run_files

from wandb_mirror.cli import main
from wandb_mirror.errors import IntegrityError
from wandb_mirror.store import Objects
from wandb_mirror.store.s3objects import S3Objects

pytest.importorskip("boto3")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def keys(s3_env, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_objects_on_s3_follow_the_local_layout_and_the_interface(s3_env) -> None:
    bucket = s3_env.new_bucket()
    objs = S3Objects(f"s3://{bucket}/team/mirror")
    assert isinstance(objs, Objects)
    data = b"hello bucket"
    info = objs.put_bytes(data, md5(data), extra=("xxh128",))
    assert info.md5 == md5(data) and info.size == len(data) and "xxh128" in info.extra
    assert keys(s3_env, bucket) == [f"team/mirror/md5/{info.md5[:2]}/{info.md5[2:]}"]
    assert objs.has(info.md5) and objs.size(info.md5) == len(data)
    with objs.open(info.md5) as f:
        assert f.read(5) == b"hello" and f.read() == b" bucket"
    assert objs.hash_object(info.md5, extra=("xxh128",)) == info
    assert [(o.md5, o.size) for o in objs.iter_objects()] == [(info.md5, len(data))]
    missing = md5(b"nope")
    assert not objs.has(missing)
    with pytest.raises(FileNotFoundError):
        objs.open(missing)
    objs.remove(info.md5)
    assert keys(s3_env, bucket) == [] and list(objs.iter_objects()) == []


def test_nothing_is_uploaded_when_the_bytes_do_not_match(s3_env) -> None:
    bucket = s3_env.new_bucket()
    objs = S3Objects(f"s3://{bucket}/p", multipart_threshold=6 << 20, part_size=5 << 20)
    with pytest.raises(IntegrityError, match="md5 mismatch"):
        objs.put_bytes(b"what arrived", md5(b"what was announced"))
    with pytest.raises(IntegrityError, match="size mismatch"):
        objs.put_stream([b"x" * (7 << 20)], expected_size=1)
    assert keys(s3_env, bucket) == []
    assert s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_object_already_there_is_a_success_and_is_never_overwritten(s3_env) -> None:
    bucket = s3_env.new_bucket()
    objs = S3Objects(f"s3://{bucket}")
    data = b"abcdef"
    key = f"md5/{md5(data)[:2]}/{md5(data)[2:]}"
    # another writer's object under the same key (here: same size, other bytes, to see who wins)
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=b"ABCDEF")
    info = objs.put_stream([data])  # no expected md5: the upload itself meets If-None-Match
    assert info.md5 == md5(data)
    assert s3_env.client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"ABCDEF"
    assert objs.hash_object(info.md5).md5 != info.md5  # what `verify --deep` will report


def test_large_objects_go_multipart_with_the_md5_in_metadata(s3_env) -> None:
    bucket = s3_env.new_bucket()
    objs = S3Objects(f"s3://{bucket}/big", multipart_threshold=6 << 20, part_size=5 << 20)
    data = os.urandom(12 << 20)
    info = objs.put_stream((data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)), expected_md5=md5(data),
                           expected_size=len(data))
    head = s3_env.client().head_object(Bucket=bucket, Key=f"big/md5/{info.md5[:2]}/{info.md5[2:]}")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: the ETag is not an md5
    assert head["Metadata"]["md5"] == md5(data) and head["ContentLength"] == len(data)
    assert objs.hash_object(info.md5).md5 == md5(data)
    # a second upload of the same bytes is a success and leaves one object, no dangling upload
    objs.put_stream([data])
    assert len(keys(s3_env, bucket)) == 1
    assert s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_sync_into_sqlite_and_s3_verifies_collects_and_serves(seeded_server, s3_env, tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    bucket = s3_env.new_bucket()
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint comes from the config file this time
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f'[source]\nbase_url = "{seeded_server.url}"\n\n[store]\ncatalog = "db/catalog.db"\n'
                   f'objects = "s3://{bucket}/mirror"\ns3_endpoint_url = "{s3_env.url}"\n\n'
                   '[sync]\nprogress = "never"\nretry_wait_min = "10ms"\nretry_wait_max = "50ms"\n')
    assert main(["sync", "--config", str(cfg), "--once", "-q"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert not (tmp_path / "db" / "objects").exists()  # no bytes on local disk
    stored = keys(s3_env, bucket)
    assert stored and all(k.startswith("mirror/md5/") for k in stored)

    assert main(["verify", "--deep", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verify --deep: ok;") and f"{len(stored)} objects re-hashed" in out

    status = (main(["status", "--json", "-c", str(cfg)]), json.loads(capsys.readouterr().out))
    assert status[0] == 0 and status[1]["objects"] == len(stored) and status[1]["objects_at"] == f"s3://{bucket}/mirror/"

    # gc: an unreferenced object goes (grace 0), every referenced one stays
    orphan = b"nobody references me"
    s3_env.client().put_object(Bucket=bucket, Key=f"mirror/md5/{md5(orphan)[:2]}/{md5(orphan)[2:]}", Body=orphan)
    assert main(["gc", "--config", str(cfg), "--grace", "0"]) == 0
    assert f"removed {md5(orphan)}" in capsys.readouterr().out
    assert sorted(keys(s3_env, bucket)) == sorted(stored)

    # serve streams the bytes from the bucket
    with served(cfg) as url:
        files = served_run_files(url, ENTITY, "vision", "r01")
    assert len(files) >= 5
    for f in files:
        assert base64.b64encode(hashlib.md5(f["body"]).digest()).decode() == f["md5"], f["name"]

    # a corrupted object in the bucket is what verify --deep reports (exit 1), and what repair heals:
    # the bad copy set aside in the bucket (never deleted), the object fetched again, verified
    victim = stored[0]
    s3_env.client().put_object(Bucket=bucket, Key=victim, Body=b"bit rot")
    assert main(["verify", "--deep", "--config", str(cfg)]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert main(["repair", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert "1 damaged objects quarantined, 1 fetched again" in capsys.readouterr().out
    aside = [k for k in keys(s3_env, bucket) if k.startswith("mirror/quarantine/objects/")]
    assert len(aside) == 1 and s3_env.client().get_object(Bucket=bucket, Key=aside[0])["Body"].read() == b"bit rot"
    assert main(["verify", "--deep", "--config", str(cfg)]) == 0


@pytest.mark.parametrize("server", ["s3_md5_server", "s3_server"])
def test_bytes_changed_in_transit_are_never_stored(request, server: str) -> None:
    """nanio refuses them by Content-MD5 (BadDigest); moto ignores Content-MD5, and the ETag it
    returns (the md5 of what it received) is what gives them away."""
    s3 = request.getfixturevalue(server)
    bucket = s3.new_bucket()
    client = s3.client()
    objs = S3Objects(f"s3://{bucket}/p", client=client, multipart_threshold=6 << 20, part_size=5 << 20)
    small, large = b"small object", os.urandom(11 << 20)
    assert objs.put_bytes(small).md5 == md5(small) and objs.put_bytes(large).md5 == md5(large)
    assert objs.hash_object(md5(large)).md5 == md5(large)

    def flip_a_byte(request, **_):  # what a bad NIC, proxy or disk cache might do after we hashed
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        request.body = bytes([body[0] ^ 0xFF]) + body[1:]

    client.meta.events.register("before-send.s3.PutObject", flip_a_byte)
    client.meta.events.register("before-send.s3.UploadPart", flip_a_byte)
    for data in (b"another small one", os.urandom(7 << 20)):
        with pytest.raises(IntegrityError, match="do not match their md5"):
            objs.put_bytes(data)
        assert not objs.has(md5(data))
    assert sorted(o.md5 for o in objs.iter_objects()) == sorted([md5(small), md5(large)])
