"""GRPO math (paper §4.2, Table 6) checked against values worked out by hand; no verl needed.

The same functions are compared with verl's ``core_algos`` in ``test_grpo_verl.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni_r1.training import grpo


def test_grpo_advantage_by_hand() -> None:
    # group rewards [1, 0, 0, 1]: mean 0.5, unbiased std sqrt((4 * 0.25) / 3) = 0.57735
    # A = ±0.5 / 0.57735 = ±0.866025
    rewards = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    adv = grpo.grpo_outcome_advantage(rewards, torch.ones(4, 1), [7, 7, 7, 7], 0.0, True)
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([0.866025, -0.866025, -0.866025, 0.866025]))


def test_mixed_outcome_filter_keeps_groups_with_spread() -> None:
    scores = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.3, 0.3, 0.7])
    index = ["a", "a", "a", "b", "b", "c", "c", "d"]  # a: all equal; b: mixed; c: equal; d: single
    keep = grpo.mixed_outcome_mask(scores, index)
    assert keep.tolist() == [False, False, False, True, True, False, False, True]


def test_dual_clip_bounds_negative_advantage_loss() -> None:
    # A = -1, ratio = e^2 = 7.39: clipped surrogate loss = max(7.39, 1.28) = 7.39
    # dual-clip caps it at -A*c = 3
    old, new = torch.zeros(1, 1), torch.full((1, 1), 2.0)
    adv, mask = -torch.ones(1, 1), torch.ones(1, 1)
    kwargs = dict(clip_ratio_low=0.2, clip_ratio_high=0.28, loss_agg_mode="token-mean")
    assert grpo.clipped_policy_loss(old, new, adv, mask, clip_ratio_c=3.0, **kwargs).loss.item() == pytest.approx(3.0)
    assert grpo.clipped_policy_loss(old, new, adv, mask, clip_ratio_c=None, **kwargs).loss.item() == pytest.approx(
        torch.e**2
    )


def test_k3_by_hand() -> None:
    # log π = 0, log π_ref = log 2: k3 = 2 - log 2 - 1 = 0.306853
    value = grpo.kl_k3(torch.tensor([0.0]), torch.tensor([np.log(2.0)], dtype=torch.float32))
    assert value.item() == pytest.approx(1 - np.log(2.0), abs=1e-6)


def test_aggregation_by_hand() -> None:
    # row 0 tokens [1, 3] ; row 1 tokens [5] (the rest masked)
    values = torch.tensor([[1.0, 3.0, 100.0], [5.0, 100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    expected = {
        "token-mean": (1 + 3 + 5) / 3,  # 3.0
        "seq-mean-token-mean": ((1 + 3) / 2 + 5) / 2,  # 3.5
        "seq-mean-token-sum": ((1 + 3) + 5) / 2,  # 4.5
        "seq-mean-token-sum-norm": ((1 + 3) + 5) / 2 / 3,  # 1.5 (horizon = L = 3)
    }
    for mode, value in expected.items():
        assert grpo.aggregate_loss(values, mask, mode).item() == pytest.approx(value)


def test_rloo_advantage_by_hand() -> None:
    # group rewards [1, 0, 0, 1]: each baseline is the mean of the other three
    # A_0 = 1 - (0 + 0 + 1)/3 = 0.666667 ; A_1 = 0 - (1 + 0 + 1)/3 = -0.666667
    rewards = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    adv = grpo.rloo_outcome_advantage(rewards, torch.ones(4, 1), [3, 3, 3, 3], 1e-6, True)
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3]))


def test_clipped_loss_by_hand() -> None:
    # token 0: A = +1, ratio = e^0.5 = 1.6487 > 1 + 0.28: the loss is -A * 1.28 = -1.28 (clipped)
    # token 1: A = +1, ratio = e^0 = 1 inside the clip range: loss -1
    # token-mean over both: (-1.28 - 1) / 2 = -1.14 ; clip fraction 1/2
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.5, 0.0]])
    result = grpo.clipped_policy_loss(
        old, new, torch.ones(1, 2), torch.ones(1, 2),
        clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode="token-mean",
    )  # fmt: skip
    assert result.loss.item() == pytest.approx(-1.14)
    assert result.clip_fraction.item() == pytest.approx(0.5)


def test_ppo_loss_adds_entropy_bonus_and_kl_by_hand() -> None:
    # on-policy (ratio 1), A = 2 on one token: pg = -2 ; entropy 0.5 ; k1 KL = 0 - (-0.1) = 0.1
    # loss = pg - 0.01 * 0.5 + 0.1 * 0.1 = -2 - 0.005 + 0.01 = -1.995
    log_prob = torch.zeros(1, 1)
    loss, metrics = grpo.ppo_loss(
        log_prob, log_prob, torch.full((1, 1), 2.0), torch.ones(1, 1),
        clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode="token-mean",
        entropy_coeff=0.01, kl_loss_coef=0.1, kl_loss_type="k1",
        ref_log_prob=torch.full((1, 1), -0.1), entropy=torch.full((1, 1), 0.5),
    )  # fmt: skip
    assert loss.item() == pytest.approx(-1.995)
    assert metrics["actor/loss"] == pytest.approx(-1.995)
