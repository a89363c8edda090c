"""The cluster image (infra/images/verl): its pins, and the job's imports without Prefect or DVC."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

IMAGE = Path(__file__).resolve().parents[2] / "infra/images/verl"


def _job_requirements():
    spec = importlib.util.spec_from_file_location("job_requirements", IMAGE / "job_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_pin_the_verl_vllm_stack():
    pins = [line for line in (IMAGE / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert pins == ["verl[vllm]==0.9.1", "vllm==0.24.0", "torch==2.11.0", "transformers==5.9.0"]


def test_job_requirements_are_the_projects_minus_orchestration(repo_root):
    module = _job_requirements()
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["dependencies"]
    kept = module.job_requirements(repo_root / "pyproject.toml")
    dropped = [dep for dep in project if dep not in kept]
    assert {dep.split(">")[0].split("<")[0].split("[")[0] for dep in dropped} == module.ORCHESTRATION
    assert "torch>=2.11,<2.14" in kept  # admits the image's torch 2.11


@pytest.mark.slow  # a fresh interpreter imports torch, transformers and verl
def test_job_modules_import_without_prefect_or_dvc():
    pytest.importorskip("verl")
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('prefect', 'dvc'):
            raise ImportError('not in the cluster image: ' + name)
sys.meta_path.insert(0, Block())
import verl.trainer.main_ppo
import omni_r1.verl.actor, omni_r1.verl.reward, omni_r1.verl.dataset, omni_r1.verl.agent_loop, omni_r1.verl.vllm_plugin
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
