"""Launch PeRPO on verl: export, resolved config, RayJob manifest, ``ray job submit``, merge-back.

What :func:`prepare_job` writes under ``perpo.verl.out_dir/<track>/<run>/`` (``<run>``: ``perpo`` or ``perpo_<variant>``):

- ``train.parquet``: the prepared ``perpo_train`` prompts as verl's RLHF rows
  (:mod:`omni_r1.verl.data`; verl also needs validation files, and reads the same file, as
  ``trainer.test_freq: -1`` never validates);
- ``agent_loops.yaml``: the agent loop verl instantiates (:mod:`omni_r1.verl.agent_loop`);
- ``verl_config.yaml``: verl's own ``ppo_trainer`` config composed with the overrides of
  :func:`omni_r1.verl.settings.verl_overrides` (composition fails on any key verl lacks).

Paths inside the job are ``perpo.verl.cluster_root`` + the path relative to this checkout
(the repository's place inside the cluster image, with data and checkpoints mounted there),
or this checkout's absolute paths when ``cluster_root`` is empty (a local Ray cluster).

MLflow: the job logs into the stage's run (``MLFLOW_RUN_ID`` in the Ray runtime env, which
verl's mlflow logger resumes; ``trainer.logger`` includes mlflow), under the pipeline's
parent run. After the job, :func:`log_local_metric_names` copies verl's metric histories
under the local engine's names, and :func:`merge_checkpoint` turns verl's FSDP checkpoints
at ``perpo.save_steps`` into ``checkpoints/<track>/perpo/step_<k>/`` (verl's model merger,
plus the starting checkpoint's tokenizer and VQ decoder), so evaluation cannot tell the
engines apart.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from omni_r1.config import Config
from omni_r1.data.codes import read_codes
from omni_r1.data.storage import read_records
from omni_r1.verl.agent_loop import agent_loop_entries
from omni_r1.verl.data import rlhf_rows, write_rlhf_parquet
from omni_r1.verl.settings import VerlPaths, hydra_args, verl_overrides

TRAINER_MODULE = "verl.trainer.main_ppo"
MANIFEST_TEMPLATE = Path(__file__).resolve().parents[2] / "infra/k8s/perpo-rayjob.template.yaml"
RUN_ID_ENV = "MLFLOW_RUN_ID"  # verl's mlflow logger resumes this run
# What a generated manifest must never contain: template markers and unset hydra values.
PLACEHOLDER = re.compile(r"<[A-Za-z_][\w.-]*>|\?\?\?|placeholder|TODO|CHANGEME", re.IGNORECASE)
# Python modules a manifest names: `-m module`, `external_lib=module`, `pkg://module`.
NAMED_MODULE = re.compile(r"(?:-m |external_lib=|pkg://)'?([A-Za-z_][\w.]*)")
# verl's metric → the local engine's name (omni_r1.training.perpo / omni_r1.training.grpo).
LOCAL_METRIC_NAMES = {
    "critic/score/mean": "reward/mean",
    "actor/entropy": "actor/entropy",
    "actor/kl_loss": "actor/kl_loss",
    "actor/pg_clipfrac": "actor/pg_clipfrac",
    "actor/pg_clipfrac_lower": "actor/pg_clipfrac_lower",
    "actor/ppo_kl": "actor/ppo_kl",
    "actor/pg_loss": "actor/pg_loss",
    "actor/grad_norm": "actor/grad_norm",
    "actor/lr": "actor/lr",
    "response_length/mean": "response/length",
    "perf/time_per_step": "perf/step_seconds",
}


@dataclass(frozen=True)
class VerlJob:
    """Everything one verl run needs, written on this machine."""

    track: str
    folder: Path  # perpo.verl.out_dir/<track>
    parquet: Path
    agent_loops: Path
    config_file: Path  # verl's composed config
    overrides: dict[str, Any]
    paths: VerlPaths  # as the cluster sees them


def cluster_path(cfg: Config, local: Path) -> str:
    """``local`` as the job sees it: under ``perpo.verl.cluster_root``, or absolute here."""
    root = cfg.perpo.verl.cluster_root
    if not root:
        return str(local.resolve())
    relative = local.resolve().relative_to(Path.cwd().resolve()) if local.is_absolute() else local
    return f"{root.rstrip('/')}/{relative.as_posix()}"


def export_prompts(cfg: Config, parquet: Path) -> Path:
    """The prepared PeRPO prompts and their input images' codes → ``parquet``."""
    records = list(read_records(Path(cfg.data.prepared_dir) / cfg.perpo.dataset))
    codes = read_codes(Path(cfg.data.encoded_dir) / cfg.perpo.dataset)
    return write_rlhf_parquet(rlhf_rows(records, codes, cfg.perpo.dataset), parquet)


