"""Prefect flow ``pipeline``: the DVC graph of dvc.yaml, one Prefect task per DVC stage.

What it does, straight down:
1. Overrides (dotted params.yaml keys → values) are written into params.yaml with DVC's
   ``--set-param`` parser and validated against the config schema; the run then becomes a
   DVC experiment (``dvc exp save`` at the end) and params.yaml/dvc.lock are put back, so the
   workspace and the next scheduled run keep the committed parameters.
2. The stage list and order come from DVC's index (what ``dvc stage list``/``dvc dag`` show),
   filtered by track and checkpoint step (see ``flows.dvc_project``).
3. One MLflow parent run is opened (tags: Prefect flow-run id, DVC experiment name, git sha,
   data manifest hashes); its id goes to every stage process as ``OMNI_R1_PARENT_RUN_ID`` so
   ``omni_r1.tracking.stage_run`` nests the stage runs under it.
4. Each stage runs as ``dvc repro --single-item <stage>``: DVC skips what is up to date and
   restores from its run-cache, exactly as a ``dvc repro`` on the command line would.
5. Prefect artifacts: a table of Omni-Bench results per checkpoint (``metrics/omnibench_*.json``)
   and a markdown note linking the MLflow run and the champion model version.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows.dvc_project import apply_overrides, load_stages, run_dvc, select_stages
from omni_r1 import tracking
from omni_r1.config import TRACKS, Config, flatten, load_config, read_yaml

OMNIBENCH_GLOB = "omnibench_*.json"


Track = StrEnum("Track", {track: track for track in TRACKS})  # the UI form's track choices


class Selection(BaseModel):
    """Which part of the graph to run; stages of other tracks or steps are left out."""

    tracks: list[Track] = Field(
        default_factory=lambda: list(Track), description="Training tracks to run."
    )
    checkpoint_steps: list[int] | None = Field(
        default=None, description="PeRPO checkpoint steps to evaluate; empty = all in dvc.yaml."
    )


class Overrides(BaseModel):
    """Changes to params.yaml for this run; any change makes the run a DVC experiment."""

    params: dict[str, Any] = Field(
        default_factory=dict,
        description='Dotted params.yaml keys and values, e.g. {"perpo.learning_rate": 1e-6}.',
    )
    experiment_name: str = Field(
        default="", description="DVC experiment name; empty = derived from the flow-run name."
    )


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, with this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def absolute_tracking_uri(uri: str, project: Path) -> str:
    """Make a relative ``sqlite:///file`` URI absolute against the project root."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((project / uri.removeprefix(prefix)).resolve())
    return uri


def with_tracking_uri(cfg: Config, project: Path) -> Config:
    uri = absolute_tracking_uri(tracking.tracking_uri(cfg), project)
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"tracking_uri": uri})})


@contextmanager
def restored(paths: list[Path]):
    """Put the files back as they were (or remove them if they did not exist) on exit."""
    saved = {path: path.read_bytes() if path.exists() else None for path in paths}
    try:
        yield
    finally:
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)


@task(task_run_name="apply-overrides")
def apply_param_overrides(project: Path, params: dict[str, Any]) -> Config:
    """Write the overrides into params.yaml and validate the result (a bad key fails here)."""
    apply_overrides(project / "params.yaml", params)
    return load_config(project / "params.yaml")


@task(task_run_name="{stage}")
def run_stage(project: Path, stage: str, env: dict[str, str]) -> str:
    """One DVC stage: ``dvc repro --single-item <stage>``."""
    output = run_dvc(project, ["repro", "--single-item", stage], env)
    get_run_logger().info("%s\n%s", stage, output)
    return output


@task(task_run_name="save-experiment-{name}")
def save_experiment(project: Path, name: str, stages: list[str], env: dict[str, str]) -> str:
    """``dvc exp save`` of the workspace, caching the outputs of the stages that ran."""
    return run_dvc(project, ["exp", "save", "--force", "--name", name, *stages], env)


@task(task_run_name="restore-workspace")
def checkout_workspace(project: Path, env: dict[str, str]) -> None:
    """Bring outputs back in line with the committed dvc.lock (missing cache entries are fine)."""
    run_dvc(project, ["checkout", "--force", "--allow-missing"], env)


def omnibench_rows(metrics_dir: Path) -> list[dict[str, Any]]:
    """One row per ``<metrics_dir>/omnibench_<checkpoint>.json``: its scalar values, flattened."""
    rows = []
    for path in sorted(metrics_dir.glob(OMNIBENCH_GLOB)):
        values = {
            key: value
            for key, value in flatten(read_yaml(path))
            if isinstance(value, int | float | str | bool)
        }
        rows.append({"checkpoint": path.stem.removeprefix("omnibench_"), **values})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return [{column: row.get(column, "") for column in columns} for row in rows]


