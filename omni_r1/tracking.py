"""MLflow conventions: one experiment, a parent run per pipeline run, a nested run per stage.

- Tracking URI: ``MLFLOW_TRACKING_URI`` from the environment, else ``tracking.tracking_uri``
  from params.yaml (embedded default ``sqlite:///mlflow.db``; a team points the environment
  variable at the MLflow server from ``infra/``).
- Parent run: ``pipeline_run`` opens it (the Prefect pipeline flow does, and exports its id
  as ``OMNI_R1_PARENT_RUN_ID``); ``stage_run`` nests each stage under it when that variable
  is set, otherwise a stage run is a top-level run (plain ``dvc repro``).
- Tags on every run: ``omni_r1.stage``, ``omni_r1.git_sha``, ``omni_r1.dvc_experiment``
  (``DVC_EXP_NAME``), ``omni_r1.prefect_flow_run_id`` (``PREFECT__FLOW_RUN_ID``) when present,
  and ``omni_r1.data.<name>`` = SHA-256 of each data manifest ``metrics/data_<name>.json``.
- The resolved config is logged when a run starts, as ``config/params.yaml`` and as
  flattened params; system metrics when ``tracking.log_system_metrics`` is on.
- Datasets: ``log_dataset_manifest`` logs a manifest through ``mlflow.data`` (run inputs).
- Checkpoints: ``log_checkpoint`` uploads to ``storage.s3_uri`` through ``omni_r1.storage``
  and records the URI as a tag, or logs the files as MLflow artifacts when storage is off.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from omni_r1 import storage as object_storage
from omni_r1.config import Config, StorageConfig, flatten

PARENT_RUN_ENV = "OMNI_R1_PARENT_RUN_ID"
DVC_EXPERIMENT_ENV = "DVC_EXP_NAME"
PREFECT_FLOW_RUN_ENV = "PREFECT__FLOW_RUN_ID"
MANIFEST_GLOB = "data_*.json"
DATA_TAG_PREFIX = "omni_r1.data."
CHECKPOINT_TAG_PREFIX = "omni_r1.checkpoint."
PARENT_RUN_TAG = "mlflow.parentRunId"


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_name(path: Path) -> str:
    """``metrics/data_zebra_cot.json`` → ``zebra_cot``."""
    return Path(path).stem.removeprefix("data_")


def data_manifest_tags(metrics_dir: Path | str) -> dict[str, str]:
    """``{"omni_r1.data.<name>": sha256}`` for every ``<metrics_dir>/data_<name>.json`` present."""
    return {
        f"{DATA_TAG_PREFIX}{manifest_name(path)}": file_sha256(path)
        for path in sorted(Path(metrics_dir).glob(MANIFEST_GLOB))
    }


def run_tags(
    stage: str, extra: Mapping[str, str] | None, metrics_dir: Path | str
) -> dict[str, str]:
    tags = {"omni_r1.stage": stage}
    sources = {
        "git_sha": git_sha(),
        "dvc_experiment": os.environ.get(DVC_EXPERIMENT_ENV),
        "prefect_flow_run_id": os.environ.get(PREFECT_FLOW_RUN_ENV),
    }
    tags.update({f"omni_r1.{key}": value for key, value in sources.items() if value})
    tags.update(data_manifest_tags(metrics_dir))
    tags.update(extra or {})
    return tags


def configure(cfg: Config) -> str:
    """Point MLflow at the tracking URI and the project's experiment; return the experiment id."""
    mlflow.set_tracking_uri(tracking_uri(cfg))
    return mlflow.set_experiment(cfg.tracking.experiment).experiment_id


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
        tags=run_tags(stage, tags, cfg.paths.metrics_dir),
        log_system_metrics=cfg.tracking.log_system_metrics,
    ) as run:
        log_config(cfg)
        yield run


@contextmanager
def pipeline_run(
    cfg: Config,
    run_name: str,
    tags: Mapping[str, str] | None,
    metrics_dir: Path | str,
) -> Iterator[mlflow.ActiveRun]:
    """Open the parent run of one pipeline run; stage runs nest under its id.

    The caller passes the id to the stage processes as ``OMNI_R1_PARENT_RUN_ID``. Data
    manifest tags are refreshed when the run ends, since the pipeline may rewrite them.
    """
    configure(cfg)
    with mlflow.start_run(
        run_name=run_name, tags=run_tags("pipeline", tags, metrics_dir)
    ) as run:
        log_config(cfg)
        try:
            yield run
        finally:
            mlflow.set_tags(data_manifest_tags(metrics_dir))


