"""PeRPO optimisation math (paper §4.2, Table 6): group-relative advantages and the PPO loss.

Pure tensor functions, no trainer state. Each matches the verl 0.9.1 function of the same
role (``verl.trainer.ppo.core_algos``), and ``tests/training/test_grpo.py`` checks that on
the same tensors, so the local engine and the verl engine optimise the same objective:

- advantages: GRPO ``A_i = (r_i − mean_G)/(std_G + ε)`` (unbiased std; without the std
  when ``norm_adv_by_std`` is False, i.e. Dr.GRPO; a group of one gets mean 0, std 1 as in
  verl) and RLOO; registry :data:`ADVANTAGE_ESTIMATORS`.
- group filter (DAPO): keep groups whose rewards are not all equal.
- policy loss: PPO clipped surrogate with separate low/high clip (clip-higher, DAPO) and
  dual-clip for negative advantages (Ye et al. 2020) as verl's ``vanilla`` loss.
- KL to the frozen reference: k1, abs, k2/mse, k3/low_var_kl; registry :data:`KL_ESTIMATORS`.
- entropy bonus and loss aggregation modes; registry :data:`LOSS_AGGREGATIONS`.
- :func:`ppo_loss` = pg_loss − entropy_coeff·entropy + kl_loss_coef·kl, with metrics.

Shapes: B responses (B = prompts × G responses per prompt), L response tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

LOG_RATIO_CLAMP = 20.0  # verl clamps log-ratios to ±20 before exp
KL_CLAMP = 10.0  # verl clamps the k3 estimate to ±10


def _lookup(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None


# ---------------------------------------------------------------------------------------------
# Groups and advantages
# ---------------------------------------------------------------------------------------------


def group_ids(index: object, device: torch.device | None = None) -> torch.Tensor:
    """Map arbitrary group labels (prompt uids, ints) to 0..G-1. Returns [B] long."""
    if isinstance(index, torch.Tensor):
        return torch.unique(index, return_inverse=True)[1].to(device or index.device)
    labels = list(index)  # strings or numbers, e.g. a numpy array of uids
    first_seen: dict[object, int] = {}
    ids = [first_seen.setdefault(label, len(first_seen)) for label in labels]
    return torch.tensor(ids, dtype=torch.long, device=device)


def group_statistics(
    scores: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group mean, unbiased std and size, gathered back to each member.

    Args:
        scores: [B] sequence rewards.
        groups: [B] group id in 0..G-1.

    Returns:
        (mean [B], std [B], size [B]); std is NaN-free (0 for a group of one).
    """
    num_groups = int(groups.max()) + 1 if groups.numel() else 0
    size = torch.bincount(groups, minlength=num_groups).to(scores.dtype)  # [G]
    total = scores.new_zeros(num_groups).index_add_(0, groups, scores)  # [G]
    mean = total / size  # [G]
    squares = scores.new_zeros(num_groups).index_add_(0, groups, (scores - mean[groups]) ** 2)  # [G]
    std = torch.sqrt(squares / (size - 1).clamp(min=1))  # [G] unbiased
    return mean[groups], std[groups], size[groups]


def grpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: object,
    epsilon: float,
    norm_adv_by_std: bool,
) -> torch.Tensor:
    """GRPO advantage A_i = (r_i − mean_G)/(std_G + ε), broadcast over the response tokens.

    Paper §4.2, Table 6.

    Args:
        token_level_rewards: [B, L] reward (the outcome reward sits on one token).
        response_mask: [B, L] 1 on response tokens.
        index: B group labels (one per prompt).
        epsilon: ε added to std_G.
        norm_adv_by_std: divide by std_G + ε (GRPO) or not (Dr.GRPO).

    Returns:
        [B, L] advantages, zero outside the mask. A group of one has mean 0 and std 1.
    """
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # [B]
        groups = group_ids(index, scores.device)  # [B]
        mean, std, size = group_statistics(scores, groups)  # [B] each
        single = size == 1
        mean = torch.where(single, torch.zeros_like(mean), mean)
        std = torch.where(single, torch.ones_like(std), std)
        centred = scores - mean  # [B]
        advantage = centred / (std + epsilon) if norm_adv_by_std else centred  # [B]
        return advantage.unsqueeze(-1) * response_mask  # [B, L]


def rloo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: object,
    epsilon: float,
    norm_adv_by_std: bool,
) -> torch.Tensor:
    """RLOO: A_i = r_i − mean_{j≠i} r_j = n/(n−1)·(r_i − mean_G); 0 baseline for a group of one.

    An alternative to the GRPO advantage of paper §4.2.

    ``epsilon`` and ``norm_adv_by_std`` are accepted for a common signature and unused.
    """
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # [B]
        groups = group_ids(index, scores.device)  # [B]
        mean, _, size = group_statistics(scores, groups)  # [B]
        scale = size / (size - 1).clamp(min=1)  # [B]
        advantage = torch.where(size > 1, scores * scale - mean * scale, scores)  # [B]
        return advantage.unsqueeze(-1) * response_mask  # [B, L]


