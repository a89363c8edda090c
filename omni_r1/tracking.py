"""MLflow conventions: one experiment, a parent run per pipeline run, a nested run per stage.

- Tracking URI: ``MLFLOW_TRACKING_URI`` from the environment, else ``tracking.tracking_uri``
  from params.yaml (embedded default ``sqlite:///mlflow.db``).
- Parent run: when ``OMNI_R1_PARENT_RUN_ID`` is set (the Prefect pipeline flow sets it),
  each stage run is nested under it; otherwise a stage run is a top-level run.
- Tags on every stage run: ``omni_r1.stage``, git sha, DVC experiment name
  (``DVC_EXP_NAME``) and Prefect flow-run id (``PREFECT__FLOW_RUN_ID``) when present.
- The resolved config is logged as ``config/params.yaml`` and as flattened params.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
import yaml

from omni_r1.config import Config, flatten

PARENT_RUN_ENV = "OMNI_R1_PARENT_RUN_ID"


def tracking_uri(cfg: Config) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.tracking_uri


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_tags(stage: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tags = {"omni_r1.stage": stage}
    sources = {
        "git_sha": git_sha(),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
        "prefect_flow_run_id": os.environ.get("PREFECT__FLOW_RUN_ID"),
    }
    tags.update({f"omni_r1.{key}": value for key, value in sources.items() if value})
    tags.update(extra or {})
    return tags


def configure(cfg: Config) -> None:
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_experiment(cfg.tracking.experiment)


@contextmanager
def stage_run(
    cfg: Config, stage: str, run_name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run of one stage, nested under the pipeline's parent run if any."""
    configure(cfg)
    parent = os.environ.get(PARENT_RUN_ENV)
    with mlflow.start_run(
        run_name=run_name or stage,
        parent_run_id=parent or None,
        tags=run_tags(stage, tags),
        log_system_metrics=cfg.tracking.log_system_metrics,
    ) as run:
        log_config(cfg)
        yield run


def log_config(cfg: Config) -> None:
    data = cfg.model_dump(mode="json")
    mlflow.log_text(yaml.safe_dump(data, sort_keys=False), "config/params.yaml")
    params: dict[str, Any] = {key: value for key, value in flatten(data)}
    items = list(params.items())
    for start in range(0, len(items), 100):  # MLflow caps params per batch
        mlflow.log_params(dict(items[start : start + 100]))
