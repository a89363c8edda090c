"""Step names ↔ checkpoint folders and metrics files."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_r1.eval.checkpoints import CheckpointRef, StepError, parse_metrics_name


@pytest.mark.parametrize(
    ("track", "step", "folder", "kind"),
    [
        ("omni_r1", "pesft", "c/omni_r1/pesft", "pesft"),
        ("omni_r1", "30", "c/omni_r1/perpo/step_30", "perpo"),
        ("omni_r1_zero", "no_perception_10", "c/omni_r1_zero/perpo_no_perception/step_10", "no_perception"),
        ("omni_r1", "base", None, "base"),
    ],
)
def test_step_names_resolve_to_the_pipeline_folders(track, step, folder, kind) -> None:
    ref = CheckpointRef(track, step)
    assert ref.kind == kind
    assert ref.checkpoint_dir("c") == (Path(folder) if folder else None)
    path = ref.metrics_path("metrics")
    assert path == Path(f"metrics/omnibench_{track}_{step}.json")
    assert parse_metrics_name(path) == ref  # the file name reads back, zero track included


@pytest.mark.parametrize(("track", "step"), [("omni_r2", "10"), ("omni_r1", "step_10"), ("omni_r1", "no_perception_")])
def test_unknown_names_are_errors(track, step) -> None:
    with pytest.raises(StepError):
        CheckpointRef(track, step)


def test_metrics_name_errors_name_the_file() -> None:
    with pytest.raises(StepError, match="omnibench_other_10"):
        parse_metrics_name("metrics/omnibench_other_10.json")


def test_only_checkpoints_the_params_define_are_configured(cfg) -> None:
    from omni_r1.eval.checkpoints import is_configured

    cfg = cfg.model_copy(update={
        "perpo": cfg.perpo.model_copy(update={"save_steps": [10, 60]}),
        "eval": cfg.eval.model_copy(update={"ablation_steps": [60]}),
    })  # fmt: skip
    assert is_configured(CheckpointRef("omni_r1", "pesft"), cfg)
    assert is_configured(CheckpointRef("omni_r1_zero", "60"), cfg)
    assert is_configured(CheckpointRef("omni_r1_zero", "no_perception_60"), cfg)
    assert not is_configured(CheckpointRef("omni_r1", "20"), cfg)  # a step no longer saved
    assert not is_configured(CheckpointRef("omni_r1_zero", "no_perception_10"), cfg)  # saved, not evaluated
    single = cfg.model_copy(update={"pesft": cfg.pesft.model_copy(update={"datasets": {"omni_r1": "sft_train"}})})
    assert not is_configured(CheckpointRef("omni_r1_zero", "pesft"), single)
