"""GRPO math against verl 0.9.1's ``core_algos`` on the same tensors (skipped without verl)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni_r1.training import grpo

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

B, L = 12, 7


@pytest.fixture
def batch() -> dict[str, torch.Tensor | np.ndarray]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 5, 3, 7, 1, 6, 7, 2, 4, 7, 5, 6])
    mask = (torch.arange(L) < lengths.unsqueeze(1)).float()  # [B, L]
    scores = torch.randint(0, 3, (B,), generator=generator).float() / 2  # {0, .5, 1}
    rewards = torch.zeros(B, L)
    rewards[torch.arange(B), lengths - 1] = scores  # outcome reward on the last token
    log_prob = -torch.rand(B, L, generator=generator) * 3
    return {
        "mask": mask,
        "rewards": rewards,
        "index": np.array(["p0"] * 4 + ["p1"] * 4 + ["p2"] * 3 + ["p3"]),  # p3: a group of one
        "log_prob": log_prob,
        "old_log_prob": log_prob + torch.randn(B, L, generator=generator) * 0.3,
        "ref_log_prob": log_prob + torch.randn(B, L, generator=generator) * 0.5,
        "advantages": torch.randn(B, L, generator=generator),
        "logits": torch.randn(B, L, 11, generator=generator),
    }


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_advantage_matches_verl(batch, norm: bool) -> None:
    ours = grpo.grpo_outcome_advantage(batch["rewards"], batch["mask"], batch["index"], 1e-6, norm)
    theirs, _ = core_algos.compute_grpo_outcome_advantage(
        batch["rewards"].clone(), batch["mask"], batch["index"], epsilon=1e-6, norm_adv_by_std_in_grpo=norm
    )
    torch.testing.assert_close(ours, theirs)


def test_rloo_advantage_matches_verl(batch) -> None:
    ours = grpo.rloo_outcome_advantage(batch["rewards"], batch["mask"], batch["index"], 1e-6, True)
    theirs, _ = core_algos.compute_rloo_outcome_advantage(batch["rewards"].clone(), batch["mask"], batch["index"])
    torch.testing.assert_close(ours, theirs)


def _actor_config(mode: str, clip_c: float):
    from verl.workers.config import ActorConfig

    return ActorConfig(
        strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, use_dynamic_bsz=False,
        clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=clip_c,
        loss_agg_mode=mode,
    )  # fmt: skip


@pytest.mark.parametrize("mode", list(grpo.LOSS_AGGREGATIONS))
def test_policy_loss_matches_verl(batch, mode: str) -> None:
    ours = grpo.clipped_policy_loss(
        batch["old_log_prob"], batch["log_prob"], batch["advantages"], batch["mask"],
        clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode=mode,
    )  # fmt: skip
    loss, metrics = core_algos.compute_policy_loss_vanilla(
        batch["old_log_prob"], batch["log_prob"], batch["advantages"], batch["mask"],
        loss_agg_mode=mode, config=_actor_config(mode, 3.0),
    )  # fmt: skip
    torch.testing.assert_close(ours.loss, loss)
    assert ours.clip_fraction.item() == pytest.approx(metrics["actor/pg_clipfrac"])
    assert ours.clip_fraction_lower.item() == pytest.approx(metrics["actor/pg_clipfrac_lower"])
    assert ours.approx_kl.item() == pytest.approx(metrics["actor/ppo_kl"])
    assert 0.0 < ours.clip_fraction.item() < 1.0  # the clip really acts on this batch


@pytest.mark.parametrize("kind", list(grpo.KL_ESTIMATORS))
def test_kl_estimators_match_verl(batch, kind: str) -> None:
    log_prob = batch["log_prob"].clone().requires_grad_(True)
    ours = grpo.kl_penalty(log_prob, batch["ref_log_prob"], kind)
    theirs_input = batch["log_prob"].clone().requires_grad_(True)
    theirs = core_algos.kl_penalty(theirs_input, batch["ref_log_prob"], kind)
    torch.testing.assert_close(ours, theirs)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(log_prob.grad, theirs_input.grad)


@pytest.mark.parametrize("mode", list(grpo.LOSS_AGGREGATIONS))
def test_aggregation_and_entropy_match_verl(batch, mode: str) -> None:
    values = batch["advantages"] ** 2
    torch.testing.assert_close(
        grpo.aggregate_loss(values, batch["mask"], mode), core_algos.agg_loss(values, batch["mask"], mode)
    )
    entropy = grpo.entropy_from_logits(batch["logits"])
    torch.testing.assert_close(
        grpo.aggregate_loss(entropy, batch["mask"], mode),
        core_algos.compute_entropy_loss(batch["logits"], batch["mask"], mode),
    )


def test_ppo_loss_combines_terms_as_verl(batch, cfg) -> None:
    g = cfg.grpo
    log_prob = batch["log_prob"].clone().requires_grad_(True)
    entropy = grpo.entropy_from_logits(batch["logits"])
    loss, metrics = grpo.ppo_loss(
        log_prob, batch["old_log_prob"], batch["advantages"], batch["mask"],
        clip_ratio_low=g.clip_ratio_low, clip_ratio_high=g.clip_ratio_high, clip_ratio_c=g.clip_ratio_c,
        loss_agg_mode=g.loss_agg_mode, entropy_coeff=g.entropy_coeff, kl_loss_coef=g.kl_loss_coef,
        kl_loss_type=g.kl_loss_type, ref_log_prob=batch["ref_log_prob"], entropy=entropy,
    )  # fmt: skip
    # verl workers/utils/losses.ppo_loss: pg - entropy_coeff * H + kl_loss_coef * KL
    pg, _ = core_algos.compute_policy_loss_vanilla(
        batch["old_log_prob"], batch["log_prob"], batch["advantages"], batch["mask"],
        loss_agg_mode=g.loss_agg_mode, config=_actor_config(g.loss_agg_mode, g.clip_ratio_c),
    )  # fmt: skip
    ent = core_algos.agg_loss(entropy, batch["mask"], g.loss_agg_mode)
    kl = core_algos.agg_loss(
        core_algos.kl_penalty(batch["log_prob"], batch["ref_log_prob"], g.kl_loss_type), batch["mask"], g.loss_agg_mode
    )
    expected = pg - g.entropy_coeff * ent + g.kl_loss_coef * kl
    torch.testing.assert_close(loss, expected)
    assert metrics["actor/loss"] == pytest.approx(expected.item())
    assert {"actor/pg_clipfrac", "actor/ppo_kl", "actor/kl_loss", "actor/entropy"} <= set(metrics)
    loss.backward()
    assert log_prob.grad is not None and log_prob.grad[batch["mask"] == 0].abs().max() == 0