AdvantageEstimator = Callable[[torch.Tensor, torch.Tensor, object, float, bool], torch.Tensor]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": grpo_outcome_advantage,
    "rloo": rloo_outcome_advantage,
}


def mixed_outcome_mask(scores: torch.Tensor, index: object) -> torch.Tensor:
    """DAPO dynamic sampling: keep responses whose group scores are not all equal.

    Paper Table 6, DAPO recipe.

    A group with std(r) = 0 gives every member a zero advantage, so it carries no learning
    signal. As in verl's DAPO recipe, a group of one response is kept.

    Args:
        scores: [B] the outcome each group must vary in (``perpo.filter_metric``: accuracy or
            the total reward).
        index: B group labels.

    Returns:
        [B] bool, True for responses to keep.
    """
    groups = group_ids(index, scores.device)  # [B]
    _, std, size = group_statistics(scores.double(), groups)  # [B]
    return (std > 0) | (size == 1)


# ---------------------------------------------------------------------------------------------
# Aggregation, KL, entropy
# ---------------------------------------------------------------------------------------------


def _masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of values where mask is set; NaNs outside the mask are ignored."""
    kept = torch.where(mask.bool(), values, torch.zeros_like(values)) * mask
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_sum(values, mask) / (mask.sum() + 1e-8)


def token_mean(loss_mat: torch.Tensor, loss_mask: torch.Tensor, horizon: int | None) -> torch.Tensor:
    """Mean over all unmasked tokens of the batch."""
    return _masked_sum(loss_mat, loss_mask) / loss_mask.sum()


def seq_mean_token_mean(loss_mat: torch.Tensor, loss_mask: torch.Tensor, horizon: int | None) -> torch.Tensor:
    """Mean over sequences of each sequence's token mean (empty sequences excluded)."""
    tokens = loss_mask.sum(dim=-1)  # [B]
    per_seq = _masked_sum(loss_mat, loss_mask, dim=-1) / (tokens + 1e-8)  # [B]
    has_tokens = (tokens > 0).to(loss_mat.dtype)  # [B]
    return _masked_sum(per_seq, has_tokens) / has_tokens.sum()


def seq_mean_token_sum(loss_mat: torch.Tensor, loss_mask: torch.Tensor, horizon: int | None) -> torch.Tensor:
    """Mean over sequences of each sequence's token sum."""
    per_seq = _masked_sum(loss_mat, loss_mask, dim=-1)  # [B]
    has_tokens = (loss_mask.sum(dim=-1) > 0).to(loss_mat.dtype)  # [B]
    return _masked_sum(per_seq, has_tokens) / has_tokens.sum()


def seq_mean_token_sum_norm(loss_mat: torch.Tensor, loss_mask: torch.Tensor, horizon: int | None) -> torch.Tensor:
    """seq-mean-token-sum divided by a constant horizon (default: the padded length L; Dr.GRPO)."""
    return seq_mean_token_sum(loss_mat, loss_mask, horizon) / (horizon or loss_mask.shape[-1])


LossAggregation = Callable[[torch.Tensor, torch.Tensor, "int | None"], torch.Tensor]
LOSS_AGGREGATIONS: dict[str, LossAggregation] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum": seq_mean_token_sum,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
}


def aggregate_loss(
    loss_mat: torch.Tensor, loss_mask: torch.Tensor, mode: str, horizon: int | None = None
) -> torch.Tensor:
    """[B, L] token losses → scalar, by the named mode (verl ``agg_loss`` with dp_size 1).

    Paper Table 6 loss aggregation.
    """
    return _lookup(LOSS_AGGREGATIONS, mode, "loss aggregation mode")(loss_mat, loss_mask, horizon)


