"""The pipeline flow against real servers on 127.0.0.1: Prefect, MLflow, S3 (moto).

A session fixture starts ``prefect server``, ``mlflow server`` (sqlite backend, artifacts
proxied to S3) and moto's S3 server, waits for their health endpoints and stops them at the
end. The toy DVC project's stages log nested MLflow runs, upload checkpoints to S3 through
``omni_r1.storage``, and its promote stage moves the registry alias.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.servers, pytest.mark.slow]

BUCKET = "omni-r1-servers"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    root = tmp_path_factory.mktemp("servers")
    s3_port, prefect_port, mlflow_port = free_port(), free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port)
    moto.start()
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client("s3", endpoint_url=s3_url, **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"})
    s3.create_bucket(Bucket=BUCKET)

    base_env = {**os.environ, **aws, "DO_NOT_TRACK": "1"}
    prefect = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
        env={**base_env, "PREFECT_HOME": str(root / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        stdout=subprocess.DEVNULL, stderr=(root / "prefect.log").open("wb"),
    )
    mlflow = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{BUCKET}/mlflow",
        ],
        env={**base_env, "MLFLOW_S3_ENDPOINT_URL": s3_url},
        stdout=subprocess.DEVNULL, stderr=(root / "mlflow.log").open("wb"),
    )
    try:
        wait_healthy(f"http://127.0.0.1:{prefect_port}/api/health", prefect)
        wait_healthy(f"http://127.0.0.1:{mlflow_port}/health", mlflow)
        yield {
            "prefect_api": f"http://127.0.0.1:{prefect_port}/api",
            "mlflow": f"http://127.0.0.1:{mlflow_port}",
            "s3_url": s3_url,
            "s3": s3,
            "aws": aws,
        }
    finally:
        stop(prefect)
        stop(mlflow)
        moto.stop()


def test_pipeline_against_servers(servers, toy_project_factory, monkeypatch):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import Selection, pipeline

    project = toy_project_factory(
        "servers",
        {"storage": {"s3_uri": f"s3://{BUCKET}/checkpoints", "endpoint_url": servers["s3_url"],
                     "max_retries": 1, "backoff_seconds": 0.0}},
    )
    for name, value in servers["aws"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers["mlflow"])
    monkeypatch.setenv("PREFECT_API_URL", servers["prefect_api"])
    monkeypatch.chdir(project)

    with temporary_settings(updates={PREFECT_API_URL: servers["prefect_api"]}):
        state = pipeline(
            selection=Selection(tracks=["omni_r1"], checkpoint_steps=[10]),
            project_dir=str(project),
            return_state=True,
        )
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(state.state_details.flow_run_id)
    result = state.result()

    assert flow_run.state.is_completed()
    mlflow_client = MlflowClient(servers["mlflow"])
    parent = mlflow_client.get_run(result["parent_run_id"])
    assert parent.data.tags["omni_r1.prefect_flow_run_id"] == str(flow_run.id)
    children = mlflow_client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(run.data.tags["omni_r1.stage"] for run in children) == ["pesft@omni_r1", "promote"]
    assert {run.data.tags["omni_r1.prefect_flow_run_id"] for run in children} == {str(flow_run.id)}

    pesft = next(run for run in children if run.data.tags["omni_r1.stage"] == "pesft@omni_r1")
    checkpoint_uri = pesft.data.tags["omni_r1.checkpoint.checkpoints/pesft_omni_r1"]
    keys = [
        item["Key"]
        for item in servers["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])
    ]
    prefix = checkpoint_uri.removeprefix(f"s3://{BUCKET}/")
    assert {f"{prefix}/weights.bin", f"{prefix}/config.json"} <= set(keys)
    assert not [key for key in keys if key.startswith(".incomplete/")]
    mlflow_artifacts = [key for key in keys if key.startswith("mlflow/")]
    assert any(key.endswith(f"{parent.info.run_id}/artifacts/config/params.yaml") for key in mlflow_artifacts)

    from omni_r1.config import load_config

    names = load_config(project / "params.yaml").tracking
    champion = mlflow_client.get_model_version_by_alias(names.registered_model, names.champion_alias)
    assert champion.run_id in {run.info.run_id for run in children}
