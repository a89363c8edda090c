"""MLflow conventions: one training experiment, a parent run per pipeline run, a nested run per stage.

- Tracking URI: ``MLFLOW_TRACKING_URI`` from the environment, else ``tracking.tracking_uri``
  from params.yaml (embedded default ``sqlite:///mlflow.db``; a team points the environment
  variable at the MLflow server from ``infra/``).
- Experiment: ``tracking.experiment``, tagged ``mlflow.experimentKind`` =
  ``custom_model_development`` when it has no kind yet or only one the UI inferred, so the
  MLflow 3 UI opens it on its training runs (not on the GenAI traces view).
- Parent run, one per pipeline run however it was started. A stage run nests under:
  1. ``OMNI_R1_PARENT_RUN_ID`` when set: the Prefect ``pipeline`` flow opens the parent with
     ``pipeline_run`` and hands its id to every stage process.
  2. Otherwise the parent of the pipeline-run key, looked up by the tag
     ``omni_r1.pipeline_run`` and created by the first stage that runs. The key is
     ``OMNI_R1_PIPELINE_RUN`` when set (any string: group several invocations by hand),
     else ``dvc-<pid>-<start time>`` of the nearest ancestor process that runs DVC, i.e. the
     one ``dvc repro`` / ``dvc exp run`` (``make run`` calls ``dvc repro``) that launched all
     the stages of this pipeline run, followed by the DVC experiment name when there is one. The parent is RUNNING while a stage runs and ends with
     the last stage's status and end time.
  3. Neither (a stage command typed by hand, outside DVC): a top-level run.
- Tags on every run (parent and stages): ``omni_r1.stage``, ``omni_r1.git_sha``,
  ``omni_r1.dvc_experiment`` (``DVC_EXP_NAME``, set by ``dvc exp run``),
  ``omni_r1.prefect_flow_run_id`` (``PREFECT__FLOW_RUN_ID``) when present, and
  ``omni_r1.data.<name>`` = SHA-256 of each data manifest ``metrics/data_<name>.json``.
- The resolved config is logged when a run starts, as ``config/params.yaml`` and as
  flattened params; system metrics when ``tracking.log_system_metrics`` is on.
- Datasets: ``log_dataset_manifest`` logs a manifest through ``mlflow.data`` (run inputs);
  every stage that reads a prepared dataset logs it.
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
PIPELINE_RUN_ENV = "OMNI_R1_PIPELINE_RUN"
PIPELINE_RUN_TAG = "omni_r1.pipeline_run"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"  # MLflow 3 UI: the training-runs view
INFERRED_KIND_SUFFIXES = ("_inferred", "no_inferred_type")  # kinds the UI guessed, not chosen


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
    """Point MLflow at the tracking URI and the project's training experiment; return its id."""
    mlflow.set_tracking_uri(tracking_uri(cfg))
    experiment = mlflow.set_experiment(cfg.tracking.experiment)
    kind = experiment.tags.get(EXPERIMENT_KIND_TAG, "")
    if not kind or kind.endswith(INFERRED_KIND_SUFFIXES):  # a kind someone chose is kept
        MlflowClient().set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND
        )
    return experiment.experiment_id


def is_dvc_command(cmdline: list[str]) -> bool:
    """``dvc repro``, ``/venv/bin/dvc exp run``, ``python -m dvc repro``, ``python .../dvc ...``."""
    program, *args = cmdline or [""]
    if Path(program).name == "dvc":
        return True
    if not Path(program).name.startswith("python"):
        return False
    return args[:2] == ["-m", "dvc"] or (bool(args) and Path(args[0]).name == "dvc")


def dvc_invocation_key() -> str | None:
    """``dvc-<pid>-<start time>`` of the nearest ancestor process running DVC, else None."""
    import psutil

    try:
        process = psutil.Process().parent()
        while process is not None:
            if is_dvc_command(process.cmdline()):
                return f"dvc-{process.pid}-{process.create_time():.3f}"
            process = process.parent()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return None


def pipeline_run_key() -> str | None:
    """What groups this stage with the other stages of its pipeline run (see the module doc).

    The DVC experiment name, when set, is part of the key: experiments that one DVC process
    runs one after the other still get a parent each.
    """
    if os.environ.get(PIPELINE_RUN_ENV):
        return os.environ[PIPELINE_RUN_ENV]
    invocation = dvc_invocation_key()
    experiment = os.environ.get(DVC_EXPERIMENT_ENV)
    return f"{invocation}-{experiment}" if invocation and experiment else invocation


def pipeline_parent(cfg: Config, experiment_id: str, key: str) -> str:
    """The id of the parent run of pipeline-run ``key``, created on first use."""
    client = MlflowClient()
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{key}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    name = " ".join(["pipeline", os.environ.get(DVC_EXPERIMENT_ENV) or "repro", key])
    tags = run_tags("pipeline", {PIPELINE_RUN_TAG: key}, cfg.paths.metrics_dir)
    with mlflow.start_run(run_name=name, tags=tags) as parent:
        log_config(cfg)
    return parent.info.run_id


@contextmanager
def stage_run(
    cfg: Config, stage: str, run_name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run of one stage, nested under its pipeline run's parent if any.

    A parent found through the pipeline-run key is set RUNNING for the stage's duration and
    ends with the stage's status, so after the last stage it ends with the pipeline run.
    """
    experiment_id = configure(cfg)
    parent = os.environ.get(PARENT_RUN_ENV)
    key = None if parent else pipeline_run_key()
    if key:
        parent = pipeline_parent(cfg, experiment_id, key)
        MlflowClient().update_run(parent, status="RUNNING")
    status = "FAILED"
    try:
        with mlflow.start_run(
            run_name=run_name or stage,
            parent_run_id=parent or None,
            tags=run_tags(stage, tags, cfg.paths.metrics_dir),
            log_system_metrics=cfg.tracking.log_system_metrics,
        ) as run:
            log_config(cfg)
            yield run
        status = "FINISHED"
    finally:
        if key:
            client = MlflowClient()
            for tag, value in data_manifest_tags(cfg.paths.metrics_dir).items():
                client.set_tag(parent, tag, value)
            client.set_terminated(parent, status=status)


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
    length); the manifest itself is logged as ``data/<name>/<file name>`` and its full hash
    as the tag ``omni_r1.data.<name>``.

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
    mlflow.log_artifact(str(path), artifact_path=f"data/{name}")
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
