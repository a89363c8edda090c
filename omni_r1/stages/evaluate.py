"""Stage ``evaluate``: one checkpoint on the Omni-Bench slices (paper §5, Table 2, Appendix F).

What it does, for ``--track <t> --step <s>`` (step names in :mod:`omni_r1.eval.checkpoints`:
``base`` | ``pesft`` | ``<k>`` | ``no_perception_<k>``):

1. loads the checkpoint folder with ``load_omni(cfg, model_dir=...)`` (``base``: the
   configured base model);
2. builds each prompt with ``pack_prompt`` from the Omni-Bench record
   (``data/prepared/<eval.dataset>``) and the cached codes of its input images
   (``data/encoded/<eval.dataset>``);
3. generates answers in batches under the protocol of ``eval``: prompt template
   (``prompt_template``: ours | the released script's ``official`` wrapper), decoding
   (``interleaved``: text and generated images, at most ``generation.max_images_per_answer``;
   ``text_only``: image-token logits masked as stock vLLM/transformers do), sampling (greedy,
   or ``temperature``/``top_p``) and budget ``max_new_tokens``;
4. extracts the final answer and judges it (``judge.name``: the offline Appendix B verifier
   ``rule``, or the Appendix F ``llm`` judge);
5. scores every generated image against the executor's rendering of its step's action
   (functional-image fidelity, :mod:`omni_r1.eval.fidelity`: code agreement, embedding
   distance, PSNR, pass share, per slice with bootstrap intervals; images without an action
   or with a rejected one are counted);
6. writes ``<eval.predictions_dir>/<track>_<step>.parquet`` (question, gold, prediction,
   verdict, number of images, perception score, generated codes and their mean embedding,
   per-image fidelity), ``<paths.metrics_dir>/omnibench_<track>_<step>.json`` (accuracy per
   slice, the sample-weighted ``average``, the grader's ``grader_limit_count`` /
   ``grader_timeout_count``, the ``accuracy_interval`` block: each accuracy
   with its seeded 95% bootstrap interval over items and its item count, and the ``fidelity``
   block), ``<paths.metrics_dir>/protocol_<track>_<step>.json`` (the protocol and judge those
   numbers were produced under) and the trajectory gallery
   ``<eval.gallery_dir>/<track>_<step>.html`` (generated images beside the executor's
   renderings), and logs them to MLflow.

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
from omni_r1.console import StageProgress
from omni_r1.data.storage import MANIFEST
from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.evaluate import evaluate_items, load_bench, protocol_of, write_predictions
from omni_r1.eval.fidelity import mlflow_fidelity_metrics
from omni_r1.eval.judges import build_judge
from omni_r1.eval.paired import ACCURACY_INTERVAL_KEY, mlflow_interval_metrics
from omni_r1.eval.trajectories import render_checkpoint_gallery
from omni_r1.model.images import decode_codes
from omni_r1.rewards.accuracy import LIMIT_REASON
from omni_r1.tracking import log_dataset_manifest, stage_run


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


def run(cfg: Config, track: str, step: str, rendered: bool = False) -> dict[str, Any]:
    """Evaluate one checkpoint; return ``{"metrics", "predictions", "gallery", "metrics_path"}``.

    ``rendered``: the executor draws every image (the study's rendered regime).
    """
    from omni_r1.model.loading import load_omni
    from omni_r1.rendering import image_renderer

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
        log_dataset_manifest(Path(cfg.data.prepared_dir) / dataset / MANIFEST, dataset, context="evaluation")
        torch.manual_seed(cfg.run.seed)
        omni = load_omni(cfg, model_dir=folder)
        omni.model.eval()
        title = f"evaluate {ref.track} step {ref.step}"
        budget = cfg.generation.max_new_tokens
        with StageProgress(title, len(items), unit="items", every_s=cfg.console.log_every_s) as progress:
            result = evaluate_items(
                omni, items, cfg, build_judge(cfg.judge, cfg.reward),
                on_items=lambda count: progress.update(advance=count, decoding=None),
                on_tokens=lambda token: progress.update(decoding=f"token {token}/{budget} of the batch"),
                renderer=image_renderer(cfg, omni.model, omni.tokenizer, omni.layout) if rendered else None,
            )  # fmt: skip

        predictions = write_predictions(result.rows, Path(cfg.eval.predictions_dir) / f"{ref.name}.parquet")
        metrics_path = ref.metrics_path(cfg.paths.metrics_dir)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        grader = {  # answers the grader scored 0 at a time/memory limit; math-verify timeouts met
            "grader_limit_count": sum(v.reason == LIMIT_REASON for v in result.verdicts),
            "grader_timeout_count": sum(v.library_timeouts for v in result.verdicts),
        }
        metrics_file = {
            **result.metrics, **grader, ACCURACY_INTERVAL_KEY: result.accuracy_intervals, "fidelity": result.fidelity
        }
        metrics_path.write_text(json.dumps(metrics_file, indent=1) + "\n", encoding="utf-8")
        protocol = protocol_of(cfg.eval, cfg.judge.name)
        protocol_path = metrics_path.with_name(f"protocol_{ref.name}.json")
        protocol_path.write_text(json.dumps(protocol, indent=1) + "\n", encoding="utf-8")
        mlflow.log_params({f"eval.protocol.{key}": value for key, value in protocol.items()})
        page = render_checkpoint_gallery(
            result.rows, [item.record.input_images for item in items], image_decoder(omni),
            cfg.eval.gallery_examples, title=f"Omni-Bench trajectories: {ref.track} step {ref.step}",
            renderings=result.fidelity_scores.renderings(),
        )  # fmt: skip
        gallery = Path(cfg.eval.gallery_dir) / f"{ref.name}.html"
        gallery.parent.mkdir(parents=True, exist_ok=True)
        gallery.write_text(page, encoding="utf-8")

        mlflow.log_metrics({f"omnibench.{key}": value for key, value in {**result.metrics, **grader}.items()})
        mlflow.log_metrics(mlflow_interval_metrics(result.accuracy_intervals))
        mlflow.log_metrics(mlflow_fidelity_metrics(result.fidelity))
        mlflow.log_metrics(
            {
                "omnibench.samples": float(len(items)),
                "omnibench.judge_malformed": float(sum(v.malformed for v in result.verdicts)),
                "omnibench.images_per_answer": sum(r["images"] for r in result.rows) / len(items),
            }
        )
        mlflow.log_artifact(str(metrics_path), "evaluation")
        mlflow.log_artifact(str(protocol_path), "evaluation")
        mlflow.log_artifact(str(predictions), "evaluation")
        mlflow.log_artifact(str(gallery), "gallery")
    return {
        "metrics": result.metrics,
        "metrics_path": metrics_path,
        "predictions": predictions,
        "gallery": gallery,
    }


# ---------------------------------------------------------------------------------------------
# Any checkpoint (hub id or folder) on the released Omni-Bench: `omni-r1 evaluate --model ...`
# ---------------------------------------------------------------------------------------------

MODELS_DIR = "models"  # <paths.metrics_dir>/models/<name>.json
MODELS_REPORT = "models.md"  # <report.out_dir>/models.md: one row per evaluated model


def model_slug(model: str) -> str:
    """A file-safe name for a hub id or a folder: ``ModalityDance/Omni-R1`` → ``ModalityDance--Omni-R1``."""
    return "--".join(part for part in str(model).replace("\\", "/").split("/") if part not in ("", ".", ".."))


def released_items(omni: Any, bench: str, on_bad_record: str, skipped: Any) -> list[Any]:
    """Items of the released Omni-Bench (a local parquet file/folder, else a hub id) with codes."""
    from omni_r1.data.records import from_png
    from omni_r1.data.released_bench import hub_folder, read_released_bench
    from omni_r1.eval.evaluate import BenchItem, slice_of
    from omni_r1.model.images import encode_images

    source = Path(bench) if Path(bench).exists() else hub_folder(bench)
    items = []
    for record in read_released_bench(source, on_bad_record, skipped):
        codes = encode_images(omni, [from_png(png) for png in record.input_images])  # [n, H*W]
        items.append(BenchItem(record, slice_of(record), tuple(codes)))
    if not items:
        raise ValueError(f"{source}: no Omni-Bench rows to evaluate (skipped: {dict(skipped)})")
    return items


def models_table(models_dir: Path) -> str:
    """Markdown: one row per ``<models_dir>/*.json`` with its slices, average and protocol."""
    from omni_r1.data.records import UNI_TASKS

    header = ["Model", *UNI_TASKS, "unsliced", "Avg", "n", "template", "decoding", "sampling", "tokens", "judge"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path in sorted(models_dir.glob("*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        metrics, protocol = entry["metrics"], entry["protocol"]
        cells = [f"{metrics[k]:.3f}" if k in metrics else "–" for k in (*UNI_TASKS, "unsliced", "average")]
        sampling = protocol["sampling"]
        if sampling == "sample":
            sampling = f"T {protocol['temperature']} / top-p {protocol['top_p']}"
        lines.append(
            "| " + " | ".join([entry["model"], *cells, str(entry["samples"]), protocol["prompt_template"],
                               protocol["decoding"], sampling, str(protocol["max_new_tokens"]), protocol["judge"]]) + " |"
        )  # fmt: skip
    return "\n".join(lines)


def run_model(cfg: Config, model: str, bench: str, name: str | None = None) -> dict[str, Any]:
    """Evaluate a hub id or checkpoint folder on the released Omni-Bench (Table 2's rows).

    Writes ``<eval.predictions_dir>/model_<name>.parquet``, ``<paths.metrics_dir>/models/<name>.json``
    (metrics, protocol, judge, skipped rows) and rewrites ``<report.out_dir>/models.md`` with a row
    per evaluated model. ``name`` defaults to :func:`model_slug` of ``model``.
    """
    from collections import Counter

    from omni_r1.model.loading import load_omni

    name = name or model_slug(model)
    tags = {"omni_r1.model": model, "omni_r1.judge": cfg.judge.name, "omni_r1.bench": bench}
    with stage_run(cfg, "evaluate", run_name=f"evaluate-model-{name}", tags=tags):
        torch.manual_seed(cfg.run.seed)
        omni = load_omni(cfg, model_dir=model)
        omni.model.eval()
        skipped: Counter[str] = Counter()
        items = released_items(omni, bench, cfg.data.on_bad_record, skipped)
        result = evaluate_items(omni, items, cfg, build_judge(cfg.judge, cfg.reward))
        predictions = write_predictions(result.rows, Path(cfg.eval.predictions_dir) / f"model_{name}.parquet")
        entry = {
            "model": model, "bench": bench, "metrics": result.metrics, "samples": len(items),
            "skipped": dict(skipped), "protocol": protocol_of(cfg.eval, cfg.judge.name),
        }  # fmt: skip
        models_dir = Path(cfg.paths.metrics_dir) / MODELS_DIR
        models_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = models_dir / f"{name}.json"
        metrics_path.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
        report = Path(cfg.report.out_dir) / MODELS_REPORT
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(
            "# Omni-Bench (released) by model\n\nAccuracy per slice; Avg over all samples.\n\n"
            + models_table(models_dir) + "\n", encoding="utf-8",
        )  # fmt: skip
        mlflow.log_metrics({f"omnibench.{key}": value for key, value in result.metrics.items()})
        mlflow.log_metrics({"omnibench.samples": float(len(items)), "omnibench.skipped": float(sum(skipped.values()))})
        mlflow.log_artifact(str(metrics_path), "evaluation")
        mlflow.log_artifact(str(predictions), "evaluation")
    return {"metrics": result.metrics, "metrics_path": metrics_path, "predictions": predictions, "report": report}
