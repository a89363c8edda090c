"""The paper-shape smoke runs every stage to completion on CPU (issue: the paper's own setting).

512 px images with 1024 codes each, 4096-token budgets, the real-source adapters on small files in
each upstream schema, Table 6's batch structure scaled down, a tiny-width model: shapes a
64 px test cannot reach. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from smoke_paper import COMMANDS, run  # noqa: E402

from omni_r1.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_every_stage_runs_at_the_papers_shapes(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "params", tmp_path / "params")
    cfg = load_config(tmp_path / "params.yaml", [tmp_path / p for p in ("params/paper.yaml", "params/smoke-paper.yaml")])
    assert cfg.model.tiny.image_size == 512 and cfg.generation.max_new_tokens == 4096  # the paper's shapes
    executable = shutil.which("omni-r1", path=str(Path(sys.executable).parent)) or "omni-r1"

    seconds = run(tmp_path, executable)  # raises on the first command that fails

    assert list(seconds) == [" ".join(command) for command in COMMANDS]
    metrics = tmp_path / "smoke" / "metrics"
    perpo = json.loads((metrics / "perpo_omni_r1.json").read_text())
    assert perpo["steps"] == cfg.perpo.max_steps and perpo["skipped_updates"] < perpo["steps"]  # the update ran
    assert perpo["images_step0"] > 0  # rollouts drew 1024-code images within the 4096-token budget
    evaluation = json.loads((metrics / "omnibench_omni_r1_2.json").read_text())
    assert set(evaluation) >= {"natural", "structured", "diagrammatic", "vision_operational", "average"}
    [released] = (metrics / "models").glob("*.json")  # `evaluate --model` on the released-schema parquet
    assert json.loads(released.read_text())["protocol"]["decoding"] == cfg.eval.decoding
    [general] = (metrics / "general").glob("*.json")
    assert set(json.loads(general.read_text())["results"]) == set(cfg.general_bench.benchmarks)
    promoted = json.loads((metrics / "promote.json").read_text())  # registered; overlays make it an experiment run
    assert (promoted["checkpoint"], promoted["version"], promoted["line"]) == ("omni_r1_2", 1, "experiment")
