"""Combined reward: official and paper weights, with and without an image; the batch scorer."""

from __future__ import annotations

import math

import pytest
import torch
from hand_batch import HAND_CODEBOOK, HAND_IDS, HAND_LAYOUT, HAND_MASK

from omni_r1.rewards.combined import RewardWeights, official_combination, paper_combination
from omni_r1.rewards.registry import score_batch

WEIGHTS = RewardWeights(accuracy=0.9, format=0.1, perception=0.05)


def test_official_weights_by_hand() -> None:
    acc = torch.tensor([1.0, 0.5, 1.0])
    fmt = torch.tensor([1.0, 0.0, 0.0])
    pe = torch.tensor([0.6, 0.2, math.nan])
    has_image = torch.tensor([True, True, False])
    reward = official_combination(acc, fmt, pe, has_image, WEIGHTS)
    # row 0: 0.95*(0.9*1 + 0.1*1) + 0.05*0.6 = 0.95 + 0.03 = 0.98
    # row 1: 0.95*(0.9*0.5 + 0)   + 0.05*0.2 = 0.4275 + 0.01 = 0.4375
    # row 2 (no image): 0.9*1 + 0.1*0 = 0.9
    torch.testing.assert_close(reward, torch.tensor([0.98, 0.4375, 0.9]))


def test_paper_weights_by_hand() -> None:
    acc = torch.tensor([1.0, 1.0])
    fmt = torch.tensor([1.0, 1.0])
    pe = torch.tensor([0.6, math.nan])
    reward = paper_combination(acc, fmt, pe, torch.tensor([True, False]), WEIGHTS)
    # row 0: 0.9 + 0.1 + 0.05*0.6 = 1.03 ; row 1: 0.9 + 0.1 = 1.0 (no perception term)
    torch.testing.assert_close(reward, torch.tensor([1.03, 1.0]))


def test_score_batch_end_to_end(cfg) -> None:
    layout, codebook = HAND_LAYOUT, HAND_CODEBOOK
    ids, mask = HAND_IDS, HAND_MASK
    texts = [
        "THOUGHT 1: look.\n<image>\nFinal Answer: 4",
        "THOUGHT 1: guess.\nFinal Answer: 5",
    ]
    batch = score_batch(cfg.reward, texts, ["4", "4"], ids, mask, codebook, layout)
    # row 0: acc 1, fmt 1, TV 2.5 -> inv 1/(1+2.5/3) = 6/11 ; R = 0.95*1 + 0.05*6/11
    # row 1: acc 0, fmt 1, no image -> R = 0.1
    assert batch.has_image.tolist() == [True, False]
    assert batch.reward[0].item() == pytest.approx(0.95 + 0.05 * 6 / 11)
    assert batch.reward[1].item() == pytest.approx(0.1)
    assert batch.accuracy_reasons == ["numeric", "numeric_mismatch"]
