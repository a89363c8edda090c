"""Image-token logits: upstream suppresses them; forward_logits and the subclass do not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import ChameleonForConditionalGeneration

from omni_r1.model.logits import (
    OmniChameleonForConditionalGeneration,
    forward_logits,
    keeps_image_logits,
    with_image_logits,
)


def _image_label_batch(layout, batch: int = 2, length: int = 12, seed: int = 0):
    """Text prompt then one image's tokens as labels."""
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(layout.answer_close_id + 1, layout.vocab_size, (batch, 4), generator=generator)
    codes = torch.randint(0, layout.num_codes, (batch, length - 5), generator=generator)
    boi = torch.full((batch, 1), layout.boi_id)
    input_ids = torch.cat([text, boi, layout.codes_to_ids(codes)], dim=1)  # [B, L]
    labels = input_ids.clone()
    labels[:, :5] = -100  # only image tokens are targets
    return input_ids, labels


def test_upstream_forward_makes_image_loss_infinite(tiny_chameleon):
    """The problem this module solves: upstream logits give inf CE on image labels."""
    input_ids, labels = _image_label_batch(tiny_chameleon.layout)
    loss = tiny_chameleon.model(input_ids=input_ids, labels=labels).loss
    assert not torch.isfinite(loss)


def test_image_label_loss_is_finite_and_reaches_image_rows_of_lm_head(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, labels = _image_label_batch(layout)
    logits = forward_logits(model, input_ids).logits  # [B, L, V]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    assert torch.isfinite(loss)
    loss.backward()
    grad = model.lm_head.weight.grad  # [V, D]
    targets = labels[labels >= 0].unique()
    assert layout.is_image_token(targets).all()
    assert (grad[targets].abs().sum(-1) > 0).all()


def test_subclass_loss_matches_forward_logits_and_is_finite(tiny_chameleon):
    model = with_image_logits(tiny_chameleon.model)
    input_ids, labels = _image_label_batch(tiny_chameleon.layout)
    out = model(input_ids=input_ids, labels=labels)
    assert torch.isfinite(out.loss)
    reference = forward_logits(model, input_ids).logits
    torch.testing.assert_close(out.logits, reference)
    out.loss.backward()
    image_rows = tiny_chameleon.layout.codes_to_ids(torch.arange(tiny_chameleon.layout.num_codes))
    assert model.lm_head.weight.grad[image_rows].abs().sum() > 0


def test_forward_logits_differs_from_upstream_only_on_image_columns(tiny_chameleon):
    model, layout = tiny_chameleon.model, tiny_chameleon.layout
    input_ids, _ = _image_label_batch(layout)
    with torch.no_grad():
        upstream = model(input_ids=input_ids).logits  # [B, L, V]
        ours = forward_logits(model, input_ids)
        suppressed = forward_logits(model, input_ids, keep_image_logits=False).logits
    image = layout.is_image_token(torch.arange(layout.vocab_size))  # [V]
    torch.testing.assert_close(ours.logits[..., ~image], upstream[..., ~image])
    assert torch.isfinite(ours.logits[..., image]).all()
    assert (ours.logits[..., image] > torch.finfo(ours.logits.dtype).min / 2).all()
    torch.testing.assert_close(suppressed, upstream)
    assert ours.hidden_states.shape == (*input_ids.shape, model.config.hidden_size)


def test_kv_cache_steps_match_full_forward(tiny_chameleon):
    model = with_image_logits(tiny_chameleon.model)
    input_ids, _ = _image_label_batch(tiny_chameleon.layout, length=10)
    with torch.no_grad():
        full = model(input_ids=input_ids).logits  # [B, L, V]
        step = model(input_ids=input_ids[:, :6], use_cache=True)
        cache, incremental = step.past_key_values, [step.logits]
        for position in range(6, input_ids.shape[1]):
            step = model(input_ids=input_ids[:, position : position + 1], past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            incremental.append(step.logits)
    torch.testing.assert_close(torch.cat(incremental, dim=1), full, atol=1e-5, rtol=1e-4)


def test_with_image_logits_switches_class_in_place_and_keeps_weights(tiny_chameleon):
    model = tiny_chameleon.model
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert not keeps_image_logits(model)
    switched = with_image_logits(model)
    assert switched is model and keeps_image_logits(model)
    assert isinstance(model, ChameleonForConditionalGeneration)
    assert with_image_logits(model) is model
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_with_image_logits_rejects_other_models():
    with pytest.raises(TypeError, match="ChameleonForConditionalGeneration"):
        with_image_logits(torch.nn.Linear(2, 2))


def test_subclass_loads_upstream_checkpoint(tiny_chameleon, tmp_path):
    tiny_chameleon.model.save_pretrained(tmp_path)
    loaded = OmniChameleonForConditionalGeneration.from_pretrained(tmp_path)
    input_ids, _ = _image_label_batch(tiny_chameleon.layout)
    with torch.no_grad():
        expected = forward_logits(tiny_chameleon.model, input_ids).logits
        torch.testing.assert_close(loaded(input_ids=input_ids).logits, expected)
