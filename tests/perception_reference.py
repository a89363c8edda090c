"""The perception reward as a plain loop, one Python iteration per token and per segment.

The reference the vectorised :func:`omni_r1.rewards.perception.perception_score` is tested
against (``tests/rewards/test_perception.py``) and timed against (``benchmarks/bench_perception.py``).
"""

from __future__ import annotations

import math

import torch

from omni_r1.model.layout import TokenLayout
from omni_r1.rewards.perception import SCORE_MAPS, PerceptionScores


def perception_score_reference(
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    codebook: torch.Tensor,
    layout: TokenLayout,
    *,
    tau: float,
    score_map: str,
    aggregation: str,
) -> PerceptionScores:
    """Straightforward loop version of :func:`~omni_r1.rewards.perception.perception_score`."""
    span, dim = layout.tokens_per_image, codebook.shape[1]
    scores, counts, all_tv, all_index = [], [], [], []
    for row, (ids, mask) in enumerate(zip(response_ids.tolist(), response_mask.tolist(), strict=True)):
        row_scores = []
        for pos, token in enumerate(ids):
            end = pos + span + 1
            if token != layout.boi_id or not mask[pos] or end >= len(ids):
                continue
            body = ids[pos + 1 : end]
            if ids[end] != layout.eoi_id or not all(mask[pos : end + 1]):
                continue
            if not all(layout.image_token_start <= t < layout.image_token_end for t in body):
                continue
            z = codebook[torch.tensor(body) - layout.image_token_start]  # [S, D]
            z = z.view(layout.grid_h, layout.grid_w, dim)  # [H, W, D]
            tv = 0.0
            if layout.grid_w > 1:
                tv += float((z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean())
            if layout.grid_h > 1:
                tv += float((z[1:] - z[:-1]).pow(2).sum(-1).mean())
            tv /= dim
            all_tv.append(tv)
            all_index.append(row)
            row_scores.append(float(SCORE_MAPS[score_map](torch.tensor(tv), tau)))
        counts.append(len(row_scores))
        scores.append(_reduce_list(row_scores, aggregation))
    return PerceptionScores(
        score=torch.tensor(scores, dtype=codebook.dtype),
        has_image=torch.tensor(counts) > 0,
        segment_count=torch.tensor(counts),
        segment_tv=torch.tensor(all_tv, dtype=codebook.dtype),
        segment_batch_index=torch.tensor(all_index, dtype=torch.long),
    )


def _reduce_list(values: list[float], aggregation: str) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
        "median": ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle]),
    }[aggregation]
