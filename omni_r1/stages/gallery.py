"""Stage ``gallery``: example trajectories rendered by the action executor, as one HTML page.

What it does: builds ``gallery.examples`` small trajectories (seeded by ``run.seed``) from
the demonstration scenes of :mod:`omni_r1.data.action_scenes`, so that all five atomic
actions of the paper's unified trajectory (Appendix A) appear: BBOX and ZOOM, MARK, LINE,
and PRED on a maze of the synthetic grid task.

Every step image is v_t = Exec(a_t, v_{t-1}) from :class:`omni_r1.executor.Executor`.
Writes ``<gallery.out_dir>/index.html`` (self-contained) and ``gallery.metrics_path``
(counts of trajectories, steps and images per action kind), and logs both to the MLflow
run of the stage.

Where it differs from the paper: these are demonstration scenes for checking the
executor and the trajectory format by eye, not training data; images are at the
configured ``executor.resolution`` (paper: 512).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import mlflow

from omni_r1.config import Config
from omni_r1.data.action_scenes import build_examples
from omni_r1.executor import Executor
from omni_r1.gallery import gallery_entry, render_gallery_html
from omni_r1.tracking import stage_run
from omni_r1.trajectory import Trajectory

PAGE_TITLE = "Omni-R1 executor gallery"


def run(cfg: Config) -> dict[str, Any]:
    """Build, render, write and log the gallery.

    Returns:
        ``{"html": path, "metrics_path": path, "metrics": counts, "run_id": MLflow run id}``.
    """
    out_dir = Path(cfg.gallery.out_dir)
    metrics_path = Path(cfg.gallery.metrics_path)
    executor = Executor(cfg.executor)
    decimals = cfg.trajectory.coordinate_decimals

    with stage_run(cfg, "gallery") as active:
        examples = build_examples(
            cfg.gallery.examples, cfg.run.seed, cfg.executor, decimals, cfg.data.synthetic
        )
        entries = []
        for name, traj, state in examples:
            step_images = executor.execute_trajectory(traj, None, state)
            entries.append(
                gallery_entry(
                    traj.question, traj.steps, step_images, traj.final_answer,
                    input_images=traj.input_images, choices=traj.choices, name=name,
                )
            )  # fmt: skip
        metrics = gallery_counts([traj for _, traj, _ in examples])

        out_dir.mkdir(parents=True, exist_ok=True)
        html_path = out_dir / "index.html"
        html_path.write_text(render_gallery_html(entries, PAGE_TITLE), encoding="utf-8")
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")

        mlflow.log_artifact(str(html_path), artifact_path="gallery")
        mlflow.log_artifact(str(metrics_path), artifact_path="metrics")
        mlflow.log_metrics(_flat_metrics(metrics))
    return {
        "html": str(html_path),
        "metrics_path": str(metrics_path),
        "metrics": metrics,
        "run_id": active.info.run_id,
    }


def gallery_counts(trajectories: list[Trajectory]) -> dict[str, Any]:
    """Trajectories, steps, input and step images, and step images per action kind."""
    per_action = Counter({kind: 0 for kind in ("ZOOM", "BBOX", "MARK", "LINE", "PRED")})
    per_action.update(
        step.action.kind for traj in trajectories for step in traj.steps if step.action is not None
    )
    return {
        "trajectories": len(trajectories),
        "steps": sum(len(traj.steps) for traj in trajectories),
        "input_images": sum(len(traj.input_images) for traj in trajectories),
        "step_images": sum(step.has_image for traj in trajectories for step in traj.steps),
        "images_per_action": dict(per_action),
    }


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {key: float(value) for key, value in metrics.items() if isinstance(value, int)}
    flat.update({f"images_{k.lower()}": float(v) for k, v in metrics["images_per_action"].items()})
    return flat
