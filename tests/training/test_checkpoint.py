"""Atomic checkpoints, exact state round trips, and kill-and-resume equality of PeRPO on CPU."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_perpo import input_codes, make_records, perpo_cfg

from omni_r1.model.loading import verify_folder
from omni_r1.training.checkpoint import (
    TRAINER_STATE,
    CheckpointError,
    TrainerState,
    latest_checkpoint,
    load_checkpoint_state,
    load_model_weights,
    save_checkpoint,
    step_folders,
)
from omni_r1.training.perpo import PerpoTrainer
from omni_r1.training.rollout import build_prompts


def small_training_state(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 3))
    for _ in range(2):
        model(torch.randn(5, 4)).square().mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def write_weights(model: torch.nn.Module):
    from safetensors.torch import save_file

    return lambda folder: save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "model.safetensors"),
    )


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_failure_mid_save_leaves_no_final_folder_and_keeps_the_previous(tmp_path):
    model, optimizer, scheduler = small_training_state()
    first = save_checkpoint(tmp_path / "step_1", write_model=write_weights(model), optimizer=optimizer,
                            scheduler=scheduler, state=TrainerState(step=1))  # fmt: skip
    before = folder_digest(first)

    def crash_half_way(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    for name in ("step_2", "step_1"):  # a new checkpoint, and an overwrite of the existing one
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(tmp_path / name, write_model=crash_half_way, optimizer=optimizer,
                            scheduler=scheduler, state=TrainerState(step=2))  # fmt: skip
    assert not (tmp_path / "step_2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_1"]  # no temporary folder left
    assert folder_digest(first) == before
    assert latest_checkpoint(tmp_path) == first


def test_state_round_trip_restores_optimizer_scheduler_and_torch_rng(tmp_path):
    model, optimizer, scheduler = small_training_state()
    folder = save_checkpoint(tmp_path / "step_2", write_model=write_weights(model), optimizer=optimizer,
                             scheduler=scheduler, state=TrainerState(step=2, extra={"cursor": 5}))  # fmt: skip
    draw = torch.rand(3)

    fresh, fresh_optimizer, fresh_scheduler = small_training_state(seed=1)
    load_model_weights(fresh, folder)
    state = load_checkpoint_state(folder, fresh_optimizer, fresh_scheduler)
    assert (state.step, state.extra) == (2, {"cursor": 5})
    assert torch.equal(torch.rand(3), draw)
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]
    for (_, a), (_, b) in zip(fresh.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b)
    original, restored = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert original["param_groups"] == restored["param_groups"]
    for index, values in original["state"].items():
        for key, value in values.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(restored["state"][index][key])
            )


def test_saved_files_do_not_depend_on_python_or_numpy_global_generators(tmp_path):
    # libraries (tracking clients) advance these by run-dependent amounts; training never draws
    # from them, so a checkpoint must be byte-identical whatever they hold
    digests = []
    for name, seed in (("a", 1), ("b", 2)):
        model, optimizer, scheduler = small_training_state()
        torch.manual_seed(0)
        random.seed(seed)
        np.random.seed(seed)
        folder = save_checkpoint(tmp_path / name, write_model=write_weights(model), optimizer=optimizer,
                                 scheduler=scheduler, state=TrainerState(step=1))  # fmt: skip
        digests.append(folder_digest(folder))
    assert digests[0] == digests[1]


def test_incomplete_folder_is_not_resumable(tmp_path):
    (tmp_path / "step_3").mkdir()
    (tmp_path / "step_3" / TRAINER_STATE).write_text("{}")
    (tmp_path / "step_x").mkdir()
    assert step_folders(tmp_path) == [(3, tmp_path / "step_3")]
    model, optimizer, scheduler = small_training_state()
    with pytest.raises(CheckpointError, match="optimizer"):
        load_checkpoint_state(tmp_path / "step_3", optimizer, scheduler)


def build_trainer(tiny_builder, cfg):
    policy, reference = tiny_builder(seed=0), tiny_builder(seed=0)
    records = make_records(4, mixed=set())
    prompts = build_prompts(records, input_codes(records, policy.layout.num_codes, policy.layout.tokens_per_image),
                            policy.layout, policy.tokenizer, source="test")  # fmt: skip
    return PerpoTrainer(policy.model, reference.model, policy.tokenizer, policy.layout, prompts, cfg,
                        write_model=lambda folder: policy.model.save_pretrained(folder))  # fmt: skip


def test_kill_and_resume_equals_an_uninterrupted_run(tiny_builder, cfg, tmp_path):
    # real reward (perception term only varies on this random model, so the filter looks at the
    # total reward); high lr so steps move weights
    cfg = perpo_cfg(
        cfg, max_new_tokens=40, gen_batch_size=2, train_batch_size=2, max_gen_batches=3, learning_rate=0.05,
        filter_metric="reward",
    )
    cfg = cfg.model_copy(
        update={"reward": cfg.reward.model_copy(update={"perception_weight": 0.5})}
    )
    torch.manual_seed(123)
    uninterrupted = build_trainer(tiny_builder, cfg)
    uninterrupted.train(3, tmp_path / "a", save_steps=[2])

    torch.manual_seed(123)
    killed = build_trainer(tiny_builder, cfg)
    killed.train(2, tmp_path / "b", save_steps=[2])  # "killed" right after its step-2 checkpoint
    del killed
    torch.manual_seed(999)  # the new process starts from another RNG state
    resumed = build_trainer(tiny_builder, cfg)
    resumed.resume(latest_checkpoint(tmp_path / "b"))
    assert resumed.step_count == 2
    resumed.train(3, tmp_path / "b", save_steps=[2])

    assert sum(h["filter/kept_groups"] for h in uninterrupted.history) > 0  # some update happened
    reward_keys = (
        "reward/mean",
        "reward/accuracy",
        "reward/format",
        "response/length",
        "filter/kept_groups",
    )
    for a, b in zip(uninterrupted.history, resumed.history, strict=True):
        assert {k: a[k] for k in reward_keys} == {k: b[k] for k in reward_keys}
    for (name, a), (_, b) in zip(
        uninterrupted.policy.named_parameters(), resumed.policy.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
    start = tiny_builder(seed=0).model
    assert any(
        not torch.equal(a, b)
        for a, b in zip(start.parameters(), resumed.policy.parameters(), strict=True)
    )


def test_rolling_checkpoint_bounds_lost_steps_and_resumes_exactly(tiny_builder, cfg, tmp_path):
    cfg = perpo_cfg(cfg, max_new_tokens=24, gen_batch_size=2, train_batch_size=2, max_gen_batches=1,
                    learning_rate=0.05, filter_metric="reward")  # fmt: skip
    cfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"perception_weight": 0.5})})
    torch.manual_seed(7)
    uninterrupted = build_trainer(tiny_builder, cfg)
    uninterrupted.train(3, tmp_path / "a", save_steps=[])

    torch.manual_seed(7)
    killed = build_trainer(tiny_builder, cfg)
    rolling = tmp_path / "b_resume"
    killed.train(3, tmp_path / "b", save_steps=[], resume_dir=rolling, resume_every=2)
    state = json.loads((rolling / "trainer_state.json").read_text())
    assert state["step"] == 2 and verify_folder(rolling) > 0  # the latest multiple of resume_every
    del killed  # as if killed during step 3: only the rolling checkpoint survives
    torch.manual_seed(99)
    resumed = build_trainer(tiny_builder, cfg)
    resumed.resume(rolling)
    assert resumed.step_count == 2
    resumed.train(3, tmp_path / "b", save_steps=[])
    for (name, a), (_, b) in zip(uninterrupted.policy.named_parameters(), resumed.policy.named_parameters(), strict=True):
        assert torch.equal(a, b), name
