"""Result lines from the stages' metrics dicts, and the closing summary from a metrics folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_r1.config import Config
from omni_r1.results import closing_summary, result_line

PESFT = {"ce_first": 6.2041, "ce_last": 1.30512, "perception_first": 0.91, "perception_last": 0.2049,
         "parse_rate": 0.8125, "steps": 200, "sequences": 256, "train_seconds": 55.0}  # fmt: skip
PERPO = {"steps": 60, "source": "probe", "reward_step0": 0.2194, "reward_last": 0.2771,
         "accuracy_step0": 0.1, "accuracy_last": 0.15, "kept_group_fraction": 0.4,
         "skipped_updates": 3, "history": []}  # fmt: skip


def test_pesft_line_has_what_was_trained_before_after_and_time() -> None:
    line = result_line("pesft", PESFT, 62.4, "omni_r1")
    assert line == (
        "✓ pesft omni_r1: 200 steps on 256 sequences · cross-entropy 6.204 → 1.305 · "
        "perception loss 0.910 → 0.205 · held-out parse rate 0.81 · 1m02s"
    )


def test_perpo_line_names_where_before_and_after_come_from() -> None:
    assert result_line("perpo", PERPO, 212.0, "omni_r1") == (
        "✓ perpo omni_r1: 60 steps · reward 0.219 → 0.277 · accuracy 0.100 → 0.150 (fixed-prompt probe) · "
        "kept groups 40% · 3 skipped updates · 3m32s"
    )
    rollouts = {**PERPO, "source": "training_rollouts", "reward_step0": None}
    assert "reward n/a → 0.277" in result_line("perpo", rollouts, 1.0)
    assert "(first → last training step)" in result_line("perpo", rollouts, 1.0)
    assert result_line("perpo", {"steps": 0}, 1.0) == "✓ perpo: no step run · 1s"


def test_tokenizer_evaluate_promote_lines() -> None:
    tokenizer = {"psnr": 21.634, "codebook_usage": 0.871, "train_steps": 650.0, "train_images": 1152.0,
                 "text_vocab_size": 768.0, "trained": True}  # fmt: skip
    assert result_line("tokenizer", tokenizer, 151.0) == (
        "✓ tokenizer: VQ autoencoder trained 650 steps on 1152 images · held-out PSNR 21.6 dB · "
        "codebook usage 87% · BPE vocabulary 768 · 2m31s"
    )
    evaluation = {"metrics": {"natural": 0.25, "structured": 0.125, "average": 0.1875},
                  "gallery": "reports/gallery/omni_r1_60.html"}  # fmt: skip
    assert result_line("evaluate", evaluation, 20.0, "omni_r1 step 60") == (
        "✓ evaluate omni_r1 step 60: Omni-Bench average 0.188 · natural 0.25, structured 0.12 · "
        "gallery reports/gallery/omni_r1_60.html · 20s"
    )
    kept = {"checkpoint": "omni_r1_30", "version": 3, "average": 0.19, "champion_version": 2,
            "champion_average": 0.25, "promoted": False}  # fmt: skip
    assert result_line("promote", kept, 4.0).endswith("champion unchanged: version 2 (average 0.250) · 4s")
    moved = {**kept, "promoted": True, "champion_average": 0.125}
    assert "champion moved: version 2 (average 0.125) → version 3" in result_line("promote", moved, 4.0)
    first = {**kept, "promoted": True, "champion_version": None, "champion_average": None}
    assert "champion: version 3 (first champion)" in result_line("promote", first, 4.0)


def test_unknown_stage_shows_its_first_numbers() -> None:
    line = result_line("probe", {"code_accuracy": 0.51234, "steps": 300, "name": "x", "ok": True}, 9.0)
    assert line == "✓ probe: code_accuracy 0.5123 · steps 300 · 9s"


def test_base_line_shows_the_gain_over_the_untrained_model() -> None:
    result = {
        "trained": True, "steps": 150, "sequences": 288, "vq_reconstruction_psnr_db": 21.04,
        "base": {"code_accuracy": 0.41, "psnr_db": 17.26}, "untrained": {"code_accuracy": 0.002, "psnr_db": 8.91},
    }  # fmt: skip
    line = result_line("base", result, 9.0)
    assert line == (
        "✓ base: 150 steps on 288 pairs · held-out code accuracy 0.002 → 0.410 · "
        "PSNR 8.9 → 17.3 dB (VQ ceiling 21.0) · 9s"
    )
    skipped = {"trained": False, "reason": "model.source is pretrained: the hub model is the base"}
    assert result_line("base", skipped, 1.0) == "✓ base: not trained: model.source is pretrained: the hub model is the base · 1s"


def write(folder: Path, name: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data), encoding="utf-8")


def test_summary_from_a_metrics_folder(tmp_path: Path, cfg: Config) -> None:
    metrics = tmp_path / cfg.paths.metrics_dir
    slices = {"natural": 0.5, "structured": 0.25, "diagrammatic": 0.0, "vision_operational": 0.125}
    write(metrics, "omnibench_omni_r1_pesft.json", {**slices, "average": 0.21875})
    write(metrics, "omnibench_omni_r1_60.json", {**slices, "natural": 0.75, "average": 0.28125})
    write(metrics, "omnibench_omni_r1_10.json", {**slices, "average": 0.25})
    write(metrics, "promote.json", {"checkpoint": "omni_r1_60", "version": 4, "average": 0.28125,
                                    "champion_version": 2, "champion_average": 0.25, "promoted": True})  # fmt: skip
    write(metrics, "pesft_omni_r1.json", PESFT)
    write(metrics, "perpo_omni_r1.json", PERPO)
    text = closing_summary(cfg, root=tmp_path, tracking_uri="sqlite:///mlflow.db")
    table = [line for line in text.splitlines() if line.startswith("| omni_r1")]
    assert table == [  # report order: PeSFT first, then PeRPO steps ascending
        "| omni_r1 pesft | 0.50 | 0.25 | 0.00 | 0.12 | **0.219** |",
        "| omni_r1 10 | 0.50 | 0.25 | 0.00 | 0.12 | **0.250** |",
        "| omni_r1 60 | 0.75 | 0.25 | 0.00 | 0.12 | **0.281** |",
    ]
    assert "Best: omni_r1 60 (average 0.281)." in text
    assert "- champion moved: version 2 (average 0.250) → version 4; `models:/omni-r1@champion` is version 4" in text
    assert "- perpo omni_r1: 60 steps · reward 0.219 → 0.277" in text
    assert "`mlflow ui --backend-store-uri sqlite:///mlflow.db`" in text
    assert f"`{Path(cfg.report.out_dir) / 'omnibench.md'}`" in text
    assert "`dvc exp show`" in text


def test_summary_before_any_evaluation(tmp_path: Path, cfg: Config) -> None:
    text = closing_summary(cfg, root=tmp_path, tracking_uri="http://127.0.0.1:5000")
    assert "No Omni-Bench results yet" in text
    assert "No champion yet: the promote stage has not run." in text
    assert "## Training" not in text
    assert "`open http://127.0.0.1:5000`" in text


def test_summary_names_a_broken_metrics_file(tmp_path: Path, cfg: Config) -> None:
    metrics = tmp_path / cfg.paths.metrics_dir
    metrics.mkdir(parents=True)
    (metrics / "promote.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="promote.json: not valid JSON"):
        closing_summary(cfg, root=tmp_path)
