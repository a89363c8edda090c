"""S3-compatible object storage for checkpoints: verified, retried, never half-written.

- Uploads go to a temporary key under ``.incomplete/``; only after the temporary object's
  size and ETag match the local file is it copied server-side to the final key and the
  temporary object deleted. A failed or interrupted upload therefore never leaves an object
  at the final key (multipart uploads that fail are aborted by boto3's transfer manager).
- Large files are sent in parts (boto3 ``TransferConfig``); the expected multipart ETag
  (MD5 of the parts' MD5 digests, ``-<parts>``) is computed locally with the same part size.
- Every transfer is retried ``max_retries`` times with exponential backoff
  (``backoff_seconds * 2**attempt``) on network errors, 5xx/throttling and failed checks.
- Downloads land in ``<file>.partial`` and are renamed once the size and ETag match.

The settings come from ``StorageConfig`` (params.yaml ``storage``); AWS credentials come from
the usual boto3 sources (environment, profile, instance role).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.utils import ChunksizeAdjuster

from omni_r1.config import StorageConfig

log = logging.getLogger(__name__)

MB = 1024 * 1024
INCOMPLETE_PREFIX = ".incomplete"
RETRYABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                   "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed"}

T = TypeVar("T")


class StorageError(RuntimeError):
    """A transfer that failed for good; the message names the local path and the S3 URI."""


class VerificationError(StorageError):
    """An object whose size or ETag does not match the local file."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, relative: str) -> S3Location:
        key = f"{self.key.rstrip('/')}/{relative}" if self.key else relative
        return S3Location(self.bucket, key)


def parse_s3_uri(uri: str) -> S3Location:
    """``s3://bucket/some/prefix`` → ``S3Location("bucket", "some/prefix")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URI (expected s3://bucket/prefix): {uri!r}")
    return S3Location(parsed.netloc, parsed.path.lstrip("/"))


def make_client(storage: StorageConfig) -> Any:
    """A boto3 S3 client for ``storage.endpoint_url`` (AWS when empty).

    botocore's own retries are switched off: ``with_retries`` owns retrying, so the number
    of attempts is exactly ``1 + storage.max_retries``.
    """
    return boto3.client(
        "s3",
        endpoint_url=storage.endpoint_url or None,
        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}),
    )


def transfer_config(storage: StorageConfig) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=storage.multipart_threshold_mb * MB,
        multipart_chunksize=storage.multipart_chunk_mb * MB,
    )


def expected_etag(stream: IO[bytes], size: int, transfer: TransferConfig) -> str:
    """The ETag S3 gives an object uploaded from ``stream`` with ``transfer``.

    Single-part objects get the MD5 of their bytes; multipart objects get
    ``md5(md5(part_1) + ... + md5(part_n))-n`` with the part size boto3 uses.

    Args:
        stream: binary file object positioned at the start of the data.
        size: number of bytes in the object.
        transfer: the transfer settings of the upload (threshold and part size).
    Returns:
        The ETag without quotes.
    """
    if size < transfer.multipart_threshold:
        digest = hashlib.md5()
        for block in iter(lambda: stream.read(MB), b""):
            digest.update(block)
        return digest.hexdigest()
    part_size = ChunksizeAdjuster().adjust_chunksize(transfer.multipart_chunksize, size)
    part_digests = []
    for _ in range(-(-size // part_size)):
        part_digests.append(hashlib.md5(stream.read(part_size)).digest())
    return f"{hashlib.md5(b''.join(part_digests)).hexdigest()}-{len(part_digests)}"


def file_etag(path: Path, transfer: TransferConfig) -> str:
    with path.open("rb") as stream:
        return expected_etag(stream, path.stat().st_size, transfer)


def is_retryable(err: BaseException) -> bool:
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_CODES or status >= 500
    return isinstance(err, BotoCoreError | OSError | VerificationError)


def with_retries(
    action: Callable[[], T], what: str, max_retries: int, backoff_seconds: float
) -> T:
    """Run ``action``; on a retryable error wait ``backoff_seconds * 2**attempt`` and retry."""
    for attempt in range(max_retries + 1):
        try:
            return action()
        except Exception as err:
            cause = err.__cause__ or err
            if attempt == max_retries or not (is_retryable(err) or is_retryable(cause)):
                raise StorageError(f"{what}: failed after {attempt + 1} attempt(s): {err}") from err
            delay = backoff_seconds * 2**attempt
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, attempt + 1, err, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def head(client: Any, location: S3Location) -> dict[str, Any] | None:
    """The object's metadata, or None if there is no object at ``location``."""
    try:
        return client.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def verify_object(
    client: Any, location: S3Location, size: int, etag: str | None, source: str
) -> None:
    """Raise VerificationError unless the object has ``size`` bytes and ETag ``etag``."""
    meta = head(client, location)
    if meta is None:
        raise VerificationError(f"{source} → {location.uri}: object missing after transfer")
    if meta["ContentLength"] != size:
        raise VerificationError(
            f"{source} → {location.uri}: size {meta['ContentLength']} != local {size}"
        )
    remote = meta["ETag"].strip('"')
    if etag is not None and remote != etag:
        raise VerificationError(f"{source} → {location.uri}: ETag {remote} != local {etag}")