def publish_artifacts(
    cfg: Config, project: Path, experiment_id: str, run_id: str, dvc_experiment: str | None
) -> None:
    rows = omnibench_rows(project / cfg.paths.metrics_dir)
    note = (
        f"Omni-Bench accuracy per checkpoint ({len(rows)} checkpoint(s))."
        if rows
        else "No Omni-Bench results yet: metrics/omnibench_*.json appear once evaluate stages run."
    )
    create_table_artifact(table=rows, key="omnibench-results", description=note)

    uri = tracking.tracking_uri(cfg)
    link = tracking.run_url(uri, experiment_id, run_id)
    run_line = f"[{run_id}]({link})" if link else f"`{run_id}` (tracking URI `{uri}`)"
    champion = tracking.champion_version(cfg)
    model_line = (
        f"`{champion.name}` version {champion.version} (alias `{cfg.tracking.champion_alias}`, "
        f"run `{champion.run_id}`)"
        if champion
        else "none registered yet"
    )
    markdown = "\n".join(
        [
            "# omni-r1 pipeline run",
            f"- MLflow parent run: {run_line}",
            f"- MLflow experiment: `{cfg.tracking.experiment}` (id `{experiment_id}`)",
            f"- DVC experiment: `{dvc_experiment}`" if dvc_experiment else "- DVC experiment: none",
            f"- Champion model: {model_line}",
        ]
    )
    create_markdown_artifact(markdown=markdown, key="mlflow-run", description="MLflow run and model")


@flow(name="pipeline", log_prints=True)
def pipeline(
    selection: Selection = Selection(),  # noqa: B008 (Prefect renders the model as a form)
    overrides: Overrides = Overrides(),  # noqa: B008
    project_dir: str = ".",
) -> dict[str, Any]:
    """Run the DVC pipeline stage by stage under one MLflow parent run.

    Args:
        selection: tracks and checkpoint steps to run.
        overrides: params.yaml changes; non-empty makes the run a DVC experiment.
        project_dir: root of the DVC project (where dvc.yaml and params.yaml live).
    Returns:
        ``parent_run_id``, ``dvc_experiment``, ``stages`` (names run) and ``omnibench`` rows.
    """
    project = Path(project_dir).resolve()
    experiment = None
    if overrides.params:
        experiment = overrides.experiment_name or f"prefect-{flow_run.get_name() or 'run'}"
    touched = [project / "params.yaml", project / "dvc.lock"] if experiment else []
    with restored(touched):
        if experiment:
            cfg = apply_param_overrides(project, overrides.params)
        else:
            cfg = load_config(project / "params.yaml")
        cfg = with_tracking_uri(cfg, project)
        stages = select_stages(
            load_stages(project),
            [track.value for track in selection.tracks],
            selection.checkpoint_steps or None,
        )
        result = run_graph(cfg, project, [stage.name for stage in stages], experiment)
    if experiment:
        checkout_workspace(project, subprocess_env({}))
    return result


def run_graph(
    cfg: Config, project: Path, stages: list[str], experiment: str | None
) -> dict[str, Any]:
    """Open the parent run, run every stage in order under it, publish the artifacts."""
    flow_run_id = str(flow_run.get_id() or "")
    tags = {"omni_r1.prefect_flow_run_id": flow_run_id}
    if experiment:
        tags["omni_r1.dvc_experiment"] = experiment
    name = f"pipeline {flow_run.get_name() or ''}".strip()
    with tracking.pipeline_run(cfg, name, tags, metrics_dir=project / cfg.paths.metrics_dir) as parent:
        env = subprocess_env(
            {
                tracking.PARENT_RUN_ENV: parent.info.run_id,
                tracking.PREFECT_FLOW_RUN_ENV: flow_run_id,
                "MLFLOW_TRACKING_URI": cfg.tracking.tracking_uri,
                **({tracking.DVC_EXPERIMENT_ENV: experiment} if experiment else {}),
            }
        )
        for stage in stages:
            run_stage(project, stage, env)
        if experiment:
            save_experiment(project, experiment, stages, env)
    publish_artifacts(cfg, project, parent.info.experiment_id, parent.info.run_id, experiment)
    return {
        "parent_run_id": parent.info.run_id,
        "dvc_experiment": experiment,
        "stages": stages,
        "omnibench": omnibench_rows(project / cfg.paths.metrics_dir),
    }
