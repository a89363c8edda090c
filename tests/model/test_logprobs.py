"""token_logprobs against a naive per-position softmax in float64."""

from __future__ import annotations

import math

import pytest
import torch

from omni_r1.model.logits import forward_logits
from omni_r1.model.logprobs import logprobs_from_logits, token_logprobs


def _naive(logits: torch.Tensor, targets: torch.Tensor, temperature: float):
    """Loop over positions; p = exp(z/T) / sum exp(z/T) in float64."""
    batch, length, _ = logits.shape
    logp = torch.zeros(batch, length, dtype=torch.float64)
    entropy = torch.zeros(batch, length, dtype=torch.float64)
    for b in range(batch):
        for t in range(length):
            z = logits[b, t].double() / temperature
            p = torch.exp(z - z.max())
            p = p / p.sum()
            logp[b, t] = math.log(p[targets[b, t]].item())
            entropy[b, t] = -sum(q * math.log(q) for q in p.tolist() if q > 0)
    return logp, entropy


def _sequences(layout, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(layout.answer_close_id + 1, layout.vocab_size, (2, 5), generator=generator)
    codes = torch.randint(0, layout.num_codes, (2, 4), generator=generator)
    boi = torch.full((2, 1), layout.boi_id)
    return torch.cat([text, boi, layout.codes_to_ids(codes)], dim=1)  # [2, 10]


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_token_logprobs_match_naive_reference(tiny_chameleon, temperature):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids = _sequences(layout)
    with torch.no_grad():
        logp, entropy = token_logprobs(model, input_ids, temperature=temperature, with_entropy=True)
        logits = forward_logits(model, input_ids).logits
    expected_logp, expected_entropy = _naive(logits[:, :-1], input_ids[:, 1:], temperature)
    assert logp.shape == entropy.shape == (2, input_ids.shape[1] - 1)
    torch.testing.assert_close(logp.double(), expected_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), expected_entropy, atol=1e-5, rtol=1e-5)
    image_targets = layout.is_image_token(input_ids[:, 1:])
    assert image_targets.any() and torch.isfinite(logp[image_targets]).all()


def test_target_mask_zeroes_non_targets_and_attention_mask_is_used(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids = _sequences(layout, seed=1)
    attention_mask = torch.ones_like(input_ids)
    target_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    target_mask[:, 6:] = True
    with torch.no_grad():
        full, _ = token_logprobs(model, input_ids, attention_mask, temperature=1.0)
        masked, entropy = token_logprobs(model, input_ids, attention_mask, target_mask, temperature=1.0, with_entropy=True)
    assert torch.equal(masked[:, :5], torch.zeros(2, 5))
    assert torch.equal(entropy[:, :5], torch.zeros(2, 5))
    torch.testing.assert_close(masked[:, 5:], full[:, 5:])
    # Right padding must not change the scores of the real tokens.
    padded = torch.cat([input_ids, torch.full((2, 3), layout.pad_id)], dim=1)
    padded_mask = torch.cat([attention_mask, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        padded_logp, _ = token_logprobs(model, padded, padded_mask, temperature=1.0)
    torch.testing.assert_close(padded_logp[:, : full.shape[1]], full, atol=1e-5, rtol=1e-5)


def test_logprobs_from_logits_gradient_and_bad_temperature():
    logits = torch.randn(2, 3, 7, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3))
    logp, entropy = logprobs_from_logits(logits, targets, temperature=0.5, with_entropy=True)
    (logp.sum() + entropy.sum()).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert (entropy >= 0).all() and (entropy <= math.log(7) + 1e-5).all()
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, targets, temperature=0.0)
