"""PeSFT under FSDP (2 processes, gloo, CPU) follows the single-process loss curve.

``pesft.strategy: fsdp`` hands Trainer ``fsdp_config`` (FSDP2, one unit per decoder layer);
Accelerate then applies ``torch.distributed.fsdp.fully_shard`` to every module of the named
classes and to the root. Accelerate 1.15 enables its FSDP plugin for GPU-type processes only
(``AcceleratorState`` ignores it under ``MULTI_CPU``), so on CPU this test applies the same
``fully_shard`` wrapping, read from the ``TrainingArguments`` the project builds, and runs the
PeSFT optimisation steps itself: each of 2 ranks computes :class:`PesftModel`'s loss on its 2
sequences with the global normalisers (token and image-label counts summed over ranks, as
Trainer does), gradients are reduce-scattered by FSDP, and AdamW steps on the shards. One
process on the same 4 sequences per step must give the same loss curve.
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

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS, PER_RANK, WORLD = 4, 2, 2


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _setup(out_dir: Path, strategy: str):
    from omni_r1.config import load_config
    from omni_r1.training.pesft import decoder_layer_classes, training_arguments

    torch.set_num_threads(1)
    tiny_models = _load("_tiny_model_fixtures", REPO_ROOT / "tests/model/conftest.py")
    helpers = _load("_pesft_test_helpers", REPO_ROOT / "tests/training/test_pesft.py")
    cfg = load_config(REPO_ROOT / "params.yaml")
    section = cfg.pesft.model_copy(update={"strategy": strategy, "learning_rate": 1e-2})
    tiny = tiny_models.build_tiny_chameleon(seed=0)
    args = training_arguments(
        section, out_dir / strategy, device="cpu", seed=0, progress_bar=False,
        wrap_classes=decoder_layer_classes(tiny.model),
    )  # fmt: skip
    return tiny, helpers.make_sequences(tiny, STEPS * PER_RANK * WORLD), helpers.pesft_model(tiny), args


def _fsdp_wrap(model: torch.nn.Module, args) -> int:
    """``fully_shard`` every module of the classes in Trainer's FSDP plugin args, then the root."""
    from torch.distributed.fsdp import fully_shard

    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True
    names = set(plugin["transformer_cls_names_to_wrap"].split(","))
    units = [module for module in model.modules() if type(module).__name__ in names]
    for module in units:
        fully_shard(module)
    fully_shard(model)
    return len(units)


def _steps(model, sequences, pad_id: int, lr: float, rank: int, world: int) -> list[float]:
    """STEPS AdamW steps; each rank takes its PER_RANK slice of every global batch."""
    import torch.distributed as dist

    from omni_r1.model.packing import collate
    from omni_r1.training.pesft import count_image_items

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(STEPS):
        start = step * PER_RANK * WORLD + rank * PER_RANK * (world > 1)
        batch = collate(sequences[start : start + PER_RANK * (WORLD // world)], pad_id)
        counts = torch.stack([(batch["labels"][:, 1:] != -100).sum(), count_image_items([batch])]).float()
        if world > 1:
            dist.all_reduce(counts)  # global normalisers, as Trainer's get_batch_samples
        out = model(
            batch["input_ids"], batch["attention_mask"], batch["labels"],
            num_items_in_batch=counts[0], num_image_items_in_batch=counts[1],
        )  # fmt: skip
        (out.loss * world).backward()  # FSDP averages gradients over ranks; this makes it a sum
        optimizer.step()
        optimizer.zero_grad()
        total = out.loss.detach().clone()
        if world > 1:
            dist.all_reduce(total)
        losses.append(float(total))
    return losses


@pytest.mark.slow
def test_fsdp_two_processes_match_one_process(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("OMNI_R1_PARENT_RUN_ID", None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--standalone",
        str(Path(__file__).resolve()), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    sharded = json.loads((tmp_path / "fsdp.json").read_text())
    assert sharded["units"] == 2  # both decoder layers are FSDP units
    tiny, sequences, model, args = _setup(tmp_path, "ddp")
    assert not args.fsdp
    single = _steps(model, sequences, tiny.layout.pad_id, args.learning_rate, rank=0, world=1)
    assert single[-1] < single[0]  # it trained
    assert torch.allclose(torch.tensor(sharded["losses"]), torch.tensor(single), rtol=1e-4, atol=1e-5), (
        sharded["losses"], single,
    )


if __name__ == "__main__":
    import torch.distributed as dist

    dist.init_process_group("gloo")
    tiny, sequences, model, args = _setup(Path(sys.argv[1]), "fsdp")
    units = _fsdp_wrap(model, args)
    losses = _steps(model, sequences, tiny.layout.pad_id, args.learning_rate, dist.get_rank(), dist.get_world_size())
    if dist.get_rank() == 0:
        (Path(sys.argv[1]) / "fsdp.json").write_text(json.dumps({"losses": losses, "units": units}))
    dist.destroy_process_group()
