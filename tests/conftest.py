"""Shared fixtures: the repository's params.yaml and an isolated MLflow store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from omni_r1.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def cfg() -> Config:
    """The embedded default configuration (repo-root params.yaml)."""
    return load_config(REPO_ROOT / "params.yaml")


@pytest.fixture
def mlflow_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point MLflow at a throwaway sqlite store inside tmp_path."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("OMNI_R1_PARENT_RUN_ID", raising=False)
    # an earlier mlflow.set_tracking_uri or set_experiment in this process would win over the
    # variable, or point at an experiment id of another store
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("Default")
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def tiny_builder():
    """``build(seed=0)`` → a fresh tiny random Chameleon (``.model``, ``.tokenizer``, ``.layout``).

    The builder of ``tests/model/conftest.py`` (hidden 32, 4x4 image grid), for tests outside
    ``tests/model``; equal seeds give equal weights.
    """
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("_tiny_model_fixtures", REPO_ROOT / "tests/model/conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.build_tiny_chameleon


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and do not fight other processes for cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
