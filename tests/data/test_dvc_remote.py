"""A prepared dataset round-trips through a DVC S3 remote (moto's S3 server on 127.0.0.1)."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omni_r1.data import synthetic
from omni_r1.data.storage import read_records, write_records

DVC = str(Path(sys.executable).with_name("dvc"))
BUCKET = "omni-r1-data"


@pytest.fixture
def s3_url(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.servers
def test_dvc_push_pull_through_s3(cfg, tmp_path, s3_url):
    repo = tmp_path / "repo"
    dataset = repo / "data" / "prepared" / "omnibench"
    write_records(synthetic.generate("omnibench", 1, cfg), dataset, shard_size=2)
    sh("git", "init", "-q", cwd=repo)
    sh(DVC, "init", "-q", cwd=repo)
    sh(DVC, "remote", "add", "-d", "storage", f"s3://{BUCKET}/dvc", cwd=repo)
    sh(DVC, "remote", "modify", "storage", "endpointurl", s3_url, cwd=repo)
    sh(DVC, "remote", "modify", "--local", "storage", "access_key_id", "testing", cwd=repo)
    sh(DVC, "remote", "modify", "--local", "storage", "secret_access_key", "testing", cwd=repo)
    sh(DVC, "add", "-q", "data/prepared/omnibench", cwd=repo)
    sh(DVC, "push", "-q", cwd=repo)
    import boto3

    listed = boto3.client("s3", endpoint_url=s3_url).list_objects_v2(Bucket=BUCKET, Prefix="dvc/")
    assert listed["KeyCount"] >= 3  # the shards, the manifest and the folder listing
    original = tmp_path / "original"
    shutil.copytree(dataset, original)
    shutil.rmtree(dataset)
    shutil.rmtree(repo / ".dvc" / "cache")
    sh(DVC, "pull", "-q", cwd=repo)
    files = sorted(p.name for p in original.iterdir())
    assert files == sorted(p.name for p in dataset.iterdir()) and len(files) == 3
    match, mismatch, errors = filecmp.cmpfiles(original, dataset, files, shallow=False)
    assert match == files and not mismatch and not errors
    assert len(list(read_records(dataset))) == 4