def log_config(cfg: Config) -> None:
    data = cfg.model_dump(mode="json")
    mlflow.log_text(yaml.safe_dump(data, sort_keys=False), "config/params.yaml")
    params: dict[str, Any] = {key: value for key, value in flatten(data)}
    items = list(params.items())
    for start in range(0, len(items), 100):  # MLflow caps params per batch
        mlflow.log_params(dict(items[start : start + 100]))


def log_dataset_manifest(manifest_path: Path | str, name: str, context: str = "training") -> str:
    """Log a data manifest as an MLflow dataset input of the active run.

    The dataset's digest is the manifest's SHA-256 (first 16 hex digits, MLflow's digest
    length); the manifest itself is logged as ``data/<file name>`` and its full hash as the
    tag ``omni_r1.data.<name>``.

    Args:
        manifest_path: JSON manifest written by the prepare stage.
        name: dataset name shown in MLflow (e.g. ``zebra_cot``).
        context: MLflow input context (``training``, ``evaluation``).
    Returns:
        The manifest's full SHA-256.
    """
    path = Path(manifest_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data manifest not found (dataset {name!r})")
    sha = file_sha256(path)
    dataset = MetaDataset(
        source=LocalArtifactDatasetSource(str(path.resolve())), name=name, digest=sha[:16]
    )
    mlflow.log_input(dataset, context=context)
    mlflow.log_artifact(str(path), artifact_path="data")
    mlflow.set_tag(f"{DATA_TAG_PREFIX}{name}", sha)
    return sha


def log_checkpoint(
    path: Path | str, artifact_path: str, storage: StorageConfig | None = None
) -> str:
    """Store a checkpoint (file or folder) for the active run and return where it lives.

    With ``storage.s3_uri`` set, the files go to
    ``<s3_uri>/<experiment id>/<run id>/<artifact_path>`` through ``omni_r1.storage``
    (verified, retried, atomic per file); the URI is recorded as the tag
    ``omni_r1.checkpoint.<artifact_path>`` and as the text artifact
    ``<artifact_path>/S3_URI``. Otherwise the files are logged as MLflow artifacts.

    Returns:
        The ``s3://`` URI, or the MLflow artifact URI of ``artifact_path``.
    """
    path = Path(path)
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(f"log_checkpoint({path}): no active MLflow run")
    if storage is None or not storage.s3_uri:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path)
        return mlflow.get_artifact_uri(artifact_path)
    client = object_storage.make_client(storage)
    root = object_storage.parse_s3_uri(storage.s3_uri).child(
        f"{run.info.experiment_id}/{run.info.run_id}/{artifact_path}"
    )
    if path.is_dir():
        object_storage.upload_dir(client, path, root, storage)
        uri = root.uri
    else:
        uri = object_storage.upload_file(client, path, root.child(path.name), storage)
    mlflow.set_tag(f"{CHECKPOINT_TAG_PREFIX}{artifact_path}", uri)
    mlflow.log_text(uri, f"{artifact_path}/S3_URI")
    return uri


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI address of a run, when the tracking URI is an HTTP server."""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def champion_version(cfg: Config) -> ModelVersion | None:
    """The registered model version behind the champion alias, or None if there is none."""
    client = MlflowClient(tracking_uri(cfg))
    try:
        return client.get_model_version_by_alias(
            cfg.tracking.registered_model, cfg.tracking.champion_alias
        )
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def champion_data_tags(cfg: Config) -> dict[str, str] | None:
    """Data manifest tags of the run that produced the champion (or of its parent run).

    Returns:
        ``{"omni_r1.data.<name>": sha256}``, empty if the run has none, None if there is no
        champion yet.
    """
    version = champion_version(cfg)
    if version is None:
        return None
    if not version.run_id:
        return {}
    client = MlflowClient(tracking_uri(cfg))
    tags = client.get_run(version.run_id).data.tags
    data = {key: value for key, value in tags.items() if key.startswith(DATA_TAG_PREFIX)}
    if not data and PARENT_RUN_TAG in tags:
        parent_tags = client.get_run(tags[PARENT_RUN_TAG]).data.tags
        data = {k: v for k, v in parent_tags.items() if k.startswith(DATA_TAG_PREFIX)}
    return data
