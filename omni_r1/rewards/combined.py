"""Combined PeRPO reward R (paper §4.2): accuracy, format and perception, weighted.

Two combinations, chosen by name in params.yaml ``reward.combination``; weights
w_acc, w_fmt, w_pe come from params.yaml too:

- ``official`` (public code ``compute_score``, the default)::

      with an image:    R = w_pe·pe + (1 − w_pe)·(w_acc·acc + w_fmt·fmt)
      without an image: R = w_acc·acc + w_fmt·fmt

  with w_acc, w_fmt, w_pe = 0.9, 0.1, 0.05 this is 0.95·(0.9·acc + 0.1·fmt) + 0.05·pe.
- ``paper``: the paper states only that R is a weighted sum of the three rewards and that
  a response without a generated image has no perception term; it gives no weights.
  This variant is the plain sum R = w_acc·acc + w_fmt·fmt + w_pe·pe (the pe term dropped
  without an image), with the same three weights taken from params.yaml.

All functions take [B] tensors; ``perception`` may hold NaN where ``has_image`` is False.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RewardWeights:
    accuracy: float
    format: float
    perception: float


def official_combination(
    accuracy: torch.Tensor,
    format_score: torch.Tensor,
    perception: torch.Tensor,
    has_image: torch.Tensor,
    weights: RewardWeights,
) -> torch.Tensor:
    """R = w_pe·pe + (1 − w_pe)(w_acc·acc + w_fmt·fmt) with an image, else w_acc·acc + w_fmt·fmt.

    Paper §4.2, official code.

    Args:
        accuracy, format_score: [B] in [0, 1].
        perception: [B], NaN allowed where ``has_image`` is False.
        has_image: [B] bool.

    Returns:
        [B] rewards.
    """
    text_part = weights.accuracy * accuracy + weights.format * format_score  # [B]
    pe = torch.nan_to_num(perception, nan=0.0)  # [B]
    with_image = weights.perception * pe + (1.0 - weights.perception) * text_part  # [B]
    return torch.where(has_image, with_image, text_part)


def paper_combination(
    accuracy: torch.Tensor,
    format_score: torch.Tensor,
    perception: torch.Tensor,
    has_image: torch.Tensor,
    weights: RewardWeights,
) -> torch.Tensor:
    """R = w_acc·acc + w_fmt·fmt + w_pe·pe, the pe term only where an image exists. [B].

    Paper §4.2.
    """
    text_part = weights.accuracy * accuracy + weights.format * format_score  # [B]
    pe = torch.where(has_image, torch.nan_to_num(perception, nan=0.0), torch.zeros_like(perception))
    return text_part + weights.perception * pe


Combination = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, RewardWeights], torch.Tensor
]
COMBINATIONS: dict[str, Combination] = {
    "official": official_combination,
    "paper": paper_combination,
}
