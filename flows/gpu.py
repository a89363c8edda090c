"""Prefect flow ``gpu-stage``: send PeSFT to a Kubernetes Job and PeRPO to a verl RayJob,
with manifests generated from params.yaml (``orchestration.gpu``).

What it does, straight down:
1. builds the manifest: PeSFT is a ``batch/v1`` Job running
   ``torchrun --nproc_per_node=<gpus_per_node> -m omni_r1.cli pesft --track <t>`` with the
   overlays of ``orchestration.gpu.overlays``, GPUs/CPU/memory/shm from params and
   ``activeDeadlineSeconds`` = the stage's ``orchestration.stage_timeout_s``; PeRPO's RayJob
   comes from the verl engine's own writer (``omni-r1 perpo --engine verl --dry-run
   --manifest``) and is refused with a clear message where that command is not available;
2. publishes it as a Prefect artifact (visible in the UI before anything runs);
3. unless ``dry_run``: ``kubectl apply`` and ``kubectl wait`` until it completes, the
   kubectl output logged line by line.

``gpu_work_pool_template`` writes the base job template of the Prefect ``kubernetes`` work
pool ``orchestration.gpu.work_pool`` (NVIDIA GPU limit, shm, image from params), so a team
can also run the whole ``pipeline`` deployment on a GPU node:
``python -m flows.gpu --work-pool-template > pool.json`` then
``prefect work-pool create <pool> --type kubernetes --base-job-template pool.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.dvc_project import run_streamed, stage_timeout
from flows.pipeline import subprocess_env
from omni_r1.config import Config, load_config

LABELS = {"app.kubernetes.io/name": "omni-r1"}


def container_resources(cfg: Config) -> dict[str, Any]:
    gpu = cfg.orchestration.gpu
    return {"limits": {"cpu": str(gpu.cpu), "memory": f"{gpu.memory_gi}Gi", "nvidia.com/gpu": str(gpu.gpus_per_node)}}


def pesft_job(cfg: Config, track: str) -> dict[str, Any]:
    """The Kubernetes Job of PeSFT on one node with ``gpus_per_node`` GPUs."""
    if track not in cfg.pesft.datasets:
        raise ValueError(f"unknown track {track!r}; known: {', '.join(cfg.pesft.datasets)}")
    gpu = cfg.orchestration.gpu
    name = f"omni-r1-pesft-{track.replace('_', '-')}"
    overlays = [arg for path in gpu.overlays for arg in ("--overlay", path)]
    command = ["torchrun", f"--nproc_per_node={gpu.gpus_per_node}", "--nnodes=1", "-m", "omni_r1.cli",
               "pesft", "--track", track, *overlays]  # fmt: skip
    labels = {**LABELS, "app.kubernetes.io/component": "pesft"}
    container = {
        "name": "pesft",
        "image": gpu.image,
        "workingDir": "/workspace/omni-r1",
        "command": command,
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": gpu.mlflow_tracking_uri}],
        "envFrom": [{"secretRef": {"name": gpu.s3_secret}}],
        "resources": container_resources(cfg),
        "volumeMounts": [{"name": "workspace", "mountPath": "/workspace/omni-r1"}, {"name": "shm", "mountPath": "/dev/shm"}],
    }
    volumes = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": gpu.workspace_claim}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{gpu.shm_gi}Gi"}},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": gpu.namespace, "labels": labels},
        "spec": {
            "backoffLimit": cfg.orchestration.retries,
            "activeDeadlineSeconds": stage_timeout(cfg.orchestration, "pesft"),
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes},
            },
        },
    }


def perpo_rayjob(cfg: Config, track: str, project: Path) -> dict[str, Any]:
    """The verl RayJob of PeRPO, written by ``omni-r1 perpo --engine verl --dry-run --manifest``."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "perpo-rayjob.yaml"
        overlays = [arg for path in cfg.orchestration.gpu.overlays for arg in ("--overlay", path)]
        command = [str(Path(sys.executable).parent / "omni-r1"), "perpo", "--track", track, "--engine", "verl",
                   "--dry-run", "--manifest", str(out), *overlays]  # fmt: skip
        result = subprocess.run(command, cwd=project, env=subprocess_env({}), capture_output=True, text=True)
        if result.returncode != 0 or not out.is_file():
            raise RuntimeError(
                "the PeRPO RayJob comes from `omni-r1 perpo --engine verl --dry-run --manifest`, "
                f"which failed in {project} (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        return yaml.safe_load(out.read_text(encoding="utf-8"))


def gpu_work_pool_template(cfg: Config) -> dict[str, Any]:
    """Base job template of a Prefect ``kubernetes`` work pool whose flow-run pods get GPUs."""
    gpu = cfg.orchestration.gpu
    container = {
        "name": "prefect-job",
        "image": "{{ image }}",
        "args": "{{ command }}",
        "env": "{{ env }}",
        "resources": container_resources(cfg),
        "volumeMounts": [{"name": "workspace", "mountPath": "/workspace/omni-r1"}, {"name": "shm", "mountPath": "/dev/shm"}],
    }
    volumes = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": gpu.workspace_claim}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{gpu.shm_gi}Gi"}},
    ]
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "{{ name }}-", "namespace": "{{ namespace }}", "labels": "{{ labels }}"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes}},
        },
    }
    return {
        "job_configuration": {
            "command": "{{ command }}", "env": "{{ env }}", "labels": "{{ labels }}", "name": "{{ name }}",
            "namespace": "{{ namespace }}", "job_manifest": manifest, "stream_output": True,
        },
        "variables": {
            "type": "object",
            "properties": {
                "image": {"type": "string", "default": gpu.image},
                "namespace": {"type": "string", "default": gpu.namespace},
                "name": {"type": "string", "default": "omni-r1"},
                "command": {"type": "string"},
                "env": {"type": "object", "default": {"MLFLOW_TRACKING_URI": gpu.mlflow_tracking_uri}},
                "labels": {"type": "object", "default": LABELS},
            },
        },
    }  # fmt: skip


