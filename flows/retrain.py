"""Prefect flow ``retrain``: notice a new revision of a data source, retrain on it as a DVC
experiment; ``promote`` decides what the new model becomes.

What it does, straight down:
1. ``dvc update`` every imported data file (``dvc import``/``dvc import-url``), if any.
2. For every source in ``data.sources``, read what it holds now
   (:mod:`omni_r1.data.revisions`: the content hash of its ``data.local_paths`` copy, or
   the hub dataset's commit sha) and compare with its pin ``data.revisions.<source>``.
3. No pin moved (and no ``force``) → stop: nothing to retrain. A set of revisions already
   trained by an earlier retrain run (an MLflow pipeline run tagged
   ``omni_r1.source_revisions`` with the same value) → stop as well: that experiment waits
   to be merged.
4. Otherwise run the ``pipeline`` flow with the moved pins as overrides: the run is a DVC
   experiment (``retrain-<hash>``), params.yaml keeps the committed pins. Its ``promote``
   stage registers the new version under the challenger alias; the champion moves only
   when the new pins are committed and a main-line run wins (promotion rule of
   :mod:`omni_r1.eval.promote`). This flow never promotes by itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task

from flows.dvc_project import import_stages, run_dvc
from flows.pipeline import Overrides, Selection, pipeline, subprocess_env, with_tracking_uri
from omni_r1 import tracking
from omni_r1.config import Config, load_config
from omni_r1.data.revisions import changed_revisions, current_revision

REVISIONS_TAG = "omni_r1.source_revisions"


@task(task_run_name="dvc-update-imports")
def update_imports(project: Path, env: dict[str, str]) -> list[str]:
    """``dvc update`` each imported data file; returns the ``.dvc`` files updated."""
    imports = import_stages(project)
    for dvc_file in imports:
        run_dvc(project, ["update", dvc_file], env)
    return imports


@task(task_run_name="read-source-revisions")
def source_revisions(cfg: Config, project: Path) -> dict[str, str]:
    """What every configured source holds now (local copy hash or hub commit sha)."""
    from omni_r1.data.sources import get_source

    return {
        name: current_revision(name, get_source(name).hub_id, cfg.data.local_paths.get(name), project)
        for name in cfg.data.sources
    }


def revisions_key(revisions: dict[str, str]) -> str:
    return json.dumps(revisions, sort_keys=True)


def trained_before(cfg: Config, revisions: dict[str, str]) -> str | None:
    """The id of an earlier retrain pipeline run on exactly these revisions, if any."""
    client = MlflowClient(tracking.tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{REVISIONS_TAG}` = '{revisions_key(revisions)}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


@flow(name="retrain", log_prints=True)
def retrain(
    selection: Selection = Selection(),  # noqa: B008 (Prefect renders the model as a form)
    project_dir: str = ".",
    force: bool = False,
) -> dict[str, Any]:
    """Compare source revisions with their pins; retrain as a DVC experiment when one moved.

    Args:
        selection: tracks and checkpoint steps for the pipeline run.
        project_dir: root of the DVC project.
        force: run the pipeline even when no pin moved.
    Returns:
        ``updated_imports``, ``changed`` (source → new revision), ``retrained``, ``reason`` and,
        when it ran, ``pipeline`` (the pipeline flow's result).
    """
    logger = get_run_logger()
    project = Path(project_dir).resolve()
    cfg = with_tracking_uri(load_config(project / "params.yaml"), project)
    env = subprocess_env({"MLFLOW_TRACKING_URI": cfg.tracking.tracking_uri})

    updated = update_imports(project, env)
    current = source_revisions(cfg, project)
    changed = changed_revisions(cfg.data.revisions, current)
    result: dict[str, Any] = {"updated_imports": updated, "changed": changed}
    if not changed and not force:
        logger.info("every source is at its pinned revision; nothing to retrain")
        return {**result, "retrained": False, "reason": "pins current"}
    earlier = trained_before(cfg, current)
    if earlier and not force:
        logger.info("revisions %s were already trained in MLflow run %s", changed, earlier)
        return {**result, "retrained": False, "reason": f"already trained in run {earlier}"}

    logger.info("new source revisions: %s", changed)
    name = "retrain-" + hashlib.sha256(revisions_key(current).encode()).hexdigest()[:10]
    overrides = {f"++data.revisions.{source}": revision for source, revision in changed.items()}
    outcome = pipeline(
        selection=selection,
        overrides=Overrides(params=overrides, experiment_name=name),
        project_dir=str(project),
    )
    MlflowClient(cfg.tracking.tracking_uri).set_tag(outcome["parent_run_id"], REVISIONS_TAG, revisions_key(current))
    return {**result, "retrained": True, "reason": "new revisions", "pipeline": outcome}
