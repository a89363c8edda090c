"""Stage ``evaluate``: one checkpoint on the Omni-Bench slices (paper §5, Table 2, Appendix F).

What it does, for ``--track <t> --step <s>`` (step names in :mod:`omni_r1.eval.checkpoints`:
``base`` | ``pesft`` | ``<k>`` | ``no_perception_<k>``):

1. loads the checkpoint folder with ``load_omni(cfg, model_dir=...)`` (``base``: the
   configured base model);
2. builds each prompt with ``pack_prompt`` from the Omni-Bench record
   (``data/prepared/<eval.dataset>``) and the cached codes of its input images
   (``data/encoded/<eval.dataset>``);
3. generates interleaved answers in batches (``generate_interleaved``; greedy by default,
   ``eval.decoding: sample`` uses ``generation.temperature/top_p``; budget
   ``generation.max_new_tokens``, at most ``generation.max_images_per_answer`` images);
4. extracts the final answer and judges it (``judge.name``: the offline Appendix B verifier
   ``rule``, or the Appendix F ``llm`` judge);
5. writes ``<eval.predictions_dir>/<track>_<step>.parquet`` (question, gold, prediction,
   verdict, number of images, perception score, generated codes and their mean embedding),
   ``<paths.metrics_dir>/omnibench_<track>_<step>.json`` (accuracy per slice, the
   sample-weighted ``average``, and the grader's ``grader_limit_count`` /
   ``grader_timeout_count``) and the trajectory gallery
   ``<eval.gallery_dir>/<track>_<step>.html``, and logs all three to MLflow.

Where it differs from the paper: the embedded default evaluates the tiny model on the
synthetic Omni-Bench with the offline rule judge; the paper uses Anole-7B on the real 800
items with an LLM judge (set ``judge.name: llm``). Generation follows the project's
grammar-constrained interleaved decoding, so every generated image is complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import torch

from omni_r1.config import Config
from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.evaluate import evaluate_items, load_bench, write_predictions
from omni_r1.eval.judges import build_judge
from omni_r1.eval.trajectories import render_checkpoint_gallery
from omni_r1.model.images import decode_codes
from omni_r1.rewards.accuracy import LIMIT_REASON
from omni_r1.tracking import stage_run


def checkpoint_folder(cfg: Config, ref: CheckpointRef) -> Path | None:
    """The folder to load (None for ``base``); raises when it is missing."""
    folder = ref.checkpoint_dir(cfg.paths.checkpoints_dir)
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: checkpoint of track {ref.track!r} step {ref.step!r} not found; "
            "run the training stage that writes it"
        )
    return folder


def image_decoder(omni: Any) -> Any:
    """codes [n, H*W] → PIL images with the checkpoint's VQ decoder; None without one."""
    if getattr(omni, "vq_decoder", None) is None:
        return None
    vqmodel = omni.model.model.vqmodel
    return lambda codes: decode_codes(omni.vq_decoder, vqmodel, codes)


def run(cfg: Config, track: str, step: str) -> dict[str, Any]:
    """Evaluate one checkpoint; return ``{"metrics", "predictions", "gallery", "metrics_path"}``."""
    from omni_r1.model.loading import load_omni

    ref = CheckpointRef(track, str(step))
    folder = checkpoint_folder(cfg, ref)
    dataset = cfg.eval.dataset
    items = load_bench(
        Path(cfg.data.prepared_dir) / dataset, Path(cfg.data.encoded_dir) / dataset, cfg.eval.max_per_slice
    )
    if not items:
        raise ValueError(f"{Path(cfg.data.prepared_dir) / dataset}: no Omni-Bench records")
    tags = {"omni_r1.track": ref.track, "omni_r1.step": ref.step, "omni_r1.judge": cfg.judge.name}
    with stage_run(cfg, "evaluate", run_name=f"evaluate-{ref.name}", tags=tags):
        torch.manual_seed(cfg.run.seed)
        omni = load_omni(cfg, model_dir=folder)
        omni.model.eval()
        result = evaluate_items(omni, items, cfg, build_judge(cfg.judge, cfg.reward))

        predictions = write_predictions(result.rows, Path(cfg.eval.predictions_dir) / f"{ref.name}.parquet")
        metrics_path = ref.metrics_path(cfg.paths.metrics_dir)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        grader = {  # answers the grader scored 0 at a time/memory limit; math-verify timeouts met
            "grader_limit_count": sum(v.reason == LIMIT_REASON for v in result.verdicts),
            "grader_timeout_count": sum(v.library_timeouts for v in result.verdicts),
        }
        metrics_path.write_text(json.dumps({**result.metrics, **grader}, indent=1) + "\n", encoding="utf-8")
        page = render_checkpoint_gallery(
            result.rows, [item.record.input_images for item in items], image_decoder(omni),
            cfg.eval.gallery_examples, title=f"Omni-Bench trajectories: {ref.track} step {ref.step}",
        )  # fmt: skip
        gallery = Path(cfg.eval.gallery_dir) / f"{ref.name}.html"
        gallery.parent.mkdir(parents=True, exist_ok=True)
        gallery.write_text(page, encoding="utf-8")

        mlflow.log_metrics({f"omnibench.{key}": value for key, value in {**result.metrics, **grader}.items()})
        mlflow.log_metrics(
            {
                "omnibench.samples": float(len(items)),
                "omnibench.judge_malformed": float(sum(v.malformed for v in result.verdicts)),
                "omnibench.images_per_answer": sum(r["images"] for r in result.rows) / len(items),
            }
        )
        mlflow.log_artifact(str(metrics_path), "evaluation")
        mlflow.log_artifact(str(predictions), "evaluation")
        mlflow.log_artifact(str(gallery), "gallery")
    return {
        "metrics": result.metrics,
        "metrics_path": metrics_path,
        "predictions": predictions,
        "gallery": gallery,
    }
