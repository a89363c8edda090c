"""Prefect flow ``retrain``: rerun the pipeline when the data changed; ``promote`` decides.

What it does, straight down:
1. ``dvc update`` every imported data file (``dvc import``/``dvc import-url``), if any.
2. Rebuild the data manifests: the stages that write ``metrics/data_*.json`` and their
   upstream stages, through ``dvc repro --single-item`` like the pipeline does.
3. Compare the manifests' SHA-256 with the ``omni_r1.data.*`` tags of the run behind the
   registry's champion alias. Same data and no ``force`` → stop: nothing to retrain.
4. Otherwise run the ``pipeline`` flow (as a subflow). Its ``promote`` stage, once present
   in dvc.yaml, moves the champion alias only when Omni-Bench improves; this flow never
   promotes by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from flows.dvc_project import import_stages, load_stages, manifest_pattern, producers_of, run_dvc
from flows.pipeline import (
    Overrides,
    Selection,
    pipeline,
    run_stage,
    subprocess_env,
    with_tracking_uri,
)
from omni_r1 import tracking
from omni_r1.config import load_config


@task(task_run_name="dvc-update-imports")
def update_imports(project: Path, env: dict[str, str]) -> list[str]:
    """``dvc update`` each imported data file; returns the ``.dvc`` files updated."""
    imports = import_stages(project)
    for dvc_file in imports:
        run_dvc(project, ["update", dvc_file], env)
    return imports


@task(task_run_name="compare-data-with-champion")
def data_changes(current: dict[str, str], champion: dict[str, str] | None) -> list[str]:
    """Names of the data manifests that differ from the champion's (all when no champion)."""
    if champion is None:
        return sorted(current) or ["<no champion yet>"]
    names = set(current) | set(champion)
    return sorted(name for name in names if current.get(name) != champion.get(name))


@flow(name="retrain", log_prints=True)
def retrain(
    selection: Selection = Selection(),  # noqa: B008 (Prefect renders the model as a form)
    project_dir: str = ".",
    force: bool = False,
) -> dict[str, Any]:
    """Update data, compare it with the champion's, and rerun the pipeline if it changed.

    Args:
        selection: tracks and checkpoint steps for the pipeline run.
        project_dir: root of the DVC project.
        force: run the pipeline even when the data is unchanged.
    Returns:
        ``updated_imports``, ``changed_data`` (manifest tag names), ``retrained`` and, when it
        ran, ``pipeline`` (the pipeline flow's result).
    """
    logger = get_run_logger()
    project = Path(project_dir).resolve()
    cfg = with_tracking_uri(load_config(project / "params.yaml"), project)
    env = subprocess_env({"MLFLOW_TRACKING_URI": cfg.tracking.tracking_uri})

    updated = update_imports(project, env)
    for stage in producers_of(load_stages(project), manifest_pattern(cfg.paths.metrics_dir)):
        run_stage(project, stage.name, env)
    current = tracking.data_manifest_tags(project / cfg.paths.metrics_dir)
    changed = data_changes(current, tracking.champion_data_tags(cfg))

    result: dict[str, Any] = {"updated_imports": updated, "changed_data": changed}
    if not changed and not force:
        logger.info("data unchanged since the champion; nothing to retrain")
        return {**result, "retrained": False}
    logger.info("retraining: %s", ", ".join(changed) or "forced")
    outcome = pipeline(selection=selection, overrides=Overrides(), project_dir=str(project))
    return {**result, "retrained": True, "pipeline": outcome}
