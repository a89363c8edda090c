"""omni_r1.storage against moto's in-process S3: verified, retried, atomic transfers."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from moto import mock_aws

from omni_r1 import storage
from omni_r1.config import load_config

BUCKET = "omni-r1-test"
MB = storage.MB


@pytest.fixture()
def settings():
    base = load_config(Path(__file__).resolve().parents[1] / "params.yaml").storage
    return base.model_copy(
        update={
            "s3_uri": f"s3://{BUCKET}/ckpt",
            "endpoint_url": "",
            "multipart_threshold_mb": 5,
            "multipart_chunk_mb": 5,
            "max_retries": 2,
            "backoff_seconds": 0.0,
        }
    )


@pytest.fixture()
def s3(monkeypatch, settings):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = storage.make_client(settings)
        client.create_bucket(Bucket=BUCKET)
        yield client


def all_keys(client) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


class FailingStream(io.RawIOBase):
    """Yields ``data`` but raises OSError once ``fail_after`` bytes have been read."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data, self.fail_after, self.position = data, fail_after, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.position >= self.fail_after:
            raise OSError(f"injected failure after {self.position} bytes")
        chunk = self.data[self.position : min(self.position + len(buffer), self.fail_after)]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def test_parse_s3_uri_splits_bucket_and_prefix():
    assert storage.parse_s3_uri("s3://b/a/c") == storage.S3Location("b", "a/c")
    assert storage.parse_s3_uri("s3://b").child("x.bin").uri == "s3://b/x.bin"
    with pytest.raises(ValueError, match="not an S3 URI"):
        storage.parse_s3_uri("/local/path")


def test_expected_etag_single_part_is_md5(settings):
    data = b"omni-r1" * 1000
    etag = storage.expected_etag(io.BytesIO(data), len(data), storage.transfer_config(settings))
    assert etag == hashlib.md5(data).hexdigest()


def test_multipart_upload_matches_local_etag_and_round_trips(s3, settings, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(11 * MB))  # 3 parts of 5 MB, 5 MB, 1 MB
    destination = storage.parse_s3_uri(settings.s3_uri).child("step_10/model.safetensors")

    uri = storage.upload_file(s3, path, destination, settings)

    meta = s3.head_object(Bucket=BUCKET, Key=destination.key)
    local_etag = storage.file_etag(path, storage.transfer_config(settings))
    assert local_etag.endswith("-3")
    assert meta["ETag"].strip('"') == local_etag
    assert all_keys(s3) == [destination.key]  # temporary object removed
    back = storage.download_file(s3, storage.parse_s3_uri(uri), tmp_path / "back.bin", settings)
    assert back.read_bytes() == path.read_bytes()
    assert not (tmp_path / "back.bin.partial").exists()


def test_failure_mid_upload_leaves_no_final_object(s3, settings):
    data = os.urandom(12 * MB)
    destination = storage.S3Location(BUCKET, "ckpt/broken.bin")
    etag = storage.expected_etag(io.BytesIO(data), len(data), storage.transfer_config(settings))
    opened = []

    def open_failing():
        opened.append(1)
        return FailingStream(data, fail_after=7 * MB)  # after the first part was sent

    with pytest.raises(storage.StorageError, match="injected failure"):
        storage.upload_stream(s3, open_failing, len(data), etag, destination, settings, "broken")

    assert len(opened) == settings.max_retries + 1
    assert storage.head(s3, destination) is None
    assert all_keys(s3) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_transient_failure_is_retried(s3, settings):
    data = os.urandom(64 * 1024)
    destination = storage.S3Location(BUCKET, "ckpt/flaky.bin")
    etag = hashlib.md5(data).hexdigest()
    attempts = []

    def open_flaky():
        attempts.append(1)
        if len(attempts) == 1:
            return FailingStream(data, fail_after=1000)
        return io.BytesIO(data)

    uri = storage.upload_stream(s3, open_flaky, len(data), etag, destination, settings, "flaky")

    assert uri == f"s3://{BUCKET}/ckpt/flaky.bin"
    assert len(attempts) == 2
    assert s3.get_object(Bucket=BUCKET, Key=destination.key)["Body"].read() == data


def test_wrong_etag_never_reaches_final_key(s3, settings):
    data = b"abc" * 100
    destination = storage.S3Location(BUCKET, "ckpt/mismatch.bin")

    with pytest.raises(storage.StorageError, match="ETag"):
        storage.upload_stream(
            s3, lambda: io.BytesIO(data), len(data), "0" * 32, destination, settings, "mismatch"
        )
    assert all_keys(s3) == []


def test_folder_round_trip(s3, settings, tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(os.urandom(4096))
    prefix = storage.parse_s3_uri(settings.s3_uri).child("run-1")

    uris = storage.upload_dir(s3, folder, prefix, settings)
    restored = storage.download_dir(s3, prefix, tmp_path / "restored", settings)

    assert uris == [f"s3://{BUCKET}/ckpt/run-1/config.json", f"s3://{BUCKET}/ckpt/run-1/sub/weights.bin"]
    assert sorted(p.relative_to(tmp_path / "restored").as_posix() for p in restored) == [
        "config.json",
        "sub/weights.bin",
    ]
    for path in restored:
        assert path.read_bytes() == (folder / path.relative_to(tmp_path / "restored")).read_bytes()


def test_missing_bucket_is_not_retried(s3, settings, tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"x")
    with pytest.raises(storage.StorageError, match="after 1 attempt"):
        storage.upload_file(s3, path, storage.S3Location("no-such-bucket", "x.bin"), settings)

