"""The evaluate stage end to end on a saved tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import build_tiny_for_tests

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.evaluate import read_predictions
from omni_r1.model.tiny import save_tiny


@pytest.mark.slow
def test_evaluate_stage_writes_metrics_predictions_and_gallery(bench_dirs, eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    from omni_r1.stages import evaluate

    monkeypatch.chdir(tmp_path)
    dataset, encoded = bench_dirs
    cfg = eval_cfg(max_per_slice=1)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"prepared_dir": str(dataset.parent), "encoded_dir": str(encoded.parent)})})
    ref = CheckpointRef("omni_r1_zero", "no_perception_10")
    omni = build_tiny_for_tests(seed=0)
    save_tiny(omni, ref.checkpoint_dir(cfg.paths.checkpoints_dir))
    # codes must come from this checkpoint's encoder: re-encode the bench with it
    from omni_r1.data.codes import cache_key, encode_dataset
    from omni_r1.model.images import encode_images

    encode_dataset(dataset, tmp_path / "enc" / "omnibench", lambda ims: encode_images(omni, ims), cache_key(dataset, "t2"))
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"encoded_dir": str(tmp_path / "enc")})})

    out = evaluate.run(cfg, track=ref.track, step=ref.step)
    metrics = json.loads(out["metrics_path"].read_text())
    assert out["metrics_path"] == Path(cfg.paths.metrics_dir) / "omnibench_omni_r1_zero_no_perception_10.json"
    slices = {"natural", "structured", "diagrammatic", "vision_operational", "average"}
    assert set(metrics) == slices | {"grader_limit_count", "grader_timeout_count", "accuracy_interval", "fidelity"}
    rows = read_predictions(out["predictions"])
    assert len(rows) == 4
    assert metrics["grader_limit_count"] == sum(r["judge_reason"] == "grader_limit" for r in rows)
    assert metrics["average"] == sum(r["verdict"] for r in rows) / 4
    intervals = metrics["accuracy_interval"]
    assert [intervals[name]["items"] for name in ("natural", "structured", "diagrammatic", "vision_operational",
                                                  "average")] == [1, 1, 1, 1, 4]  # fmt: skip
    for name, summary in intervals.items():  # one item per slice: the interval is that item's verdict
        assert summary["mean"] == metrics[name]
        assert summary["low"] <= summary["mean"] <= summary["high"]
        if summary["items"] == 1:
            assert summary["low"] == summary["high"] == summary["mean"]
    fidelity = metrics["fidelity"]
    assert set(fidelity) == {"headline", "pass_threshold", "natural", "structured", "diagrammatic",
                             "vision_operational", "average"}
    # every generated image is counted under one status
    assert sum(fidelity["average"]["images"].values()) == sum(r["images"] for r in rows)
    assert [len(r["fidelity_status"]) for r in rows] == [r["images"] for r in rows]
    assert out["gallery"].read_text().count("<section") == 4
    runs = MlflowClient(mlflow_tmp).search_runs(
        [MlflowClient(mlflow_tmp).get_experiment_by_name(cfg.tracking.experiment).experiment_id]
    )
    assert runs[0].data.tags["omni_r1.step"] == "no_perception_10"
    assert runs[0].data.metrics["omnibench.average"] == metrics["average"]
    assert runs[0].data.metrics["omnibench_ci.average.high"] == intervals["average"]["high"]
    assert runs[0].data.metrics["fidelity.average.images.scored"] == fidelity["average"]["images"]["scored"]
    inputs = [(d.dataset.name, [t.value for t in d.tags]) for d in runs[0].inputs.dataset_inputs]
    assert inputs == [(cfg.eval.dataset, ["evaluation"])]  # the bench it read, as a run input
    assert runs[0].data.metrics["omnibench.grader_limit_count"] == metrics["grader_limit_count"]


def test_missing_checkpoint_is_a_clear_error(eval_cfg) -> None:
    from omni_r1.stages import evaluate

    cfg = eval_cfg()
    with pytest.raises(FileNotFoundError, match="perpo/step_30.*omni_r1"):
        evaluate.checkpoint_folder(cfg, CheckpointRef("omni_r1", "30"))