def compose_verl_config(overrides: dict[str, Any]) -> Any:
    """verl's packaged ``ppo_trainer`` config with the overrides (hydra compose)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=hydra_args(overrides))


def prepare_job(cfg: Config, track: str, start_dir: Path, run: str = "perpo") -> VerlJob:
    """Write the parquet, the agent-loop YAML and the composed verl config of one run.

    ``run`` names the run's folder under ``perpo.verl.out_dir/<track>/`` (the name of its
    checkpoint root: ``perpo``, or ``perpo_<variant>``).
    """
    folder = Path(cfg.perpo.verl.out_dir) / track / run
    folder.mkdir(parents=True, exist_ok=True)
    parquet = export_prompts(cfg, folder / "train.parquet")
    agent_loops = folder / "agent_loops.yaml"
    agent_loops.write_text(yaml.safe_dump(agent_loop_entries(), sort_keys=False), encoding="utf-8")
    paths = VerlPaths(
        model_dir=cluster_path(cfg, start_dir),
        train_files=cluster_path(cfg, parquet),
        val_files=cluster_path(cfg, parquet),
        checkpoint_dir=cluster_path(cfg, folder / "checkpoints"),
        agent_loop_config=cluster_path(cfg, agent_loops),
    )
    overrides = verl_overrides(cfg, track, paths)
    from omegaconf import OmegaConf

    config_file = folder / "verl_config.yaml"
    config_file.write_text(OmegaConf.to_yaml(compose_verl_config(overrides)), encoding="utf-8")
    return VerlJob(track, folder, parquet, agent_loops, config_file, overrides, paths)


def entrypoint(job: VerlJob) -> list[str]:
    """The job's command: verl's PPO entry point with the run's overrides."""
    return ["python3", "-m", TRAINER_MODULE, *hydra_args(job.overrides)]


def runtime_env(tracking_uri: str, run_id: str | None, parent_run_id: str | None) -> dict[str, Any]:
    """Ray runtime env: where and into which MLflow run the job logs."""
    env_vars = {"MLFLOW_TRACKING_URI": tracking_uri}
    if run_id:
        env_vars[RUN_ID_ENV] = run_id
    if parent_run_id:
        from omni_r1.tracking import PARENT_RUN_ENV

        env_vars[PARENT_RUN_ENV] = parent_run_id
    return {"env_vars": env_vars}


def submit_command(cfg: Config, job: VerlJob, env: dict[str, Any]) -> list[str]:
    """``ray job submit`` to ``perpo.verl.ray_address``, waiting for the job to finish."""
    return [
        "ray", "job", "submit",
        "--address", cfg.perpo.verl.ray_address,
        "--submission-id", f"omni-r1-perpo-{job.track}-{job.config_file.stat().st_mtime_ns}",
        "--runtime-env-json", json.dumps(env, sort_keys=True),
        "--", *entrypoint(job),
    ]  # fmt: skip


