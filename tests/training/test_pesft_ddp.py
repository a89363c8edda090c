"""PeSFT under 2-process DDP on CPU (gloo), launched with torchrun.

The test starts ``torchrun --nproc_per_node 2`` on this very file; each rank builds the
tiny model from a *different* seed (DDP must broadcast rank 0's weights), trains a few
steps on its shard of the data through :class:`PesftTrainer` (Trainer sets up DDP from
torchrun's environment), and writes its final parameters and losses. Both ranks must end
with identical parameters that moved from the start, and finite losses.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def worker(out_dir: Path) -> None:
    """One rank: train 3 steps, write ``rank<r>.safetensors`` and ``rank<r>.json``."""
    from omni_r1.config import load_config
    from omni_r1.training.pesft import loss_history

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    tiny_models = _load("_tiny_model_fixtures", REPO_ROOT / "tests/model/conftest.py")
    helpers = _load("_pesft_test_helpers", REPO_ROOT / "tests/training/test_pesft.py")
    cfg = load_config(REPO_ROOT / "params.yaml")
    tiny = tiny_models.build_tiny_chameleon(seed=rank)
    sequences = helpers.make_sequences(tiny, 8)
    model = helpers.pesft_model(tiny)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = helpers.make_trainer(cfg, tiny, model, sequences, out_dir / "trainer", max_steps=3, batch=2, accumulation=2)
    trainer.train()
    final = {name: p.detach().clone().contiguous() for name, p in model.named_parameters()}
    save_file(final, str(out_dir / f"rank{rank}.safetensors"))
    (out_dir / f"rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.args.world_size,
        "history": loss_history(trainer.state.log_history),
        "moved": any(not torch.equal(initial[n], final[n]) for n in final),
    }))  # fmt: skip


@pytest.mark.slow
def test_two_process_ddp_ranks_end_identical(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("OMNI_R1_PARENT_RUN_ID", None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(Path(__file__).resolve()), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]

    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(report["world_size"] == 2 for report in reports)
    assert all(report["moved"] for report in reports)
    for report in reports:
        assert len(report["history"]) == 3
        assert all(torch.isfinite(torch.tensor([row["loss"], row["cross_entropy"], row["perception"]])).all()
                   for row in report["history"])  # fmt: skip
    rank0, rank1 = (load_file(str(tmp_path / f"rank{rank}.safetensors")) for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    different = [name for name in rank0 if not torch.equal(rank0[name], rank1[name])]
    assert not different, f"parameters that differ between ranks: {different[:5]}"


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
