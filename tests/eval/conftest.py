"""Evaluation fixtures: a tiny random Chameleon with a VQ decoder, and a small synthetic Omni-Bench.

The model is the one of ``tests/model/conftest.py`` (loaded by path: each test folder has its
own ``conftest`` module) plus a random :class:`omni_r1.model.vq.VQDecoder` for its VQ config.
The bench is a few synthetic records per Uni-Task, tagged with their slice, written with
``write_records`` and encoded with the model's own VQ encoder into ``codes.parquet``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from omni_r1.data.codes import cache_key, encode_dataset
from omni_r1.data.omnibench import tag_slice
from omni_r1.data.storage import write_records
from omni_r1.data.synthetic import generate
from omni_r1.model.images import encode_images
from omni_r1.model.vq import build_decoder

MODEL_CONFTEST = Path(__file__).resolve().parents[1] / "model" / "conftest.py"
PER_SLICE = 2


def _model_conftest() -> Any:
    spec = importlib.util.spec_from_file_location("omni_r1_tests_model_conftest", MODEL_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@dataclass
class TinyOmni:
    """The fields of ``OmniModel`` the evaluation reads."""

    model: Any
    tokenizer: Any
    layout: Any
    vq_decoder: Any


def build_tiny_omni(seed: int = 0) -> TinyOmni:
    tiny = _model_conftest().build_tiny_chameleon(seed=seed)
    torch.manual_seed(seed)
    decoder = build_decoder(tiny.model.config.vq_config)
    return TinyOmni(tiny.model, tiny.tokenizer, tiny.layout, decoder)


@pytest.fixture(scope="session")
def tiny_omni() -> TinyOmni:
    return build_tiny_omni()


@pytest.fixture(scope="session")
def bench_dirs(tmp_path_factory, cfg, tiny_omni) -> tuple[Path, Path]:
    """``(prepared/omnibench, encoded/omnibench)`` with PER_SLICE records per slice."""
    root = tmp_path_factory.mktemp("bench")
    records = [tag_slice(r, r.uni_task) for r in generate("omnibench", PER_SLICE, cfg)]
    dataset = root / "prepared" / "omnibench"
    write_records(records, dataset, shard_size=cfg.data.shard_size)
    encoded = root / "encoded" / "omnibench"
    encode_dataset(dataset, encoded, lambda images: encode_images(tiny_omni, images), cache_key(dataset, "test"))
    return dataset, encoded



def eval_config(cfg: Any, tmp_path: Path, **eval_changes: Any) -> Any:
    """The repo config with evaluation outputs under tmp_path and a short generation budget."""
    changes = {
        "predictions_dir": str(tmp_path / "reports" / "predictions"),
        "gallery_dir": str(tmp_path / "reports" / "gallery"),
        "batch_size": 4,
        "gallery_examples": 4,
        **eval_changes,
    }
    return cfg.model_copy(
        update={
            "eval": cfg.eval.model_copy(update=changes),
            "paths": cfg.paths.model_copy(
                update={"checkpoints_dir": str(tmp_path / "checkpoints"), "metrics_dir": str(tmp_path / "metrics")}
            ),
            "generation": cfg.generation.model_copy(update={"max_new_tokens": 40}),
            "report": cfg.report.model_copy(
                update={"out_dir": str(tmp_path / "reports"), "plots_dir": str(tmp_path / "reports" / "plots"),
                        "projection_path": str(tmp_path / "reports" / "projection.png")}
            ),
        }
    )  # fmt: skip


@pytest.fixture
def eval_cfg(cfg, tmp_path):
    """``eval_cfg(**eval_changes)``: see :func:`eval_config` (outputs under this test's tmp_path)."""
    return lambda **changes: eval_config(cfg, tmp_path, **changes)
