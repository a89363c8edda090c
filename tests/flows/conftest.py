"""Fixtures of the flow tests: a toy DVC project and the Prefect test harness."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TOY = Path(__file__).resolve().parent / "toy_project"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=omni-r1 tests", "-c", "user.email=tests@omni-r1.invalid", *args],
        cwd=project, check=True, capture_output=True,
    )


def build_toy_project(root: Path, params_update: dict | None = None) -> Path:
    """Copy the toy project and the repo's params.yaml into ``root``; git + dvc init; commit."""
    shutil.copytree(TOY, root)
    # stored under another name so DVC in the repository itself never collects the toy graph
    (root / "toy.dvc.yaml.in").rename(root / "dvc.yaml")
    params = (REPO_ROOT / "params.yaml").read_text()
    if params_update:
        data = yaml.safe_load(params)
        for section, values in params_update.items():
            data[section].update(values)
        params = yaml.safe_dump(data, sort_keys=False)
    (root / "params.yaml").write_text(params)
    (root / ".gitignore").write_text("mlflow.db\nmlruns/\n.omni-r1-pipeline.lock\n")
    git(root, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "toy project")
    return root


@pytest.fixture(scope="session")
def toy_project_factory(tmp_path_factory) -> Callable[..., Path]:
    def make(name: str, params_update: dict | None = None) -> Path:
        return build_toy_project(tmp_path_factory.mktemp(name) / "project", params_update)

    return make


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
