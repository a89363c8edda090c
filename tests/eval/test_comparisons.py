"""The report's paired comparisons: which pairs, the metrics file, the words, and the stage's pages."""

from __future__ import annotations

import json
from pathlib import Path

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.comparisons import (
    PERCEPTION_ABLATION,
    PERPO_VS_PESFT,
    compare_checkpoints,
    comparison_pairs,
    comparisons_json,
    comparisons_markdown,
    mlflow_comparison_metrics,
)
from omni_r1.eval.evaluate import write_predictions

PESFT, STEP10, STEP30 = CheckpointRef("omni_r1", "pesft"), CheckpointRef("omni_r1", "10"), CheckpointRef("omni_r1", "30")
ZERO_PESFT, ZERO10, ZERO_NP10 = (CheckpointRef("omni_r1_zero", s) for s in ("pesft", "10", "no_perception_10"))


def rows(verdicts: list[bool], slices: tuple[str, ...] = ("natural", "structured")) -> list[dict]:
    return [{"record_id": f"r{i}", "slice": slices[i % len(slices)], "verdict": ok} for i, ok in enumerate(verdicts)]


def test_pairs_are_perpo_vs_pesft_and_the_perception_ablation() -> None:
    pairs = comparison_pairs([ZERO_NP10, STEP30, ZERO10, PESFT, STEP10, ZERO_PESFT, CheckpointRef("omni_r1_zero", "30")])
    assert [(p.a, p.b, p.kind) for p in pairs] == [
        (PESFT, STEP10, PERPO_VS_PESFT), (PESFT, STEP30, PERPO_VS_PESFT),
        (ZERO_PESFT, ZERO10, PERPO_VS_PESFT), (ZERO_PESFT, CheckpointRef("omni_r1_zero", "30"), PERPO_VS_PESFT),
        (ZERO_NP10, ZERO10, PERCEPTION_ABLATION),
    ]  # fmt: skip
    assert comparison_pairs([STEP10, ZERO_NP10]) == []  # no PeSFT start, no full PeRPO twin


def test_metrics_file_and_words(cfg) -> None:
    # 20 items over two slices. step 10: the same verdicts as PeSFT (no discordant item);
    # step 30: right on all 20 where PeSFT got all wrong → +1, p = 2/2^20, distinguishable;
    # per slice 10 items each, p = 2/2^10 < 0.05, also distinguishable.
    predictions = {PESFT: rows([False] * 20), STEP10: rows([False] * 20), STEP30: rows([True] * 20)}
    compared = compare_checkpoints(comparison_pairs(list(predictions)), predictions, cfg.intervals, cfg.run.seed)
    block = comparisons_json(compared, cfg.intervals)
    assert [(c["a"], c["b"]) for c in block["comparisons"]] == [("omni_r1_pesft", "omni_r1_10"), ("omni_r1_pesft", "omni_r1_30")]
    same, clear = (c["groups"]["average"] for c in block["comparisons"])
    assert (same["difference"]["mean"], same["p_value"], same["distinguishable"]) == (0.0, 1.0, False)
    assert same["minimum_detectable_difference"] is None  # no discordance observed
    assert (clear["difference"], clear["p_value"], clear["distinguishable"]) == (
        {"mean": 1.0, "low": 1.0, "high": 1.0}, 2 / 2**20, True)  # fmt: skip
    # pooled discordance = (0 + 20) / (20 + 20) = 0.5; δ = 0.1 at power 0.8:
    # (1.959964 · √0.5 + 0.841621 · √0.49)² / 0.01 = (1.385904 + 0.589135)² / 0.01 = 390.08 → 391
    assert block["pooled_discordance"] == 0.5 and block["items_per_slice_for_target"] == 391
    page = comparisons_markdown(compared, cfg.intervals)
    assert "Omni-R1-M (step 30) − Omni-R1 PeSFT only on all items" in page
    assert "The other 3 of 6 differences" in page  # step 10: overall and both slices are not distinguishable
    assert "needs 391 items per slice" in page and "Items per slice now: 10." in page
    metrics = mlflow_comparison_metrics(compared)
    assert metrics["paired.omni_r1_30_vs_omni_r1_pesft.natural.p_value"] == 2 / 2**10
    assert comparisons_markdown([], cfg.intervals).startswith("No paired comparison")


def test_report_stage_writes_paired_file_and_side_by_side_pages(eval_cfg, bench_dirs, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from omni_r1.data.storage import read_records
    from omni_r1.stages import report

    monkeypatch.chdir(tmp_path)
    dataset, _ = bench_dirs
    base = eval_cfg()
    cfg = base.model_copy(update={"data": base.data.model_copy(update={"prepared_dir": str(dataset.parent)})})
    records = list(read_records(dataset))
    metrics_dir = Path(cfg.paths.metrics_dir)
    metrics_dir.mkdir(parents=True)
    for ref, right in ((PESFT, False), (STEP30, True)):
        table = [
            {"record_id": r.id, "slice": r.meta["omnibench_slice"], "question": r.question, "gold": r.final_answer,
             "prediction": r.final_answer if right else "x", "response": f"Final Answer: {'ok' if right else 'x'}",
             "verdict": right, "score": float(right), "judge_reason": "", "judge_malformed": False, "images": 0,
             "perception": float("nan"), "image_codes": [], "image_embedding": []}
            for r in records
        ]  # fmt: skip
        write_predictions(table, Path(cfg.eval.predictions_dir) / f"{ref.name}.parquet")
        ref.metrics_path(metrics_dir).write_text(json.dumps({"natural": float(right), "average": float(right)}))
    out = report.run(cfg)
    paired = json.loads(out["paired"].read_text())
    overall = paired["comparisons"][0]["groups"]["average"]
    assert (overall["items"], overall["better"], overall["worse"]) == (len(records), len(records), 0)
    [page] = out["side_by_side"]
    html = page.read_text()
    assert page.name == "side_by_side_omni_r1.html"
    assert html.count('<div class="pair">') == cfg.eval.gallery_examples
    # left column PeSFT (all wrong), right column PeRPO (all right), in that order in every row
    for row in html.split('<div class="pair">')[1:]:
        assert row.index('class="verdict verdict-false"') < row.index('class="verdict verdict-true"')
    assert "side_by_side_omni_r1.html" in out["markdown"].read_text()
