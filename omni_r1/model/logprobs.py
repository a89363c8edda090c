"""Per-token log-probabilities and entropies of given sequences, image tokens included.

PeRPO's policy ratio, KL to the reference and entropy bonus (REFERENCE §6) all need
log pi(y_t | y_<t) of the sampled tokens, text and image alike, under the same temperature
that sampled them. The logits come from :func:`omni_r1.model.logits.forward_logits`, so
image tokens are not suppressed.

The full-vocabulary log-softmax is materialised once ([B, L-1, V] in float32); the token
log-probs are gathered from it and the entropy, when asked for, is computed from the same
tensor.
"""

from __future__ import annotations

import torch

from omni_r1.model.logits import forward_logits


def logprobs_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(logits / T) at the target tokens, and optionally the entropy.

    Args:
        logits: next-token logits [B, N, V] (position t predicts ``targets[:, t]``).
        targets: token ids [B, N].
        temperature: T > 0; the distribution is softmax(logits / T).
        with_entropy: also return H_t = -sum_v p_v log p_v.

    Returns:
        ``(logp [B, N], entropy [B, N] or None)``, float32.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits.float()  # [B, N, V]
    if temperature != 1.0:
        scaled = scaled / temperature
    log_probs = torch.log_softmax(scaled, dim=-1)  # [B, N, V], the one full-vocabulary copy
    logp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, N]
    if not with_entropy:
        return logp, None
    entropy = -(log_probs.exp() * log_probs).sum(-1)  # [B, N]
    return logp, entropy


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    target_mask: torch.Tensor | None = None,
    *,
    temperature: float,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of every next token of ``input_ids`` under ``model``, image tokens included.

    Args:
        model: a Chameleon model (image logits are kept whatever its class).
        input_ids: sequences [B, L].
        attention_mask: [B, L], 1 for real tokens (right or left padding).
        target_mask: [B, L] bool/0-1, which tokens count as targets (e.g. the response
            mask, or ``labels != -100``); log-probs and entropies of the others are 0.
        temperature: sampling temperature the tokens were drawn at.
        with_entropy: also return per-position entropies.

    Returns:
        ``(logp [B, L-1], entropy [B, L-1] or None)``: entry t scores ``input_ids[:, t+1]``.
    """
    logits = forward_logits(model, input_ids, attention_mask).logits  # [B, L, V]
    targets = input_ids[:, 1:]  # [B, L-1]
    logp, entropy = logprobs_from_logits(logits[:, :-1], targets, temperature, with_entropy)
    if target_mask is not None:
        keep = target_mask[:, 1:].to(logp.dtype)  # [B, L-1]
        logp = logp * keep
        entropy = entropy * keep if entropy is not None else None
    return logp, entropy
