"""Stage ``base``: the tiny omni base that can draw, the analogue of Anole (tiny source only).

What it does (``model.source: tiny``), right after the tokenizer stage:

1. builds image <-> text pairs from the synthetic scenes and the executor
   (:mod:`omni_r1.data.base_pairs`): ``base.train_pairs_per_kind`` training and
   ``base.heldout_pairs_per_kind`` held-out pairs of each kind (describe, draw, apply an
   action); no held-out image is in training, no Omni-Bench image (``eval.dataset``) in either;
2. encodes their images with the tokenizer stage's VQ and packs them (``packing.max_length``);
3. scores the untrained tiny model (``model.local_dir``) on the held-out drawing pairs;
4. trains it with PeSFT's trainer (:mod:`omni_r1.training.base`: L_CE + λ·L_pe, the ``base``
   budget) and writes the result to ``base.out_dir`` (``load_omni`` layout), the folder both
   tracks' PeSFT and the Omni-R1-Zero bootstrap start from (:func:`omni_r1.model.loading.load_base`);
5. scores the base on the same pairs and writes ``base.metrics_path`` (code accuracy and PSNR,
   overall and per kind, base and untrained, the VQ's reconstruction PSNR as the ceiling,
   first/last losses) and the gallery ``base.gallery_path`` (prompt, the base's drawing, the
   renderer's image); MLflow run ``base`` gets the same numbers, per-step losses and the page.

With ``model.source: pretrained`` the base is the hub model itself: nothing is trained; the
metrics file, a ``pretrained.json`` marker in ``base.out_dir`` and an empty gallery page say so.

Where it differs: the paper's base (Anole-7B) was pre-trained on web-scale image-text data;
here a 2-layer model sees a few hundred template pairs for a few seconds.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import mlflow
import torch

from omni_r1.config import Config
from omni_r1.data.base_pairs import PAIR_KINDS, PairSet, build_pair_sets, record_digests
from omni_r1.data.storage import MANIFEST, read_records
from omni_r1.executor import Executor
from omni_r1.gallery import gallery_entry, render_gallery_html
from omni_r1.model.images import decode_codes, decode_pixels, encode_images
from omni_r1.model.loading import OmniModel, load_omni, save_omni
from omni_r1.tracking import stage_run
from omni_r1.training.base import (
    HeldOutDrawings,
    base_training_section,
    drawing_metrics,
    held_out_drawings,
    pack_pairs,
    pair_codes,
    reconstruction_psnr,
)
from omni_r1.training.pesft import (
    MlflowStepLogger,
    PesftModel,
    StepProgress,
    build_projection,
    build_trainer,
    loss_history,
    training_arguments,
    window_mean,
)

PRETRAINED_MARKER = "pretrained.json"  # written to base.out_dir when the hub model is the base


def write_metrics(cfg: Config, metrics: dict[str, Any]) -> None:
    path = Path(cfg.base.metrics_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")


def omnibench_digests(cfg: Config) -> set[str]:
    """Pixel digests of the Omni-Bench images, kept out of every pair."""
    folder = Path(cfg.data.prepared_dir) / cfg.eval.dataset
    if not (folder / MANIFEST).exists():
        raise FileNotFoundError(f"{folder}: no prepared Omni-Bench set; run `omni-r1 prepare`")
    return record_digests(read_records(folder))


def train_base(cfg: Config, omni: OmniModel, train: PairSet, work_dir: Path) -> tuple[Any, int, int]:
    """PeSFT's trainer on the packed training pairs; returns (trainer, sequences, dropped)."""
    codes = pair_codes(train.pairs, lambda images: encode_images(omni, images))
    sequences, dropped = pack_pairs(train.pairs, codes, omni.layout, omni.tokenizer, cfg.packing.max_length)
    config = omni.model.config
    projection = build_projection(
        config.hidden_size, config.vq_config.embed_dim, trainable=cfg.perception.train_projection, seed=cfg.run.seed
    )
    model = PesftModel(
        omni.model, projection, omni.layout,
        perception_weight=cfg.perception.weight, alignment=cfg.perception.alignment,
    )  # fmt: skip
    args = training_arguments(
        base_training_section(cfg.pesft, cfg.base), work_dir, device=cfg.run.device, seed=cfg.run.seed,
        progress_bar=False, save_strategy="no",
    )  # fmt: skip
    trainer = build_trainer(
        model, sequences, args, pad_id=omni.layout.pad_id, tokenizer=omni.tokenizer,
        callbacks=[MlflowStepLogger(prefix="base/"), StepProgress("base", cfg.console.log_every_s)],
    )  # fmt: skip
    trainer.train()
    return trainer, len(sequences), dropped


def alternating_kinds(kinds: list[str]) -> list[int]:
    """Indices ordered first of each kind, second of each kind, ...: ``[d, d, a, a]`` → ``[0, 2, 1, 3]``."""
    seen: dict[str, int] = {}
    rank = []
    for kind in kinds:
        rank.append(seen.get(kind, 0))
        seen[kind] = rank[-1] + 1
    order = list(dict.fromkeys(kinds))
    return sorted(range(len(kinds)), key=lambda i: (rank[i], order.index(kinds[i])))


