"""Name → function tables for every reward variant, and one batch scorer built from a config.

``params.yaml`` ``reward`` names the variants; :func:`score_batch` is what PeRPO calls
(and what a verl reward manager wraps): text rewards per response, the perception reward
for the whole batch at once, then the combination.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from omni_r1.config import RewardConfig
from omni_r1.model.layout import TokenLayout
from omni_r1.rewards.accuracy import (
    AccuracyResult,
    AccuracySettings,
    AnswerType,
    GradeRequest,
    grade_response,
    grade_response_strict,
    grade_responses,
    grade_responses_strict,
)
from omni_r1.rewards.combined import COMBINATIONS, RewardWeights, add_fidelity_term
from omni_r1.rewards.format import official_format_reward, trajectory_format_reward
from omni_r1.rewards.perception import AGGREGATIONS, SCORE_MAPS, lookup, perception_score

AccuracyGrader = Callable[..., AccuracyResult]
ACCURACY_VARIANTS: dict[str, AccuracyGrader] = {
    "appendix_b": grade_response,  # ordered checks with partial credit for close text
    "strict": grade_response_strict,  # the same checks, every score 0 or 1
}
BatchGrader = Callable[[Sequence[GradeRequest], AccuracySettings], list[AccuracyResult]]
ACCURACY_BATCH_VARIANTS: dict[str, BatchGrader] = {  # the same variants, a batch at a time
    "appendix_b": grade_responses,
    "strict": grade_responses_strict,
}
FORMAT_VARIANTS: dict[str, Callable[[Any], float]] = {
    "trajectory": trajectory_format_reward,
    "official": official_format_reward,
}
PERCEPTION_MAPS = SCORE_MAPS
PERCEPTION_AGGREGATIONS = AGGREGATIONS
REWARD_COMBINATIONS = COMBINATIONS


def accuracy_settings(cfg: RewardConfig) -> AccuracySettings:
    return AccuracySettings(
        partial_credit_threshold=cfg.partial_credit_threshold,
        symbolic_timeout_s=cfg.symbolic_timeout_s,
        grader_time_limit_s=cfg.grader_time_limit_s,
        grader_memory_limit_mb=cfg.grader_memory_limit_mb,
    )


def accuracy_grader(cfg: RewardConfig) -> Callable[..., AccuracyResult]:
    """``grader(prediction_text, gold, choices=(), answer_type=None) -> AccuracyResult``.

    The single grader used by PeRPO and by the offline evaluation judge.
    """
    grade = lookup(ACCURACY_VARIANTS, cfg.accuracy, "accuracy variant")
    settings = accuracy_settings(cfg)

    def grader(
        prediction_text: Any,
        gold: Any,
        choices: Sequence[str] = (),
        answer_type: AnswerType | None = None,
    ) -> AccuracyResult:
        return grade(prediction_text, gold, settings, choices, answer_type)

    return grader


def accuracy_batch_grader(cfg: RewardConfig) -> Callable[[Sequence[GradeRequest]], list[AccuracyResult]]:
    """``grade(requests) -> results``: :func:`accuracy_grader` for a batch, the formulas of
    the whole batch sent to the symbolic worker together."""
    grade = lookup(ACCURACY_BATCH_VARIANTS, cfg.accuracy, "accuracy variant")
    settings = accuracy_settings(cfg)
    return lambda requests: grade(requests, settings)


@dataclass(frozen=True)
class RewardBatch:
    """Every part of the reward, [B] each, plus the accuracy reasons for logging."""

    reward: torch.Tensor
    accuracy: torch.Tensor
    format: torch.Tensor
    perception: torch.Tensor  # NaN where has_image is False
    has_image: torch.Tensor
    accuracy_reasons: list[str]
    fidelity: torch.Tensor | None = None  # [B] mean fidelity of scored images (NaN: none); None when off
    accuracy_timeouts: list[int] = field(default_factory=list)  # math-verify timeouts per response


def score_batch(
    cfg: RewardConfig,
    texts: Sequence[str],
    golds: Sequence[str],
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    codebook: torch.Tensor,
    layout: TokenLayout,
    choices: Sequence[Sequence[str]] | None = None,
    answer_types: Sequence[AnswerType | None] | None = None,
    squared_distances: torch.Tensor | None = None,
    fidelity: torch.Tensor | None = None,
) -> RewardBatch:
    """Score B responses: R = combination(acc, fmt, pe) as named in ``cfg`` (+ w_fid·F).

    Paper §4.2, Appendix B.

    Args:
        texts: B decoded responses (image segments shown as ``<image>``).
        golds: B reference answers.
        response_ids, response_mask: [B, L] generated ids and their mask.
        codebook: [K, D] frozen VQ codebook.
        choices, answer_types: per-response options and answer types (optional).
        squared_distances: optional [K, K] table (see ``codebook_squared_distances``).
        fidelity: optional [B] mean fidelity of each response's scored images (NaN: none),
            from :func:`omni_r1.rewards.fidelity.score_fidelity`; adds ``reward.fidelity_weight``
            times it. Callers leave it None when the weight is 0, so nothing is computed.
    """
    grade = accuracy_batch_grader(cfg)
    format_reward = lookup(FORMAT_VARIANTS, cfg.format, "format variant")
    combine = lookup(REWARD_COMBINATIONS, cfg.combination, "reward combination")
    count = len(texts)
    choices = choices or [()] * count
    answer_types = answer_types or [None] * count
    graded = grade(
        [GradeRequest(t, g, c, a) for t, g, c, a in zip(texts, golds, choices, answer_types, strict=True)]
    )
    dtype = codebook.dtype if codebook.is_floating_point() else torch.float32
    accuracy = torch.tensor([g.score for g in graded], dtype=dtype)  # [B]
    fmt = torch.tensor([format_reward(t) for t in texts], dtype=dtype)  # [B]
    perception = perception_score(
        response_ids, response_mask, codebook, layout,
        tau=cfg.tau, score_map=cfg.perception_map, aggregation=cfg.aggregation,
        squared_distances=squared_distances,
    )  # fmt: skip
    weights = RewardWeights(cfg.accuracy_weight, cfg.format_weight, cfg.perception_weight)
    score = perception.score.to(dtype).cpu()
    has_image = perception.has_image.cpu()
    reward = combine(accuracy, fmt, score, has_image, weights)  # [B]
    if fidelity is not None:
        reward = add_fidelity_term(reward, fidelity, cfg.fidelity_weight)
    return RewardBatch(
        reward=reward,
        accuracy=accuracy,
        format=fmt,
        perception=score,
        has_image=has_image,
        accuracy_reasons=[g.reason for g in graded],
        fidelity=fidelity,
        accuracy_timeouts=[g.library_timeouts for g in graded],
    )
