"""Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, GCS's S3 interface), through boto3.

`[store] objects = "s3://BUCKET/PREFIX"` lays the objects out exactly as a local objects folder
(`PREFIX/md5/ab/cdef...`). The endpoint is `[store] s3_endpoint_url`, else $AWS_ENDPOINT_URL, else
AWS itself; credentials and region come from the standard AWS chain, never from the config file.

A write is verified before anything is sent: the bytes spool to a local temp file while they are
hashed, and a size or md5 mismatch uploads nothing. The upload carries Content-MD5 (the server
re-checks the bytes it received) and `If-None-Match: *`, so an object is never overwritten and an
object already there is a success. Above `multipart_threshold` the upload is multipart, each part
with its own Content-MD5, and the whole object's md5 goes into its metadata (`x-amz-meta-md5`):
a multipart ETag is not an md5. Nothing is visible under the key until the upload completes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO

from .. import times
from ..errors import IntegrityError, UsageError
from .object_api import HEX, Digests, ObjectInfo, ObjectsBase, StoredObject, check_md5, object_key
from .objects import CHUNK, check_announced

MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20  # S3's minimum part size is 5 MiB; 16 MiB keeps 10^4 parts above 150 GB
STALE_UPLOAD = 24 * 3600.0  # an unfinished multipart upload older than this is a killed writer's


def parse_s3_url(url: str) -> tuple[str, str]:
    """("bucket", "prefix/") from "s3://bucket/prefix" (the prefix may be empty)."""
    if not url.startswith("s3://"):
        raise UsageError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise UsageError(f"{url!r} names no bucket (expected s3://BUCKET/PREFIX)")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def make_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client: endpoint from the argument or $AWS_ENDPOINT_URL, the rest from the AWS chain."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise UsageError("objects on S3 need boto3: pip install 'wandb-mirror[s3]'") from None
    cfg = Config(retries={"mode": "standard", "max_attempts": 5},
                 # checksums beyond Content-MD5 are optional: not every S3-compatible server knows them
                 request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
                                          config=cfg)


def _code(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    return str((resp.get("Error") or {}).get("Code") or (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode") or "")


def _b64(hex_md5: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_md5)).decode()


class S3Objects(ObjectsBase):
    """Objects under s3://BUCKET/PREFIX; implements object_api.Objects."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, client: Any = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                 spool_dir: str | None = None):
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client if client is not None else make_client(endpoint_url)
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.spool_dir = spool_dir

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, md5: str) -> str:
        return self.prefix + object_key(md5)

    # -- reading ---------------------------------------------------------------------------
    def _head(self, md5: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(md5))
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def has(self, md5: str) -> bool:
        return self._head(md5) is not None

    def size(self, md5: str) -> int:
        head = self._head(md5)
        if head is None:
            raise FileNotFoundError(f"object {md5} not in {self.describe()}")
        return int(head["ContentLength"])

    def open(self, md5: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(md5))["Body"]
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"object {md5} not in {self.describe()}") from None
            raise
        return io.BufferedReader(_Body(body), CHUNK)  # type: ignore[return-value]

    def iter_objects(self) -> Iterator[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "md5/")
        for page in pages:
            for item in page.get("Contents", ()):
                parts = item["Key"][len(self.prefix):].split("/")
                if len(parts) != 3 or len(parts[1]) != 2 or len(parts[1] + parts[2]) != 32 \
                        or not HEX.issuperset(parts[1] + parts[2]):
                    continue  # not an object of ours
                yield StoredObject(parts[1] + parts[2], int(item["Size"]), item["LastModified"].timestamp())

    # -- writing ---------------------------------------------------------------------------
    def put_stream(self, chunks: Iterable[bytes], *, expected_md5: str | None = None,
                   expected_size: int | None = None, extra: tuple[str, ...] = ()) -> ObjectInfo:
        if expected_md5 is not None and not extra:
            check_md5(expected_md5)
            head = self._head(expected_md5)
            if head is not None:  # already there, verified when it was published
                return ObjectInfo(expected_md5, int(head["ContentLength"]))
        digests = Digests(extra)
        with tempfile.TemporaryFile(prefix="wandb-mirror-s3-", dir=self.spool_dir) as spool:
            for chunk in chunks:
                if chunk:
                    digests.update(chunk)
                    spool.write(chunk)
            info = digests.info()
            check_announced(info, expected_md5, expected_size)  # before a byte is sent
            spool.seek(0)
            if info.size > self.multipart_threshold:
                self._put_multipart(spool, info)
            else:
                self._put_single(spool, info)
        return info

    def _put_single(self, spool: IO[bytes], info: ObjectInfo) -> None:
        from botocore.exceptions import ClientError

        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=self.key(info.md5), Body=spool,
                                          ContentMD5=_b64(info.md5), IfNoneMatch="*", Metadata={"md5": info.md5})
        except ClientError as e:
            self._already_there_or_raise(e, info)
            return
        if not _etag_matches(resp, info.md5):
            # a server that does not check Content-MD5 stored what it received: take it back
            self.client.delete_object(Bucket=self.bucket, Key=self.key(info.md5))
            raise IntegrityError(f"object {info.md5}: the server received bytes that do not match their md5")

    def _put_multipart(self, spool: IO[bytes], info: ObjectInfo) -> None:
        from botocore.exceptions import ClientError

        key = self.key(info.md5)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata={"md5": info.md5})
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number in range(1, 10001):
                data = spool.read(self.part_size)
                if not data and number > 1:
                    break
                digest = _md5(data)
                try:
                    resp = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                                   Body=data, ContentMD5=base64.b64encode(digest).decode())
                except ClientError as e:
                    if _code(e) == "BadDigest":
                        raise IntegrityError(f"object {info.md5}: the server received bytes that do not match "
                                             f"their md5 (part {number})") from e
                    raise
                if not _etag_matches(resp, digest.hex()):
                    raise IntegrityError(f"object {info.md5}: the server received bytes that do not match their md5 "
                                         f"(part {number})")
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            try:
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts}, IfNoneMatch="*")
            except ClientError as e:
                self._already_there_or_raise(e, info)
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - clean_tmp() aborts what is left once it is stale
                pass
            raise

    def _already_there_or_raise(self, e: Exception, info: ObjectInfo) -> None:
        code = _code(e)
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            # someone published this key first; same key means same md5, but check the size
            size = self.size(info.md5)
            if size != info.size:
                raise IntegrityError(f"object {info.md5} in {self.describe()} has {size} bytes, expected {info.size}")
            return
        if code == "BadDigest":
            raise IntegrityError(f"object {info.md5}: the server received bytes that do not match their md5") from e
        raise e

    # -- gc --------------------------------------------------------------------------------
    def remove(self, md5: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(md5))

    def quarantine(self, md5: str, why: str) -> str | None:
        """Copied to PREFIX/quarantine/objects/MD5.TIME (with `why` in its metadata), then removed."""
        if not self.has(md5):
            return None
        dst = f"{self.prefix}quarantine/objects/{md5}.{times.filename_stamp()}"
        self.client.copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": self.key(md5)},
                                MetadataDirective="REPLACE", Metadata={"md5": md5, "why": why[:1000]})
        self.remove(md5)
        return f"s3://{self.bucket}/{dst}"

    def clean_tmp(self) -> int:
        """Abort multipart uploads under the prefix that were started over a day ago (a killed
        writer's); younger ones may belong to another writer still at work."""
        n = 0
        cutoff = time.time() - STALE_UPLOAD
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for up in page.get("Uploads", ()):
                if up["Initiated"].timestamp() < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    n += 1
        return n


def _etag_matches(resp: dict[str, Any], hex_md5: str) -> bool:
    """Whether the server's ETag for what it received is `hex_md5` (a second check beside Content-MD5,
    for servers that ignore that header). Encrypted with KMS or a customer key, an ETag is not an md5:
    then only Content-MD5 protects the upload."""
    if resp.get("SSECustomerAlgorithm") or str(resp.get("ServerSideEncryption", "")).startswith("aws:kms"):
        return True
    return str(resp.get("ETag", "")).strip('"').lower() == hex_md5


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


class _Body(io.RawIOBase):
    """A botocore StreamingBody as a raw stream, so callers get a normal buffered binary file."""

    def __init__(self, body: Any):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._body.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
