"""Stage ``report``: Tables 2 and 4, plots data and the Figure-4 projection, from all evaluations.

What it does:

- reads every ``<paths.metrics_dir>/omnibench_<track>_<step>.json`` and
  ``<paths.metrics_dir>/perpo_*.json``;
- writes ``<report.out_dir>/omnibench.md`` with a table shaped like the paper's Table 2
  (base row, PeSFT-only and PeRPO checkpoints per track; four slices, the sample-weighted
  average, relative gain over the base row) and one like Table 4 (Omni-R1-Zero: w/o PeRPO =
  PeSFT only, full, w/o PeReward = no-perception PeRPO). The base row is a ``base``
  evaluation when present, else the omni_r1 PeSFT-only checkpoint (see
  :mod:`omni_r1.eval.report`);
- writes ``<report.plots_dir>/accuracy_<track>.csv`` (Omni-Bench accuracy vs PeRPO step)
  and ``reward_<name>.csv`` (PeRPO rollout reward vs step) for ``dvc plots``;
- projects the mean codebook embedding of every prediction's generated images (from the
  predictions parquets of ``eval.predictions_dir``) to 2-D, coloured correct / incorrect —
  the paper's Figure 4 — as ``report.projection_path`` (PCA, or UMAP when importable and
  ``report.projection`` allows it);
- compares checkpoints pairwise on the same items (:mod:`omni_r1.eval.comparisons`): every
  PeRPO checkpoint against its track's PeSFT start, and PeRPO step k against its
  no-perception twin; per slice and overall the accuracy difference with its paired-bootstrap
  interval, the exact sign-test p-value and the smallest detectable difference, and which
  differences are distinguishable from noise, in words; writes them to
  ``<report.out_dir>/omnibench_paired.json`` and the stage's MLflow metrics;
- per track, ``<report.out_dir>/side_by_side_<track>.html``: ``eval.gallery_examples``
  questions spread over the slices, answered by the PeSFT checkpoint and the last evaluated
  PeRPO checkpoint side by side (images decoded with each checkpoint's VQ decoder when its
  folder is present, the judge's verdict);
- logs the page, the CSVs, the PNG and these files as artifacts of the stage's MLflow run.

Where it differs from the paper: Figure 4 of the paper shows image embeddings of one model;
here all evaluated checkpoints are pooled in one scatter, and the embedding is the mean
codebook vector of the generated images (no vision encoder is involved).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow

from omni_r1.config import Config
from omni_r1.data.storage import read_records
from omni_r1.eval.checkpoints import PESFT_STEP, TRACKS, CheckpointRef
from omni_r1.eval.comparisons import (
    compare_checkpoints,
    comparison_pairs,
    comparisons_json,
    comparisons_markdown,
    mlflow_comparison_metrics,
)
from omni_r1.eval.evaluate import read_predictions
from omni_r1.eval.projection import choose_projection, plot_projection, project
from omni_r1.eval.report import (
    read_omnibench_metrics,
    read_perpo_metrics,
    read_protocols,
    report_markdown,
    write_plots_data,
)
from omni_r1.eval.trajectories import Decoder, render_side_by_side
from omni_r1.tracking import stage_run


def generated_image_points(predictions_dir: Path | str) -> tuple[list[list[float]], list[bool]]:
    """Embeddings and verdicts of every prediction that generated at least one image."""
    embeddings, verdicts = [], []
    for path in sorted(Path(predictions_dir).glob("*.parquet")):
        for row in read_predictions(path):
            if row["image_embedding"]:
                embeddings.append(row["image_embedding"])
                verdicts.append(bool(row["verdict"]))
    return embeddings, verdicts


def predictions_by_checkpoint(
    refs: Sequence[CheckpointRef], predictions_dir: Path | str
) -> dict[CheckpointRef, list[dict[str, Any]]]:
    """The predictions rows of every checkpoint whose ``<name>.parquet`` exists."""
    found = {}
    for ref in refs:
        path = Path(predictions_dir) / f"{ref.name}.parquet"
        if path.is_file():
            found[ref] = read_predictions(path)
    return found


def checkpoint_decoder(cfg: Config, ref: CheckpointRef) -> Decoder | None:
    """codes → images with the checkpoint's own VQ decoder; None when its folder or decoder is absent."""
    from omni_r1.model.loading import load_omni
    from omni_r1.stages.evaluate import image_decoder

    folder = ref.checkpoint_dir(cfg.paths.checkpoints_dir)
    if folder is None or not folder.is_dir():
        return None
    return image_decoder(load_omni(cfg, model_dir=folder))


