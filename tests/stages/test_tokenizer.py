"""Stage tokenizer: prepared records in, tiny model + metrics + MLflow artifacts out."""

from __future__ import annotations

import json

import mlflow
import pytest
from tiny_models import TEST_TINY

from omni_r1.data import synthetic
from omni_r1.data.storage import write_records
from omni_r1.model.loading import load_omni
from omni_r1.model.tiny import tokenizer_hash
from omni_r1.stages import tokenizer as stage


def stage_cfg(cfg, tmp_path, source="tiny"):
    return cfg.model_copy(update={
        "run": cfg.run.model_copy(update={"device": "cpu"}),
        "data": cfg.data.model_copy(update={"prepared_dir": str(tmp_path / "prepared")}),
        "model": cfg.model.model_copy(update={"source": source, "local_dir": str(tmp_path / "tiny"), "tiny": TEST_TINY}),
        "tokenizer": cfg.tokenizer.model_copy(update={
            "vq_steps": 3, "vq_batch_size": 4, "psnr_samples": 3, "sample_grid": 2,
            "metrics_path": str(tmp_path / "metrics" / "tokenizer.json"), "datasets": ["sft_train"]}),
    })


@pytest.mark.slow
def test_tiny_stage_writes_model_metrics_and_mlflow_run(cfg, tmp_path, mlflow_tmp):
    write_records(synthetic.generate("train", 1, cfg), tmp_path / "prepared" / "sft_train", shard_size=cfg.data.shard_size)
    run_cfg = stage_cfg(cfg, tmp_path)
    result = stage.run(run_cfg)
    written = json.loads((tmp_path / "metrics" / "tokenizer.json").read_text())
    assert written == result and written["trained"] is True
    assert {"psnr", "codebook_usage", "train_steps"} <= set(written) and written["train_steps"] == 3
    assert written["tokenizer_hash"] == tokenizer_hash(tmp_path / "tiny")
    omni = load_omni(run_cfg)
    assert omni.vq_decoder is not None and omni.layout.num_codes == TEST_TINY.num_codes
    client = mlflow.tracking.MlflowClient(mlflow_tmp)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert run.data.tags["omni_r1.stage"] == "tokenizer"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "vq.loss")] == [1, 2, 3]
    assert "reconstructions.png" in [a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "tokenizer")]


def test_pretrained_stage_trains_nothing(cfg, tmp_path, mlflow_tmp):
    result = stage.run(stage_cfg(cfg, tmp_path, source="pretrained"))
    assert result["trained"] is False and "psnr" not in result
    assert result["pretrained_id"] == cfg.model.pretrained_id
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == [stage.PRETRAINED_MARKER]


def test_missing_prepared_dataset_is_named(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="sft_train"):
        stage.run(stage_cfg(cfg, tmp_path))
