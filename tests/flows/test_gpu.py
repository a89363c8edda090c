"""GPU manifests and the Prefect kubernetes work-pool template come from params.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.gpu import gpu_work_pool_template, perpo_rayjob, pesft_job
from omni_r1.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg():
    return load_config(REPO_ROOT / "params.yaml")


def with_gpu(cfg, **changes):
    gpu = cfg.orchestration.gpu.model_copy(update=changes)
    return cfg.model_copy(update={"orchestration": cfg.orchestration.model_copy(update={"gpu": gpu})})


def test_pesft_job_follows_params(cfg):
    cfg = with_gpu(cfg, gpus_per_node=4, image="registry.example/omni-r1:1.2.3", overlays=["params/paper.yaml"])
    job = pesft_job(cfg, "omni_r1_zero")
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["torchrun", "--nproc_per_node=4"]
    assert command[command.index("-m") + 1 :] == [
        "omni_r1.cli", "pesft", "--track", "omni_r1_zero", "--overlay", "params/paper.yaml",
    ]  # fmt: skip
    assert container["image"] == "registry.example/omni-r1:1.2.3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert job["spec"]["activeDeadlineSeconds"] == cfg.orchestration.stage_timeout_s["pesft"]
    assert job["metadata"]["namespace"] == cfg.orchestration.gpu.namespace
    with pytest.raises(ValueError, match="unknown track 'nope'"):
        pesft_job(cfg, "nope")


def test_work_pool_template_gives_flow_pods_gpus(cfg):
    template = gpu_work_pool_template(with_gpu(cfg, gpus_per_node=2))
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert template["variables"]["properties"]["image"]["default"] == cfg.orchestration.gpu.image


def test_perpo_rayjob_before_its_inputs_exist_is_a_clear_error(cfg, tmp_path):
    import shutil

    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO_ROOT / "params", tmp_path / "params")
    with pytest.raises(RuntimeError, match=r"(?s)omni-r1 perpo --engine verl --dry-run --manifest.*omni-r1 pesft"):
        perpo_rayjob(cfg, "omni_r1", tmp_path)  # no PeSFT checkpoint yet: the dry run names the stage to run