def rayjob_manifest(cfg: Config, job: VerlJob, env: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The KubeRay ``RayJob``: the template's cluster shape, the run's entrypoint, image and GPUs."""
    manifest = json.loads(json.dumps(template))  # a deep copy
    manifest["metadata"]["name"] = f"omni-r1-perpo-{job.track.replace('_', '-')}"
    spec = manifest["spec"]
    spec["entrypoint"] = shlex.join(entrypoint(job))
    spec["runtimeEnvYAML"] = yaml.safe_dump(env, sort_keys=True)
    cluster = spec["rayClusterSpec"]
    for container in cluster["headGroupSpec"]["template"]["spec"]["containers"]:
        container["image"] = cfg.perpo.verl.image
    for group in cluster["workerGroupSpecs"]:
        group["replicas"] = group["minReplicas"] = group["maxReplicas"] = cfg.perpo.verl.nnodes
        for container in group["template"]["spec"]["containers"]:
            container["image"] = cfg.perpo.verl.image
            container["resources"]["limits"]["nvidia.com/gpu"] = str(cfg.perpo.verl.n_gpus_per_node)
    return manifest


def write_manifest(manifest: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


def verl_checkpoint(job_checkpoints: Path, step: int) -> Path:
    """verl's actor checkpoint folder of one step."""
    return job_checkpoints / f"global_step_{step}" / "actor"


def merge_checkpoint(actor_dir: Path, target_dir: Path, start_dir: Path) -> Path:
    """verl FSDP actor checkpoint → a ``load_omni`` folder (HF weights + the start's other files).

    verl's model merger writes the weights and config; the tokenizer, VQ decoder and other
    non-weight files come from the starting checkpoint, as the local engine's checkpoints do.
    """
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    target_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(start_dir.iterdir()):
        if path.is_file() and not path.name.startswith("model"):  # model*.safetensors: the weights
            shutil.copy2(path, target_dir / path.name)
    merger_config = ModelMergerConfig(
        operation="merge", backend="fsdp", local_dir=str(actor_dir), target_dir=str(target_dir),
        hf_model_config_path=str(actor_dir / "huggingface"),
    )  # fmt: skip
    merger = FSDPModelMerger(merger_config)
    merger.merge_and_save()
    merger.cleanup()
    return target_dir


def log_local_metric_names(client: Any, run_id: str) -> int:
    """Copy verl's metric histories in ``run_id`` under the local engine's names; returns the count."""
    from mlflow.entities import Metric

    copied = []
    for verl_name, local_name in LOCAL_METRIC_NAMES.items():
        if verl_name == local_name:
            continue
        copied += [
            Metric(local_name, point.value, point.timestamp, point.step)
            for point in client.get_metric_history(run_id, verl_name)
        ]
    for start in range(0, len(copied), 1000):
        client.log_batch(run_id, metrics=copied[start : start + 1000])
    return len(copied)


def local_history(client: Any, run_id: str) -> list[dict[str, float]]:
    """Per-step metrics of a verl run under the local engine's names, step 1 first."""
    steps: dict[int, dict[str, float]] = {}
    for local_name in sorted(set(LOCAL_METRIC_NAMES.values())):
        for point in client.get_metric_history(run_id, local_name):
            steps.setdefault(point.step, {})[local_name] = point.value
    return [steps[step] for step in sorted(steps)]


def submit(command: list[str]) -> None:
    """Run ``ray job submit`` (it waits for the job and fails when the job fails)."""
    subprocess.run(command, check=True)


def run_verl(
    cfg: Config,
    track: str,
    start_dir: Path,
    out_root: Path,
    metrics_path: Path,
    dry_run: bool,
    manifest_path: Path | None,
) -> dict[str, Any]:
    """The ``perpo`` stage with ``engine: verl``: prepare, print the command, submit, merge back.

    With ``dry_run`` nothing is submitted: the parquet, the composed config (and the manifest
    when asked) are written, the ``ray job submit`` command is printed, and the written paths
    are returned. Otherwise the job runs to its end, its checkpoints at ``perpo.save_steps``
    are merged into ``out_root/step_<k>``, and the summary of the local engine
    (``metrics_path``, from verl's metrics under the local names) is written and returned.
    """
    import mlflow

    from omni_r1.tracking import PARENT_RUN_ENV, stage_run, tracking_uri
    from omni_r1.training.perpo_report import summary_metrics

    job = prepare_job(cfg, track, start_dir, run=out_root.name)
    parent = os.environ.get(PARENT_RUN_ENV)
    outputs: dict[str, Any] = {"parquet": str(job.parquet), "verl_config": str(job.config_file)}
    if dry_run:
        env = runtime_env(tracking_uri(cfg), None, parent)
        _write_outputs(cfg, job, env, manifest_path, outputs)
        return outputs
    tags = {"omni_r1.track": track, "omni_r1.engine": "verl"}
    with stage_run(cfg, "perpo", run_name=f"{out_root.name}-{track}-verl", tags=tags) as run:
        mlflow.log_artifact(str(job.config_file), "verl")
        env = runtime_env(tracking_uri(cfg), run.info.run_id, parent)
        command = _write_outputs(cfg, job, env, manifest_path, outputs)
        submit(command)
        for step in cfg.perpo.save_steps:
            merge_checkpoint(verl_checkpoint(job.folder / "checkpoints", step), out_root / f"step_{step}", start_dir)
        client = mlflow.MlflowClient()
        log_local_metric_names(client, run.info.run_id)
        summary = summary_metrics(local_history(client, run.info.run_id), None, cfg.perpo.reward_window)
        mlflow.log_dict(summary, "perpo/summary.json")
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _write_outputs(
    cfg: Config, job: VerlJob, env: dict[str, Any], manifest_path: Path | None, outputs: dict[str, Any]
) -> list[str]:
    """The submit command (printed, and recorded in ``outputs``), and the manifest when asked."""
    command = submit_command(cfg, job, env)
    if manifest_path is not None:
        template = yaml.safe_load(MANIFEST_TEMPLATE.read_text(encoding="utf-8"))
        write_manifest(rayjob_manifest(cfg, job, env, template), manifest_path)
        outputs["manifest"] = str(manifest_path)
    outputs["submit_command"] = shlex.join(command)
    print(outputs["submit_command"])
    return command


def named_modules(manifest_text: str) -> list[str]:
    """The Python modules a manifest's entrypoint names, in order, without repeats."""
    return list(dict.fromkeys(NAMED_MODULE.findall(manifest_text)))


def placeholders(manifest_text: str) -> list[str]:
    """Template markers or unset values left in a manifest (none in a generated one)."""
    return PLACEHOLDER.findall(manifest_text)
