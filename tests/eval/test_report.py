"""Report: Table 2 / Table 4 shapes, gains, plots data, the projection PNG and the stage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.evaluate import write_predictions
from omni_r1.eval.projection import choose_projection, pca_2d, plot_projection, project
from omni_r1.eval.report import base_ref, reward_series, table2_rows, table4_rows

SLICES = ("natural", "structured", "diagrammatic", "vision_operational")


def metrics(avg: float) -> dict[str, float]:
    return {**{name: avg for name in SLICES}, "average": avg}


RESULTS = {
    CheckpointRef("omni_r1", "pesft"): metrics(0.10),
    CheckpointRef("omni_r1", "30"): metrics(0.15),
    CheckpointRef("omni_r1", "10"): metrics(0.12),
    CheckpointRef("omni_r1_zero", "pesft"): metrics(0.08),
    CheckpointRef("omni_r1_zero", "10"): metrics(0.16),
    CheckpointRef("omni_r1_zero", "no_perception_10"): metrics(0.12),
}


def test_table2_base_is_omni_r1_pesft_without_a_base_evaluation() -> None:
    assert base_ref(RESULTS) == CheckpointRef("omni_r1", "pesft")
    rows = table2_rows(RESULTS)
    labels = [row.label for row in rows]
    assert labels[0].startswith("Base = Omni-R1 PeSFT only")
    assert labels[1:] == ["Omni-R1 (step 10)", "Omni-R1-M (step 30)", "Omni-R1-Zero PeSFT only", "Omni-R1-Zero-T (step 10)"]
    # gain = (avg - 0.10) / 0.10
    assert [row.gain for row in rows] == pytest.approx([0.0, 0.2, 0.5, -0.2, 0.6])


def test_a_base_evaluation_becomes_the_base_row() -> None:
    results = {**RESULTS, CheckpointRef("omni_r1", "base"): metrics(0.05)}
    rows = table2_rows(results)
    assert rows[0].label == "Base model" and rows[1].label == "Omni-R1 PeSFT only"
    assert rows[1].gain == pytest.approx(1.0)


def test_table4_is_the_zero_ablation() -> None:
    rows = table4_rows(RESULTS)
    assert [row.label for row in rows] == [
        "Omni-R1-Zero w/o PeRPO (PeSFT only)", "Omni-R1-Zero full (step 10)", "Omni-R1-Zero w/o PeReward (step 10)",
    ]  # fmt: skip
    assert [row.gain for row in rows] == pytest.approx([0.0, 1.0, 0.5])


def test_reward_series_from_history_or_summary() -> None:
    summary = {"steps": 60, "reward_step0": 0.2, "reward_last": 0.5, "accuracy_step0": 0.1, "accuracy_last": 0.3}
    series = reward_series(summary)
    assert [(r["step"], r["reward"], r["accuracy"]) for r in series] == [(0, 0.2, 0.1), (60, 0.5, 0.3)]
    history = {"history": [{"step": 1, "reward/mean": 0.3}, {"step": 2, "reward/mean": 0.4}]}
    assert [(r["step"], r["reward"]) for r in reward_series(history)] == [(1, 0.3), (2, 0.4)]


def test_pca_recovers_the_main_direction() -> None:
    rng = np.random.default_rng(0)
    along = rng.normal(size=(50, 1)) * 10.0
    points = np.hstack([along, 0.01 * rng.normal(size=(50, 1)), along])  # spread along (1, 0, 1)
    coords = pca_2d(points)
    assert coords.shape == (50, 2)
    assert abs(np.corrcoef(coords[:, 0], along[:, 0])[0, 1]) > 0.999
    assert coords[:, 0].var() > 1000 * coords[:, 1].var()
    assert project([[1.0, 2.0]], "pca").shape == (1, 2)


def test_projection_png_shows_both_colours(tmp_path) -> None:
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    path = plot_projection(coords, [True, False, True], tmp_path / "p.png", "t")
    image = Image.open(path).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    assert (0x1A, 0x98, 0x50) in colours and (0xD7, 0x30, 0x27) in colours
    assert choose_projection("pca") == "pca"
    assert choose_projection("auto") in ("pca", "umap")


def test_report_stage_writes_tables_plots_and_projection(eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from omni_r1.stages import report

    monkeypatch.chdir(tmp_path)
    cfg = eval_cfg()
    metrics_dir = Path(cfg.paths.metrics_dir)
    metrics_dir.mkdir(parents=True)
    for ref, values in RESULTS.items():
        ref.metrics_path(metrics_dir).write_text(json.dumps(values))
    (metrics_dir / "perpo_omni_r1.json").write_text(json.dumps({"steps": 30, "reward_step0": 0.1, "reward_last": 0.4}))
    rows = [
        {"record_id": f"r{i}", "slice": "natural", "question": "q", "gold": "1", "prediction": "1", "response": "",
         "verdict": i % 2 == 0, "score": 1.0, "judge_reason": "", "judge_malformed": False, "images": 1,
         "perception": 0.5, "image_codes": [[0, 1]], "image_embedding": [float(i), float(i % 3), 1.0]}
        for i in range(6)
    ]  # fmt: skip
    write_predictions(rows, Path(cfg.eval.predictions_dir) / "omni_r1_30.parquet")
    for name in ("omni_r1_30", "omni_r1_zero_no_perception_10"):  # the second: a left-over file
        (metrics_dir / f"protocol_{name}.json").write_text(json.dumps({"decoding": "interleaved"}))
    out = report.run(cfg)
    page = out["markdown"].read_text()
    assert "## Table 2" in page and "## Table 4" in page and "Omni-R1-M (step 30)" in page and "+50.0%" in page
    # no_perception_10's file is left over from another configuration (eval.ablation_steps is [60])
    assert cfg.eval.ablation_steps == [60] and "w/o PeReward (step 10)" not in page
    assert "Omni-R1-Zero-T (step 10)" in page
    assert "| omni_r1_30 |" in page and "omni_r1_zero_no_perception_10 |" not in page  # protocol table
    with (Path(cfg.report.plots_dir) / "accuracy_omni_r1.csv").open() as stream:
        accuracy = list(csv.DictReader(stream))
    assert [(r["step"], float(r["average"])) for r in accuracy] == [("0", 0.10), ("10", 0.12), ("30", 0.15)]
    with (Path(cfg.report.plots_dir) / "reward_omni_r1.csv").open() as stream:
        assert [r["reward"] for r in csv.DictReader(stream)] == ["0.1", "0.4"]
    assert Image.open(out["projection"]).size[0] > 100


def with_fidelity(avg: float, agreement: float, low: float, high: float) -> dict:
    summary = {
        "images": {"scored": 3, "no_action": 1, "rejected": 0},
        "code_agreement": {"mean": agreement, "low": low, "high": high},
        "embedding_distance": {"mean": 0.1, "low": 0.05, "high": 0.2},
        "psnr": {"mean": 20.0, "low": 15.0, "high": 25.0},
        "pass_share": {"mean": 2 / 3, "low": 0.0, "high": 1.0},
    }
    block = {"headline": "code_agreement", "pass_threshold": 0.5, "natural": summary, "average": summary}
    return {**metrics(avg), "fidelity": block}


def test_tables_carry_the_fidelity_column_and_series() -> None:
    from omni_r1.eval.report import fidelity_series, markdown_table, report_markdown

    results = {
        CheckpointRef("omni_r1", "pesft"): with_fidelity(0.10, 0.25, 0.125, 0.375),
        CheckpointRef("omni_r1", "10"): with_fidelity(0.12, 0.5, 0.25, 0.75),
        CheckpointRef("omni_r1_zero", "pesft"): metrics(0.08),  # an evaluation without fidelity scores
    }
    table = markdown_table(table2_rows(results), "Gain").splitlines()
    assert "| Avg | Fidelity [95% CI] | Pass | Scored images | Gain |" in table[0]
    assert "| 0.100 | 0.250 [0.125, 0.375] | 0.667 | 3/4 | +0.0% |" in table[2]
    assert "| 0.120 | 0.500 [0.250, 0.750] | 0.667 | 3/4 | +20.0% |" in table[3]
    assert table[4].endswith("| 0.080 | – | – | – | -20.0% |")
    page = report_markdown(results, None, [])
    assert "code agreement (share of equal codes)" in page and "reaches 0.5" in page
    assert "| Omni-R1 (step 10) | 0.500 [0.250, 0.750] | – | – | – | 0.500 [0.250, 0.750] |" in page
    series = fidelity_series(results, "omni_r1")
    assert [(r["step"], r["natural"], r["structured"], r["average"], r["low"]) for r in series] == [
        (0, 0.25, None, 0.25, 0.125), (10, 0.5, None, 0.5, 0.25),
    ]  # fmt: skip
    assert fidelity_series(results, "omni_r1_zero") == []


def test_accuracy_cells_carry_their_intervals() -> None:
    from omni_r1.eval.report import accuracy_cell, markdown_table

    with_interval = {**metrics(0.25), "accuracy_interval": {"natural": {"mean": 0.25, "low": 0.0, "high": 0.75, "items": 4},
                                                            "average": {"mean": 0.25, "low": None, "high": None, "items": 0}}}
    assert accuracy_cell(with_interval, "natural") == "0.250 [0.000, 0.750]"
    assert accuracy_cell(with_interval, "average") == "0.250"  # no interval: the bare accuracy
    assert accuracy_cell(metrics(0.5), "natural") == "0.500"  # an evaluation written before intervals
    table = markdown_table(table2_rows({CheckpointRef("omni_r1", "pesft"): with_interval}), "Gain")
    assert "| 0.250 [0.000, 0.750] | 0.250 |" in table