def upload_stream(
    client: Any,
    open_stream: Callable[[], IO[bytes]],
    size: int,
    etag: str,
    destination: S3Location,
    storage: StorageConfig,
    source: str = "<stream>",
) -> str:
    """Upload the bytes ``open_stream()`` yields to ``destination``, verified and atomic.

    Each attempt opens a fresh stream, uploads it to ``.incomplete/<uuid>/<key>``, checks size
    and ETag, copies it server-side to the final key, checks again, and deletes the temporary
    object. Nothing is ever written to the final key before the data has been verified.

    Args:
        client: boto3 S3 client.
        open_stream: returns a new binary stream of the data, positioned at its start.
        size: number of bytes the stream yields.
        etag: expected ETag (see ``expected_etag``).
        destination: final bucket and key.
        storage: retry, backoff and multipart settings.
        source: name of the data for messages.
    Returns:
        The ``s3://`` URI of the final object.
    """
    transfer = transfer_config(storage)

    def attempt() -> str:
        temporary = S3Location(
            destination.bucket, f"{INCOMPLETE_PREFIX}/{uuid.uuid4().hex}/{destination.key}"
        )
        try:
            with open_stream() as stream:
                client.upload_fileobj(stream, temporary.bucket, temporary.key, Config=transfer)
            verify_object(client, temporary, size, etag, source)
            client.copy(
                {"Bucket": temporary.bucket, "Key": temporary.key},
                destination.bucket,
                destination.key,
                Config=transfer,
            )
            try:
                verify_object(client, destination, size, etag, source)
            except VerificationError:
                client.delete_object(Bucket=destination.bucket, Key=destination.key)
                raise
        finally:
            _delete_quietly(client, temporary)
        return destination.uri

    return with_retries(
        attempt, f"upload {source} → {destination.uri}", storage.max_retries, storage.backoff_seconds
    )


def _delete_quietly(client: Any, location: S3Location) -> None:
    try:
        client.delete_object(Bucket=location.bucket, Key=location.key)
    except (BotoCoreError, ClientError) as err:
        log.warning("could not delete temporary object %s: %s", location.uri, err)


def upload_file(client: Any, path: Path, destination: S3Location, storage: StorageConfig) -> str:
    """Upload one local file to ``destination``; see ``upload_stream``."""
    path = Path(path)
    etag = file_etag(path, transfer_config(storage))
    return upload_stream(
        client, lambda: path.open("rb"), path.stat().st_size, etag, destination, storage, str(path)
    )


def upload_dir(client: Any, folder: Path, destination: S3Location, storage: StorageConfig) -> list[str]:
    """Upload every file under ``folder`` to ``destination/<relative path>``.

    Returns:
        The URIs of the uploaded objects, in sorted path order.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [
        upload_file(client, path, destination.child(path.relative_to(folder).as_posix()), storage)
        for path in files
    ]


def download_file(client: Any, source: S3Location, path: Path, storage: StorageConfig) -> Path:
    """Download ``source`` to ``path`` through ``path.partial``, verified by size and ETag.

    The ETag is checked when its part count can be reproduced locally (single-part objects
    and multipart objects uploaded with the configured part size); the size is always checked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    transfer = transfer_config(storage)

    def attempt() -> Path:
        meta = head(client, source)
        if meta is None:
            raise StorageError(f"download {source.uri}: no such object")
        try:
            client.download_file(source.bucket, source.key, str(partial), Config=transfer)
            size = partial.stat().st_size
            if size != meta["ContentLength"]:
                raise VerificationError(
                    f"{source.uri} → {path}: size {size} != remote {meta['ContentLength']}"
                )
            remote = meta["ETag"].strip('"')
            local = file_etag(partial, transfer)
            if _same_part_count(remote, local) and remote != local:
                raise VerificationError(f"{source.uri} → {path}: ETag {local} != remote {remote}")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        return path

    return with_retries(
        attempt, f"download {source.uri} → {path}", storage.max_retries, storage.backoff_seconds
    )


def _same_part_count(remote: str, local: str) -> bool:
    def parts(etag: str) -> str:
        return etag.rpartition("-")[2] if "-" in etag else "1"

    return parts(remote) == parts(local)


def download_dir(client: Any, source: S3Location, folder: Path, storage: StorageConfig) -> list[Path]:
    """Download every object under the prefix ``source`` into ``folder``."""
    prefix = source.key.rstrip("/") + "/" if source.key else ""
    paginator = client.get_paginator("list_objects_v2")
    keys = [
        item["Key"]
        for page in paginator.paginate(Bucket=source.bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")
    ]
    return [
        download_file(
            client, S3Location(source.bucket, key), Path(folder) / key[len(prefix):], storage
        )
        for key in sorted(keys)
    ]
