"""Stage ``study``: generated vs text-only vs executor-rendered images at equal compute.

For each regime of ``study.regimes`` (:mod:`omni_r1.study`): PeSFT from the base for
``pesft.max_steps`` steps, PeRPO from that checkpoint for ``perpo.max_steps``
steps, then Omni-Bench evaluation of the final PeRPO checkpoint, each through the pipeline's
own stage functions (their MLflow runs nest under the pipeline run like any stage). Then
``study.report_path``: accuracy per regime and Uni-Task with bootstrap intervals
(:func:`omni_r1.eval.paired.accuracy_intervals`), paired differences between regimes on the
same items (:func:`omni_r1.eval.paired.paired_by_slice`), image statistics, the cost of each
regime (trained and generated tokens, wall time) and a gallery of the same items under every
regime; ``study.metrics_path`` holds the same numbers.

Not in the paper: it asks whether the paper's central claim (§3, reasoning improves when the
model generates its functional images) holds against text-only reasoning and tool-rendered
images on the same tasks and budget. Not part of ``dvc repro``: ``dvc exp run study/dvc.yaml``.
"""

from __future__ import annotations

import json
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import mlflow

from omni_r1.config import Config
from omni_r1.data.codes import cache_key, encode_dataset
from omni_r1.data.records import text_only_record
from omni_r1.data.storage import read_records, write_records
from omni_r1.eval.evaluate import read_predictions
from omni_r1.eval.paired import accuracy_intervals, paired_by_slice
from omni_r1.eval.trajectories import render_columns
from omni_r1.study import (
    STUDY_TRACK,
    budget,
    image_statistics,
    regime_config,
    regime_dir,
    study_markdown,
)
from omni_r1.tracking import stage_run


def write_text_only_dataset(cfg: Config) -> Path:
    """``study.dataset`` without step images, prepared and encoded under ``study.text_only_dataset``."""
    from omni_r1.model.images import encode_images
    from omni_r1.model.loading import load_omni
    from omni_r1.model.tiny import tokenizer_hash
    from omni_r1.stages.encode import tokenizer_dir

    source = Path(cfg.data.prepared_dir) / cfg.study.dataset
    out = Path(cfg.data.prepared_dir) / cfg.study.text_only_dataset
    write_records((text_only_record(record) for record in read_records(source)), out, shard_size=cfg.data.shard_size)
    omni = load_omni(cfg)
    encode_dataset(
        out, Path(cfg.data.encoded_dir) / cfg.study.text_only_dataset,
        lambda images: encode_images(omni, images), cache_key(out, tokenizer_hash(tokenizer_dir(cfg))),
    )  # fmt: skip
    return out


def run_regime(cfg: Config, regime: str) -> dict[str, Any]:
    """PeSFT → PeRPO → evaluation of one regime; returns its predictions path and cost."""
    from omni_r1.stages import evaluate, perpo, pesft

    regime_cfg = regime_config(cfg, regime)
    track, rendered = STUDY_TRACK, regime == "rendered"
    started = time.perf_counter()
    pesft_metrics = pesft.run(regime_cfg, track, images_as_context=rendered)
    pesft_seconds = time.perf_counter() - started
    perpo_metrics = perpo.run(regime_cfg, track, rendered=rendered)
    perpo_seconds = time.perf_counter() - started - pesft_seconds
    result = evaluate.run(regime_cfg, track, str(regime_cfg.perpo.max_steps), rendered=rendered)
    eval_seconds = time.perf_counter() - started - pesft_seconds - perpo_seconds
    sequences = regime_cfg.pesft.per_device_batch_size * regime_cfg.pesft.gradient_accumulation_steps
    pesft_tokens = pesft_metrics["labelled_tokens_per_sequence"] * sequences * pesft_metrics["steps"]
    cost = {
        "trained tokens": float(pesft_tokens + perpo_metrics["tokens_trained"]),
        "PeRPO generated tokens": float(perpo_metrics["tokens_generated"]),
        "PeSFT s": pesft_seconds,
        "PeRPO s": perpo_seconds,
        "evaluation s": eval_seconds,
    }
    return {"predictions": str(result["predictions"]), "cost": cost, "checkpoint": regime_cfg}


