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
- logs the page, the CSVs and the PNG as artifacts of the stage's MLflow run.

Where it differs from the paper: Figure 4 of the paper shows image embeddings of one model;
here all evaluated checkpoints are pooled in one scatter, and the embedding is the mean
codebook vector of the generated images (no vision encoder is involved).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow

from omni_r1.config import Config
from omni_r1.eval.evaluate import read_predictions
from omni_r1.eval.projection import choose_projection, plot_projection, project
from omni_r1.eval.report import (
    read_omnibench_metrics,
    read_perpo_metrics,
    read_protocols,
    report_markdown,
    write_plots_data,
)
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


def run(cfg: Config) -> dict[str, Any]:
    """Build the report; return the paths it wrote."""
    results = read_omnibench_metrics(cfg.paths.metrics_dir)
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
        relative_png = os.path.relpath(Path(projection).resolve(), page.parent.resolve())
        page.write_text(
            report_markdown(
                results, str(relative_png), [os.path.relpath(p, page.parent) for p in plots],
                read_protocols(cfg.paths.metrics_dir),
            ), encoding="utf-8"
        )
        mlflow.log_artifact(str(page), "report")
        mlflow.log_artifact(str(projection), "report")
        for path in plots:
            mlflow.log_artifact(str(path), "report/plots")
        mlflow.log_metrics({"report.checkpoints": float(len(results)), "report.projected": float(len(verdicts))})
    return {"markdown": page, "plots": plots, "projection": projection, "projection_method": method}