def kl_k1(log_prob: torch.Tensor, ref_log_prob: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref. [B, L]."""
    return log_prob - ref_log_prob


def kl_abs(log_prob: torch.Tensor, ref_log_prob: torch.Tensor) -> torch.Tensor:
    return (log_prob - ref_log_prob).abs()


def kl_k2(log_prob: torch.Tensor, ref_log_prob: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (log π − log π_ref)². [B, L]."""
    return 0.5 * (log_prob - ref_log_prob).square()


def kl_k3(log_prob: torch.Tensor, ref_log_prob: torch.Tensor) -> torch.Tensor:
    """k3 (low_var_kl) = exp(log π_ref − log π) − (log π_ref − log π) − 1, clamped as verl. [B, L].

    Paper Table 6.
    """
    log_ratio = torch.clamp(ref_log_prob - log_prob, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)
    return torch.clamp(torch.exp(log_ratio) - log_ratio - 1, min=-KL_CLAMP, max=KL_CLAMP)


def _straight_through(estimator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """Value of ``estimator``, gradient of k2 (verl's ``k3+``: unbiased KL gradient)."""

    def estimate(log_prob: torch.Tensor, ref_log_prob: torch.Tensor) -> torch.Tensor:
        backward = kl_k2(log_prob, ref_log_prob)
        return backward - backward.detach() + estimator(log_prob, ref_log_prob).detach()

    return estimate


KlEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KL_ESTIMATORS: dict[str, KlEstimator] = {
    "k1": kl_k1,
    "kl": kl_k1,
    "abs": kl_abs,
    "k2": kl_k2,
    "mse": kl_k2,
    "k3": kl_k3,
    "low_var_kl": kl_k3,
    "k3+": _straight_through(kl_k3),
    "low_var_kl+": _straight_through(kl_k3),
}


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate to the frozen reference. [B, L].

    Paper Table 6 KL loss.
    """
    return _lookup(KL_ESTIMATORS, kind, "KL estimator")(log_prob, ref_log_prob)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Categorical entropy per position: logsumexp(z) − Σ softmax(z)·z. [..., V] → [...]."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


# ---------------------------------------------------------------------------------------------
# PPO clipped surrogate and the full loss
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor  # scalar
    clip_fraction: torch.Tensor  # share of tokens where the clipped term was active
    clip_fraction_lower: torch.Tensor  # share where dual-clip bound the loss (A < 0)
    approx_kl: torch.Tensor  # mean of log π_old − log π over the mask


def clipped_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_ratio_low: float,
    clip_ratio_high: float,
    clip_ratio_c: float | None,
    loss_agg_mode: str,
) -> PolicyLoss:
    """PPO clipped surrogate with clip-higher and dual-clip (verl ``vanilla``).

    Paper §4.2, Table 6 clip 0.20 / 0.28.

    loss_t = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high)), and for A < 0 additionally
    min(·, −A·c) (dual-clip), with ρ = exp(log π − log π_old).

    Args:
        old_log_prob, log_prob, advantages, response_mask: [B, L].
        clip_ratio_low, clip_ratio_high: ε_low, ε_high.
        clip_ratio_c: dual-clip bound c > 1; None disables dual-clip.
        loss_agg_mode: name in :data:`LOSS_AGGREGATIONS`.
    """
    log_ratio = torch.clamp(log_prob - old_log_prob, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)  # [B, L]
    ratio = torch.exp(log_ratio)  # [B, L]
    unclipped = -advantages * ratio  # [B, L]
    clipped = -advantages * torch.clamp(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)  # [B, L]
    pessimistic = torch.maximum(unclipped, clipped)  # [B, L]
    clip_fraction = masked_mean(torch.gt(clipped, unclipped).float(), response_mask)
    if clip_ratio_c is None:
        token_loss = pessimistic
        clip_fraction_lower = torch.zeros_like(clip_fraction)
    else:
        bound = -advantages * clip_ratio_c  # [B, L]
        negative = (advantages < 0).float()  # [B, L]
        clip_fraction_lower = masked_mean(torch.gt(pessimistic, bound).float() * negative, response_mask)
        token_loss = torch.where(advantages < 0, torch.minimum(bound, pessimistic), pessimistic)
    return PolicyLoss(
        loss=aggregate_loss(token_loss, response_mask, loss_agg_mode),
        clip_fraction=clip_fraction,
        clip_fraction_lower=clip_fraction_lower,
        approx_kl=masked_mean(-log_ratio, response_mask),
    )


def ppo_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_ratio_low: float,
    clip_ratio_high: float,
    clip_ratio_c: float | None,
    loss_agg_mode: str,
    entropy_coeff: float,
    kl_loss_coef: float,
    kl_loss_type: str,
    ref_log_prob: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The PeRPO actor loss: pg_loss − entropy_coeff·H + kl_loss_coef·KL(π ‖ π_ref).

    Paper §4.2, Table 6.

    Args:
        log_prob: [B, L] log π_θ of the sampled tokens (with grad).
        old_log_prob: [B, L] log π_old (rollout policy).
        advantages: [B, L] from an estimator in :data:`ADVANTAGE_ESTIMATORS`.
        response_mask: [B, L].
        ref_log_prob: [B, L] frozen reference log-probs; None skips the KL term.
        entropy: [B, L] token entropies (see :func:`entropy_from_logits`); None skips it.

    Returns:
        (scalar loss, metrics dict of floats).
    """
    policy = clipped_policy_loss(
        old_log_prob, log_prob, advantages, response_mask,
        clip_ratio_low=clip_ratio_low, clip_ratio_high=clip_ratio_high,
        clip_ratio_c=clip_ratio_c, loss_agg_mode=loss_agg_mode,
    )  # fmt: skip
    loss = policy.loss
    metrics = {
        "actor/pg_loss": policy.loss.item(),
        "actor/pg_clipfrac": policy.clip_fraction.item(),
        "actor/pg_clipfrac_lower": policy.clip_fraction_lower.item(),
        "actor/ppo_kl": policy.approx_kl.item(),
    }
    if entropy is not None:
        entropy_loss = aggregate_loss(entropy, response_mask, loss_agg_mode)
        loss = loss - entropy_coeff * entropy_loss
        metrics["actor/entropy"] = entropy_loss.item()
    if ref_log_prob is not None:
        kl_loss = aggregate_loss(kl_penalty(log_prob, ref_log_prob, kl_loss_type), response_mask, loss_agg_mode)
        loss = loss + kl_loss_coef * kl_loss
        metrics["actor/kl_loss"] = kl_loss.item()
    metrics["actor/loss"] = loss.item()
    return loss, metrics