@task(task_run_name="kubectl-{action}")
def kubectl(action: str, args: list[str], manifest: str | None, timeout_s: float) -> str:
    """``kubectl <args>`` with ``manifest`` on stdin (written to a file), output logged as it comes."""
    logger = get_run_logger()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        if manifest is not None:
            handle.write(manifest)
            handle.flush()
            args = [*args, "-f", handle.name]
        code, output, timed_out = run_streamed(
            ["kubectl", *args], Path.cwd(), subprocess_env({}), timeout_s, lambda line: logger.info("kubectl | %s", line)
        )
    if timed_out or code != 0:
        raise RuntimeError(f"`kubectl {' '.join(args)}` {'timed out' if timed_out else f'exited {code}'}:\n{output[-2000:]}")
    return output


@flow(name="gpu-stage", log_prints=True)
def gpu_stage(
    stage: Literal["pesft", "perpo"] = "pesft",
    track: str = "omni_r1",
    project_dir: str = ".",
    dry_run: bool = True,
) -> dict[str, Any]:
    """Build the stage's GPU manifest from params.yaml; submit it unless ``dry_run``.

    Returns:
        ``{"manifest": <dict>, "submitted": bool}``.
    """
    project = Path(project_dir).resolve()
    cfg = load_config(project / "params.yaml")
    manifest = pesft_job(cfg, track) if stage == "pesft" else perpo_rayjob(cfg, track, project)
    text = yaml.safe_dump(manifest, sort_keys=False)
    create_markdown_artifact(markdown=f"```yaml\n{text}```", key=f"gpu-{stage}-manifest", description=f"{stage} manifest")
    if dry_run:
        return {"manifest": manifest, "submitted": False}
    timeout_s = stage_timeout(cfg.orchestration, stage)
    kubectl("apply", ["apply"], text, 300)
    kind = manifest["kind"].lower()
    name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", cfg.orchestration.gpu.namespace)
    condition = "condition=complete" if kind == "job" else "jsonpath={.status.jobStatus}=SUCCEEDED"
    kubectl("wait", ["wait", f"{kind}/{name}", "-n", namespace, f"--for={condition}", f"--timeout={timeout_s}s"], None, timeout_s + 60)
    return {"manifest": manifest, "submitted": True}


if __name__ == "__main__":
    params = load_config(Path("params.yaml"))
    if sys.argv[1:] == ["--work-pool-template"]:
        print(json.dumps(gpu_work_pool_template(params), indent=2))
        print(
            f"# save it as a file, then: prefect work-pool create {params.orchestration.gpu.work_pool} "
            "--type kubernetes --base-job-template <file>",
            file=sys.stderr,
        )
    else:
        print(yaml.safe_dump(pesft_job(params, sys.argv[1] if len(sys.argv) > 1 else "omni_r1"), sort_keys=False))