def regime_decoder(regime_cfg: Config, track: str, step: int) -> Any:
    """codes → images with the regime's final checkpoint's VQ decoder (None without one)."""
    from omni_r1.model.loading import load_omni
    from omni_r1.stages.evaluate import image_decoder

    folder = Path(regime_cfg.paths.checkpoints_dir) / track / "perpo" / f"step_{step}"
    return image_decoder(load_omni(regime_cfg, model_dir=folder))


def run(cfg: Config) -> dict[str, Any]:
    """Run every regime, then write the study report, gallery and metrics; return the metrics."""
    regimes = list(cfg.study.regimes)
    for regime in regimes:  # refuse a setting a regime cannot run before any training starts
        regime_config(cfg, regime)
    if "text_only" in regimes:
        write_text_only_dataset(cfg)
    runs = {regime: run_regime(cfg, regime) for regime in regimes}

    rows = {regime: read_predictions(runs[regime]["predictions"]) for regime in regimes}
    intervals = cfg.intervals
    accuracy = {
        regime: accuracy_intervals(
            [row["slice"] for row in table], [row["verdict"] for row in table],
            intervals.resamples, intervals.confidence, cfg.run.seed,
        )  # fmt: skip
        for regime, table in rows.items()
    }
    alpha = 1.0 - intervals.confidence
    paired = {
        f"{b} − {a}": {
            group: comparison.as_dict(alpha)
            for group, comparison in paired_by_slice(
                rows[a], rows[b], intervals.resamples, intervals.confidence, cfg.run.seed
            ).items()
        }
        for a, b in combinations(regimes, 2)
    }
    images = {regime: image_statistics(regime, table) for regime, table in rows.items()}
    costs = {regime: runs[regime]["cost"] for regime in regimes}

    report = Path(cfg.study.report_path)
    gallery = report.with_name(f"{report.stem}_gallery.html")
    dataset = Path(cfg.data.prepared_dir) / cfg.eval.dataset
    input_pngs = {record.id: record.input_images for record in read_records(dataset)}
    steps = cfg.perpo.max_steps
    page = render_columns(
        [rows[regime] for regime in regimes], input_pngs,
        [regime_decoder(runs[regime]["checkpoint"], STUDY_TRACK, steps) for regime in regimes],
        cfg.study.gallery_examples, regimes, title="Omni-Bench: the same items under every study regime",
    )  # fmt: skip
    report.parent.mkdir(parents=True, exist_ok=True)
    gallery.write_text(page, encoding="utf-8")
    budgets = budget(regime_config(cfg, regimes[0]))
    report.write_text(
        study_markdown(accuracy, paired, images, costs, budgets, intervals.confidence, gallery.name), encoding="utf-8"
    )
    tokens = {regime: {k: v for k, v in cost.items() if "tokens" in k} for regime, cost in costs.items()}
    metrics = {"accuracy": accuracy, "paired": paired, "images": images, "budget": budgets, "tokens": tokens}
    metrics_path = Path(cfg.study.metrics_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")  # wall times: MLflow only

    with stage_run(cfg, "study", run_name="study"):
        for regime in regimes:
            mlflow.log_metrics({f"study.{regime}.{key.replace(' ', '_')}": value for key, value in costs[regime].items()})
            mlflow.log_metric(f"study.{regime}.accuracy", float(accuracy[regime]["average"]["mean"] or 0.0))
            mlflow.log_params({f"study.{regime}.run_dir": str(regime_dir(cfg, regime))})
        mlflow.log_artifact(str(report), "study")
        mlflow.log_artifact(str(gallery), "study")
    return {**metrics, "costs": costs}
