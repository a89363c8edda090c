"""Stage ``tokenizer``: train the tiny model's text and image tokenizers and build the tiny model.

What it does (``model.source: tiny``): reads the images and texts of the prepared training
datasets (``tokenizer.datasets`` under ``data.prepared_dir``), trains a byte-level BPE on the
texts and a VQ autoencoder (encoder + codebook + decoder, VQ-VAE loss with straight-through
gradients, commitment β, dead-code restarts) on the images, wraps both in a random
``ChameleonForConditionalGeneration`` with Anole's vocabulary layout and saves it to
``model.local_dir``. Metrics: held-out PSNR, codebook usage, steps (``tokenizer.metrics_path``);
MLflow: per-step losses and a PNG of held-out original|reconstruction pairs.

Paper: Omni-R1 uses Anole's frozen VQGAN (8192 codes, 32x32 grid per 512-px image) and
Chameleon's text tokenizer; nothing is trained at this point. This stage exists only so the
embedded tiny pipeline has a tokenizer that fits its own small images. With
``model.source: pretrained`` it trains nothing and records that the pretrained tokenizers are used (metrics and a
``pretrained.json`` marker in ``model.local_dir``; no PSNR is reported).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from PIL import Image

from omni_r1.config import Config
from omni_r1.console import StageProgress
from omni_r1.model.tiny import TinyTrainingResult, save_tiny, tokenizer_hash, train_tiny
from omni_r1.tracking import stage_run
from omni_r1.trajectory import render_prompt, render_trajectory

LOG_EVERY = 10  # VQ steps per batch of MLflow loss metrics
PRETRAINED_MARKER = "pretrained.json"  # written to model.local_dir when the pretrained tokenizers are used


def run(cfg: Config) -> dict[str, Any]:
    """Train the tiny tokenizers and save the tiny model; return the metrics written."""
    if cfg.model.source == "pretrained":
        metrics = {"source": "pretrained", "pretrained_id": cfg.model.pretrained_id, "trained": False}
        with stage_run(cfg, "tokenizer"):
            mlflow.set_tag("omni_r1.tokenizer", f"pretrained {cfg.model.pretrained_id}")
        write_metrics(metrics, Path(cfg.model.local_dir) / PRETRAINED_MARKER)  # keeps the DVC out present
        return write_metrics(metrics, cfg.tokenizer.metrics_path)

    images, texts = _collect(cfg)
    with stage_run(cfg, "tokenizer"):
        mlflow.log_params({"tokenizer.images": len(images), "tokenizer.texts": len(texts)})
        result = train_with_progress(images, texts, cfg)
        model_dir = save_tiny(result.omni, cfg.model.local_dir)
        metrics = {**result.metrics, "source": "tiny", "trained": True,
                   "tokenizer_hash": tokenizer_hash(model_dir)}
        mlflow.log_metrics({f"tokenizer.{k}": v for k, v in result.metrics.items()})
        mlflow.log_image(reconstruction_grid(result.samples), "tokenizer/reconstructions.png")
    return write_metrics(metrics, cfg.tokenizer.metrics_path)


def train_with_progress(images: list[Image.Image], texts: list[str], cfg: Config) -> TinyTrainingResult:
    """``train_tiny`` with progress (VQ steps, loss) and per-step loss metrics sent to the active MLflow run."""
    pending: list[tuple[int, dict[str, float]]] = []
    with StageProgress("tokenizer VQ", cfg.tokenizer.vq_steps, unit="steps", every_s=cfg.console.log_every_s) as progress:

        def on_step(step: int, record: dict[str, float]) -> None:
            progress.update(step, loss=record["loss"])
            pending.append((step, record))
            if step % LOG_EVERY == 0 or step == cfg.tokenizer.vq_steps:
                for logged_step, values in pending:
                    mlflow.log_metrics({f"vq.{k}": v for k, v in values.items() if k != "step"}, step=logged_step)
                pending.clear()

        return train_tiny(images, texts, cfg.model.tiny, cfg.tokenizer, cfg.run.seed, on_step)


def reconstruction_grid(pairs: list[tuple[Image.Image, Image.Image]]) -> Image.Image:
    """One row per pair: original | reconstruction."""
    width, height = pairs[0][0].size
    grid = Image.new("RGB", (2 * width, height * len(pairs)), (255, 255, 255))
    for row, (original, reconstruction) in enumerate(pairs):
        grid.paste(original, (0, row * height))
        grid.paste(reconstruction, (width, row * height))
    return grid


def write_metrics(metrics: dict[str, Any], path: str | Path) -> dict[str, Any]:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return metrics


def _collect(cfg: Config) -> tuple[list[Image.Image], list[str]]:
    """Images (input and step images) and texts of the configured prepared datasets."""
    from omni_r1.data.records import from_png
    from omni_r1.data.storage import read_records

    images: list[Image.Image] = []
    texts: list[str] = []
    for name in cfg.tokenizer.datasets:
        dataset_dir = Path(cfg.data.prepared_dir) / name
        if not dataset_dir.is_dir():
            raise FileNotFoundError(f"{dataset_dir}: prepared dataset missing; run `omni-r1 prepare`")
        for record in read_records(dataset_dir):
            texts.extend(_record_texts(record))
            pngs = [*record.input_images, *(step.image for step in record.steps if step.image)]
            images.extend(from_png(png) for png in pngs[: max(0, cfg.tokenizer.max_images - len(images))])
    if len(images) < 2:
        raise ValueError(f"datasets {cfg.tokenizer.datasets}: {len(images)} images, need at least 2")
    return images, texts


def _record_texts(record: Any) -> Iterator[str]:
    """The prompt and assistant texts the model will read (image slots included), plus text CoT."""
    from omni_r1.data.records import record_to_trajectory, text_cot_trajectory

    trajectory = record_to_trajectory(record)
    yield render_prompt(trajectory)
    yield render_trajectory(trajectory)
    if record.text_cot:
        yield render_trajectory(text_cot_trajectory(record))
