"""PeSFT losses on tiny tensors, with the arithmetic written out."""

from __future__ import annotations

import math

import pytest
import torch

from omni_r1.model.layout import TokenLayout
from omni_r1.training.losses import (
    cross_entropy_loss,
    image_label_targets,
    perception_loss,
    pesft_loss,
)

LAYOUT = TokenLayout(
    bos_id=0, pad_id=1, eos_id=2, boi_id=9, eoi_id=8, image_token_start=4, num_codes=4,
    grid_h=1, grid_w=2, image_size=16, reasoning_open_id=10, reasoning_close_id=11,
    answer_open_id=12, answer_close_id=13, vocab_size=14,
)  # fmt: skip
CODEBOOK = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # K=4, D=2


def identity_projection(dim: int) -> torch.nn.Linear:
    projection = torch.nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.eye(2, dim))
    return projection


def test_cross_entropy_by_hand() -> None:
    # V = 2, uniform logits at every position: -log(1/2) = log 2 per labelled token
    logits = torch.zeros(1, 4, 2)
    labels = torch.tensor([[-100, 1, 0, -100]])  # positions 1 and 2 are labelled
    # shifted: logits[0..2] score labels[1..3] = [1, 0, -100] -> 2 tokens, mean log 2
    assert cross_entropy_loss(logits, labels).item() == pytest.approx(math.log(2))
    # normalised by a larger accumulated count: sum / 4 = 2 log 2 / 4
    assert cross_entropy_loss(logits, labels, num_items_in_batch=4).item() == pytest.approx(math.log(2) / 2)
    # a confident correct logit: logits [0, ln 3] -> p(1) = 3/4 ; first label is 1
    logits[0, 0] = torch.tensor([0.0, math.log(3)])
    # tokens: -log(3/4) and log 2 -> mean
    assert cross_entropy_loss(logits, labels).item() == pytest.approx((-math.log(0.75) + math.log(2)) / 2)


def test_cross_entropy_accumulation_is_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 5, generator=generator)
    labels = torch.randint(0, 5, (4, 6), generator=generator)
    labels[0, :4] = -100
    labels[3, 2:] = -100
    total = int((labels[:, 1:] != -100).sum())
    whole = cross_entropy_loss(logits, labels)
    halves = sum(cross_entropy_loss(logits[i : i + 2], labels[i : i + 2], total) for i in (0, 2))
    torch.testing.assert_close(halves, whole)


def test_perception_loss_by_hand_next_token() -> None:
    # labels: [text, BOI, img c1, img c2, EOI]; image label positions t = 2, 3
    labels = torch.tensor([[10, 9, 5, 6, 8]])
    mask, codes = image_label_targets(labels, LAYOUT)
    assert mask.tolist() == [[False, False, True, True, False]]
    assert codes[mask].tolist() == [1, 2]
    # hidden (Dh = 2, W = identity): h_t predicts token t+1
    hidden = torch.tensor([[[9.0, 9.0], [1.0, 1.0], [0.0, 0.0], [7.0, 7.0], [9.0, 9.0]]])
    # t = 2 uses h_1 = (1,1) vs E[1] = (1,0): ||(0,1)||² = 1
    # t = 3 uses h_2 = (0,0) vs E[2] = (0,2): ||(0,-2)||² = 4
    # L_pe = mean(1, 4) / D = 2.5 / 2 = 1.25
    loss = perception_loss(hidden, identity_projection(2), CODEBOOK, mask, codes, alignment="next_token")
    assert loss.item() == pytest.approx(1.25)
    # same_position: t = 2 uses h_2 = (0,0) vs (1,0): 1 ; t = 3 uses h_3 = (7,7) vs (0,2): 49 + 25 = 74
    # L_pe = (1 + 74) / 2 / 2 = 18.75
    same = perception_loss(hidden, identity_projection(2), CODEBOOK, mask, codes, alignment="same_position")
    assert same.item() == pytest.approx(18.75)


def test_prompt_images_and_empty_batches_give_zero() -> None:
    labels = torch.tensor([[-100, -100, -100, 10, 2]])  # a prompt image is masked to -100
    mask, codes = image_label_targets(labels, LAYOUT)
    projection = identity_projection(3)
    loss = perception_loss(torch.randn(1, 5, 3), projection, CODEBOOK, mask, codes, alignment="next_token")
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()  # connected to W, gradient exactly 0
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() == 0


def test_pesft_loss_sums_parts_and_trains_projection_not_codebook() -> None:
    generator = torch.Generator().manual_seed(1)
    labels = torch.tensor([[-100, 9, 5, 7, 8, 12], [-100, -100, 10, 11, 2, -100]])
    logits = torch.randn(2, 6, 14, generator=generator, requires_grad=True)
    hidden = torch.randn(2, 6, 3, generator=generator, requires_grad=True)
    projection = torch.nn.Linear(3, 2)
    codebook = CODEBOOK.clone().requires_grad_(True)
    parts = pesft_loss(
        logits, labels, hidden, projection, codebook, LAYOUT, perception_weight=0.5, alignment="next_token"
    )
    torch.testing.assert_close(parts.total, parts.cross_entropy + 0.5 * parts.perception)
    assert parts.perception.item() > 0
    parts.total.backward()
    assert projection.weight.grad.abs().sum() > 0
    assert hidden.grad[0, 1:3].abs().sum() > 0  # states that predict the two image tokens
    assert codebook.grad is None  # E stays frozen