def side_by_side_pages(
    cfg: Config, predictions: Mapping[CheckpointRef, Sequence[dict[str, Any]]], out_dir: Path
) -> list[Path]:
    """Per track with a PeSFT and a PeRPO evaluation: PeSFT vs the last PeRPO step, same questions."""
    dataset = Path(cfg.data.prepared_dir) / cfg.eval.dataset
    input_pngs: dict[str, Sequence[bytes]] | None = None
    pages = []
    for track in TRACKS:
        pesft = CheckpointRef(track, PESFT_STEP)
        steps = sorted(ref.perpo_step for ref in predictions if ref.track == track and ref.kind == "perpo")
        if pesft not in predictions or not steps:
            continue
        if input_pngs is None:  # read once, only when a page is due
            input_pngs = {record.id: record.input_images for record in read_records(dataset)}
        final = CheckpointRef(track, str(steps[-1]))
        page = render_side_by_side(
            predictions[pesft], predictions[final], input_pngs,
            (checkpoint_decoder(cfg, pesft), checkpoint_decoder(cfg, final)), cfg.eval.gallery_examples,
            (f"{pesft.name} (PeSFT)", f"{final.name} (PeRPO step {steps[-1]})"),
            title=f"Omni-Bench: {track} PeSFT vs PeRPO step {steps[-1]}, same questions",
        )  # fmt: skip
        path = out_dir / f"side_by_side_{track}.html"
        path.write_text(page, encoding="utf-8")
        pages.append(path)
    return pages


def run(cfg: Config) -> dict[str, Any]:
    """Build the report; return the paths it wrote."""
    results = read_omnibench_metrics(cfg)
    if not results:
        raise FileNotFoundError(f"no omnibench_*.json under {cfg.paths.metrics_dir}; run `omni-r1 evaluate`")
    out_dir = Path(cfg.report.out_dir)
    with stage_run(cfg, "report"):
        plots = write_plots_data(results, read_perpo_metrics(cfg.paths.metrics_dir), cfg.report.plots_dir)
        method = choose_projection(cfg.report.projection)
        embeddings, verdicts = generated_image_points(cfg.eval.predictions_dir)
        projection = plot_projection(
            project(embeddings, method), verdicts, cfg.report.projection_path,
            title=f"Generated-image embeddings ({method.upper()}, {len(verdicts)} answers)",
        )  # fmt: skip
        page = out_dir / "omnibench.md"
        page.parent.mkdir(parents=True, exist_ok=True)
        predictions = predictions_by_checkpoint(sorted(results), cfg.eval.predictions_dir)
        compared = compare_checkpoints(comparison_pairs(list(predictions)), predictions, cfg.intervals, cfg.run.seed)
        paired = out_dir / "omnibench_paired.json"
        paired.write_text(json.dumps(comparisons_json(compared, cfg.intervals), indent=1) + "\n", encoding="utf-8")
        pages = side_by_side_pages(cfg, predictions, out_dir)
        relative_png = os.path.relpath(Path(projection).resolve(), page.parent.resolve())
        page.write_text(
            report_markdown(
                results, str(relative_png), [os.path.relpath(p, page.parent) for p in plots],
                comparisons_markdown(compared, cfg.intervals), [os.path.relpath(p, page.parent) for p in pages],
                read_protocols(cfg.paths.metrics_dir, results), cfg.eval.ablation_steps,
            ),
            encoding="utf-8",
        )  # fmt: skip
        mlflow.log_artifact(str(page), "report")
        for path in (paired, *pages):
            mlflow.log_artifact(str(path), "report")
        mlflow.log_metrics(mlflow_comparison_metrics(compared))
        mlflow.log_artifact(str(projection), "report")
        for path in plots:
            mlflow.log_artifact(str(path), "report/plots")
        mlflow.log_metrics({"report.checkpoints": float(len(results)), "report.projected": float(len(verdicts))})
    return {
        "markdown": page, "plots": plots, "projection": projection, "projection_method": method,
        "paired": paired, "side_by_side": pages,
    }  # fmt: skip
