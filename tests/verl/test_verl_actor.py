"""verl's actor path loads the unmasked Chameleon: finite image log-probs equal to the local engine's."""

from __future__ import annotations

import importlib

import pytest
import torch

from omni_r1.model.logits import OmniChameleonForConditionalGeneration
from omni_r1.model.logprobs import token_logprobs

pytest.importorskip("verl")


def _sequence(layout, generator):
    text = torch.randint(layout.image_token_end + 8, layout.vocab_size, (2, 6), generator=generator)
    codes = torch.randint(0, layout.num_codes, (2, layout.tokens_per_image), generator=generator)
    boi = torch.full((2, 1), layout.boi_id)
    eoi = torch.full((2, 1), layout.eoi_id)
    return torch.cat([text, boi, layout.codes_to_ids(codes), eoi, text], dim=1)  # [2, L]


def test_external_lib_makes_verls_auto_class_load_the_unmasked_model(tiny_checkpoint):
    from transformers import AutoModelForImageTextToText
    from verl.utils.model import get_hf_auto_model_class
    from verl.utils.torch_functional import logprobs_from_logits
    from verl.workers.config import HFModelConfig

    folder, tiny = tiny_checkpoint
    model_config = HFModelConfig(path=str(folder), external_lib="omni_r1.verl.actor")  # imports it
    auto_class = get_hf_auto_model_class(model_config.hf_config)
    assert auto_class is AutoModelForImageTextToText
    actor = auto_class.from_pretrained(str(folder), dtype=torch.float32).eval()
    assert isinstance(actor, OmniChameleonForConditionalGeneration)

    input_ids = _sequence(tiny.layout, torch.Generator().manual_seed(0))  # [2, L]
    with torch.no_grad():
        logits = actor(input_ids=input_ids).logits  # [2, L, V], as verl's actor reads them
        verl_logp = logprobs_from_logits(logits[:, :-1] / 1.0, input_ids[:, 1:])  # [2, L-1]
        local_logp, _ = token_logprobs(tiny.model, input_ids, temperature=1.0)  # [2, L-1]
    image = tiny.layout.is_image_token(input_ids[:, 1:])  # [2, L-1]
    assert image.sum() == 2 * tiny.layout.tokens_per_image
    assert torch.isfinite(verl_logp).all()
    torch.testing.assert_close(verl_logp, local_logp, rtol=1e-5, atol=1e-5)


def test_without_the_external_lib_image_tokens_are_masked(tiny_checkpoint):
    from transformers import (
        AutoModelForImageTextToText,
        ChameleonConfig,
        ChameleonForConditionalGeneration,
    )

    folder, tiny = tiny_checkpoint
    AutoModelForImageTextToText.register(ChameleonConfig, ChameleonForConditionalGeneration, exist_ok=True)
    try:
        plain = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32).eval()
        input_ids = _sequence(tiny.layout, torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = plain(input_ids=input_ids).logits
        image = tiny.layout.is_image_token(input_ids[:, 1:])
        assert (torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, input_ids[:, 1:, None])[..., 0][image] < -1e30).all()
    finally:
        importlib.import_module("omni_r1.verl.actor").register_unmasked_chameleon()
