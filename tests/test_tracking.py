"""omni_r1.tracking: parent/nested runs, tags, dataset manifests and checkpoints (sqlite MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from moto import mock_aws

from omni_r1 import storage, tracking
from omni_r1.config import load_config


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", tracking.PARENT_RUN_ENV, tracking.DVC_EXPERIMENT_ENV):
        monkeypatch.delenv(name, raising=False)
    base = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "data_toy.json").write_text(json.dumps({"records": 3}))
    return base.model_copy(update={"tracking": base.tracking.model_copy(update={"tracking_uri": uri})})


def test_stage_runs_nest_under_the_parent_and_carry_tags(cfg, monkeypatch):
    monkeypatch.setenv(tracking.DVC_EXPERIMENT_ENV, "exp-a")
    with tracking.pipeline_run(
        cfg, "pipeline test", {"omni_r1.prefect_flow_run_id": "f1"}, cfg.paths.metrics_dir
    ) as parent:
        monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent.info.run_id)
    with tracking.stage_run(cfg, "prepare") as child:  # a stage process after the parent opened
        pass
    client = MlflowClient(cfg.tracking.tracking_uri)
    run = client.get_run(child.info.run_id)
    sha = tracking.file_sha256("metrics/data_toy.json")

    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags["omni_r1.stage"] == "prepare"
    assert run.data.tags["omni_r1.dvc_experiment"] == "exp-a"
    assert run.data.tags["omni_r1.data.toy"] == sha
    assert run.data.params["run.seed"] == str(cfg.run.seed)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/params.yaml"]
    assert client.get_run(parent.info.run_id).data.tags["omni_r1.prefect_flow_run_id"] == "f1"


def test_dataset_manifest_becomes_an_mlflow_input(cfg):
    with tracking.stage_run(cfg, "prepare") as run:
        sha = tracking.log_dataset_manifest("metrics/data_toy.json", "toy")
    logged = MlflowClient(cfg.tracking.tracking_uri).get_run(run.info.run_id)

    assert [(d.dataset.name, d.dataset.digest) for d in logged.inputs.dataset_inputs] == [("toy", sha[:16])]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        with tracking.stage_run(cfg, "prepare"):
            tracking.log_dataset_manifest("metrics/missing.json", "missing")


def test_checkpoint_without_storage_is_an_mlflow_artifact(cfg, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00" * 10)
    with tracking.stage_run(cfg, "pesft") as run:
        uri = tracking.log_checkpoint(folder, "checkpoints/pesft", cfg.storage)
    files = MlflowClient(cfg.tracking.tracking_uri).list_artifacts(run.info.run_id, "checkpoints/pesft")

    assert uri.endswith("checkpoints/pesft")
    assert [f.path for f in files] == ["checkpoints/pesft/weights.bin"]


def test_checkpoint_with_storage_goes_to_s3_and_is_tagged(cfg, tmp_path, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    settings = cfg.storage.model_copy(update={"s3_uri": "s3://ckpts/runs", "backoff_seconds": 0.0})
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x01" * 100)
    with mock_aws():
        client = storage.make_client(settings)
        client.create_bucket(Bucket="ckpts")
        with tracking.stage_run(cfg, "pesft") as run:
            uri = tracking.log_checkpoint(folder, "checkpoints/pesft", settings)
        keys = [item["Key"] for item in client.list_objects_v2(Bucket="ckpts")["Contents"]]
    tags = MlflowClient(cfg.tracking.tracking_uri).get_run(run.info.run_id).data.tags

    assert uri == f"s3://ckpts/runs/{run.info.experiment_id}/{run.info.run_id}/checkpoints/pesft"
    assert keys == [f"runs/{run.info.experiment_id}/{run.info.run_id}/checkpoints/pesft/weights.bin"]
    assert tags["omni_r1.checkpoint.checkpoints/pesft"] == uri


def test_run_url_only_for_http_servers_and_no_champion_yet(cfg):
    assert tracking.run_url("http://h:5000/", "1", "abc") == "http://h:5000/#/experiments/1/runs/abc"
    assert tracking.run_url("sqlite:///x.db", "1", "abc") is None
    assert tracking.champion_data_tags(cfg) is None