def gallery_page(cfg: Config, held_out: HeldOutDrawings, drawn: torch.Tensor, omni: OmniModel) -> str:
    """``base.gallery_examples`` held-out drawings, kinds alternating: prompt, drawing beside the rendering."""
    chosen = alternating_kinds([pair.kind for pair in held_out.pairs])[: cfg.base.gallery_examples]
    drawings = decode_codes(omni.vq_decoder, omni.model.model.vqmodel, drawn[chosen])
    entries = []
    for index, drawing in zip(chosen, drawings, strict=True):
        pair = held_out.pairs[index]
        accuracy = float((drawn[index] == held_out.target[index]).double().mean())
        entries.append(gallery_entry(
            pair.trajectory.question, pair.trajectory.steps, [drawing], None,
            renderings=[pair.images[-1]], notes=[f"code accuracy {accuracy:.3f} (left: base, right: renderer)"],
            input_images=pair.images[:-1], name=pair.id,
        ))  # fmt: skip
    return render_gallery_html(entries, "Base model drawings on held-out pairs")


def pretrained_base(cfg: Config) -> dict[str, Any]:
    """``model.source: pretrained``: nothing to train; the metrics, a marker in ``base.out_dir``
    and the gallery page say so (the marker and page keep the stage's DVC outputs present)."""
    metrics = {"trained": False, "pretrained_id": cfg.model.pretrained_id,
               "reason": "model.source is pretrained: the hub model is the base"}  # fmt: skip
    with stage_run(cfg, "base"):
        mlflow.set_tag("omni_r1.base", f"pretrained {cfg.model.pretrained_id}")
    out_dir = Path(cfg.base.out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    (out_dir / PRETRAINED_MARKER).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    page = Path(cfg.base.gallery_path)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_gallery_html([], f"Base model: {cfg.model.pretrained_id} (pretrained, not trained here)"), encoding="utf-8")
    write_metrics(cfg, metrics)
    return metrics


def run(cfg: Config) -> dict[str, Any]:
    """Pre-train the tiny base (or record that the pretrained source is the base); return the metrics."""
    if cfg.model.source != "tiny":
        return pretrained_base(cfg)
    out_dir = Path(cfg.base.out_dir)
    with stage_run(cfg, "base"):
        torch.manual_seed(cfg.run.seed)
        omni = load_omni(cfg)
        if omni.vq_decoder is None:
            raise FileNotFoundError(f"{cfg.model.local_dir}: the tiny model has no VQ decoder; rerun `omni-r1 tokenizer`")
        train, heldout = build_pair_sets(
            cfg.base.train_pairs_per_kind, cfg.base.heldout_pairs_per_kind, cfg, Executor(cfg.executor),
            omnibench_digests(cfg),
        )  # fmt: skip
        held_codes = pair_codes(heldout.pairs, lambda images: encode_images(omni, images))
        held_out = held_out_drawings(
            heldout.pairs, held_codes, omni.layout, omni.tokenizer, cfg.packing.max_length,
            omni.model.config.vq_config.resolution,
        )  # fmt: skip
        vqmodel = omni.model.model.vqmodel

        def decode(codes: torch.Tensor) -> torch.Tensor:
            return decode_pixels(omni.vq_decoder, vqmodel, codes)

        score = {"batch_size": cfg.base.eval_batch_size, "cap_db": cfg.fidelity.psnr_cap_db}
        untrained, _ = drawing_metrics(omni.model, omni.layout, held_out, decode, **score)
        started = time.perf_counter()
        shutil.rmtree(out_dir, ignore_errors=True)
        trainer, sequences, dropped = train_base(cfg, omni, train, out_dir / "trainer")
        train_seconds = time.perf_counter() - started
        trained, drawn = drawing_metrics(omni.model, omni.layout, held_out, decode, **score)
        shutil.rmtree(out_dir, ignore_errors=True)
        save_omni(omni, out_dir)

        history = loss_history(trainer.state.log_history)
        window = cfg.pesft.loss_window
        metrics = {
            "trained": True,
            "base": trained,
            "untrained": untrained,
            "vq_reconstruction_psnr_db": reconstruction_psnr(held_out, decode, cfg.fidelity.psnr_cap_db),
            "ce_first": window_mean(history, "cross_entropy", window, last=False),
            "ce_last": window_mean(history, "cross_entropy", window, last=True),
            "steps": trainer.state.global_step,
            "train_pairs": {kind: cfg.base.train_pairs_per_kind for kind in PAIR_KINDS},
            "heldout_pairs": {kind: cfg.base.heldout_pairs_per_kind for kind in PAIR_KINDS},
            "heldout_drawings": len(held_out.pairs),
            "excluded_candidates": {"train": train.skipped, "heldout": heldout.skipped},
            "sequences": sequences,
            "dropped_sequences": dropped,
        }
        write_metrics(cfg, metrics)
        page = Path(cfg.base.gallery_path)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(gallery_page(cfg, held_out, drawn, omni), encoding="utf-8")
        mlflow.log_metrics({f"base.{name}.{key}": value for name, part in (("trained", trained), ("untrained", untrained)) for key, value in part.items()})
        mlflow.log_metrics({
            "base.vq_reconstruction_psnr_db": metrics["vq_reconstruction_psnr_db"],
            "base.ce_first": metrics["ce_first"], "base.ce_last": metrics["ce_last"],
            "base.train_seconds": train_seconds,  # wall clock: MLflow only, never in a DVC-tracked file
        })  # fmt: skip
        mlflow.log_artifact(str(page), "base")
    return metrics
