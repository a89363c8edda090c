"""Next-token logits with image tokens left open, for training and for generation.

Upstream ``ChameleonForConditionalGeneration.forward`` overwrites the logits of every image
token with the dtype's minimum, so an image token's log-probability is ~-inf, the built-in
loss on image-token labels is inf and ``generate`` can never emit an image. Omni-R1 trains
and samples image tokens (PeSFT's L_CE over assistant image tokens, PeRPO's rollouts), so
this module computes the logits itself from the decoder's hidden states and ``lm_head``
without touching transformers:

- :func:`forward_logits` for training and log-probs: logits [B, L, V] and the final-layer
  hidden states [B, L, D] (PeSFT's perception loss reads h_t, REFERENCE §4).
- :class:`OmniChameleonForConditionalGeneration`, a subclass whose ``forward`` keeps the
  image logits; HF ``generate`` (KV cache included) works through it unchanged. An already
  loaded instance is switched in place with :func:`with_image_logits`;
  ``OmniChameleonForConditionalGeneration.from_pretrained`` loads one directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import ChameleonForConditionalGeneration
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast


@dataclass
class LogitsOutput:
    logits: torch.Tensor  # [B, L_kept, V]
    hidden_states: torch.Tensor  # [B, L, D] final-layer (normed) hidden states
    past_key_values: Cache | None
    all_hidden_states: tuple[torch.Tensor, ...] | None = None  # when output_hidden_states
    attentions: tuple[torch.Tensor, ...] | None = None  # when output_attentions


def suppress_image_logits(model: ChameleonForConditionalGeneration, logits: torch.Tensor) -> None:
    """Upstream behaviour, in place: every image token's logit set to the dtype minimum."""
    image_tokens = model.model.vocabulary_mapping.image_tokens
    logits[:, :, image_tokens] = torch.finfo(logits.dtype).min


def forward_logits(
    model: ChameleonForConditionalGeneration,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
    *,
    position_ids: torch.Tensor | None = None,
    past_key_values: Cache | None = None,
    pixel_values: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    use_cache: bool | None = False,
    logits_to_keep: int | torch.Tensor = 0,
    keep_image_logits: bool = True,
    **kwargs: Any,
) -> LogitsOutput:
    """Run the decoder and the LM head, image-token logits kept unless asked otherwise.

    Args:
        model: a Chameleon model (plain or :class:`OmniChameleonForConditionalGeneration`).
        input_ids: token ids [B, L].
        attention_mask: 1 for real tokens, 0 for padding [B, L] (or None).
        position_ids, past_key_values, pixel_values, inputs_embeds, use_cache: passed to
            ``model.model`` as upstream does.
        logits_to_keep: 0 keeps all positions, ``n`` the last n, a tensor the given indices.
        keep_image_logits: False reproduces upstream's suppression (for comparisons).
        **kwargs: further keyword arguments for the decoder (e.g. attention kwargs).

    Returns:
        :class:`LogitsOutput` with logits [B, L_kept, V] in the model's dtype, hidden states
        [B, L, D] and the cache when ``use_cache``.
    """
    outputs = model.model(
        input_ids=input_ids,
        pixel_values=pixel_values,
        attention_mask=attention_mask,
        position_ids=position_ids,
        past_key_values=past_key_values,
        inputs_embeds=inputs_embeds,
        use_cache=use_cache,
        **kwargs,
    )
    hidden_states = outputs.last_hidden_state  # [B, L, D]
    kept = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
    logits = model.lm_head(hidden_states[:, kept, :])  # [B, L_kept, V]
    if not keep_image_logits:
        suppress_image_logits(model, logits)
    return LogitsOutput(
        logits=logits,
        hidden_states=hidden_states,
        past_key_values=outputs.past_key_values,
        all_hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
    )


class OmniChameleonForConditionalGeneration(ChameleonForConditionalGeneration):
    """Chameleon whose forward leaves image-token logits alone (same weights, same names).

    Only ``forward`` differs from upstream; ``generate``, the KV cache and
    ``prepare_inputs_for_generation`` are inherited.
    """

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        out = forward_logits(
            self,
            input_ids,
            attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            pixel_values=pixel_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        logits = out.logits  # [B, L_kept, V]
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.all_hidden_states,
            attentions=out.attentions,
        )


def with_image_logits(model: ChameleonForConditionalGeneration) -> OmniChameleonForConditionalGeneration:
    """Switch a loaded Chameleon instance, in place, to the image-logit-keeping forward.

    Only the instance's class changes (to :class:`OmniChameleonForConditionalGeneration`);
    parameters, buffers, device and dtype stay as they are. Idempotent.

    Raises:
        TypeError: ``model`` is not a ``ChameleonForConditionalGeneration``.
    """
    if isinstance(model, OmniChameleonForConditionalGeneration):
        return model
    if type(model) is not ChameleonForConditionalGeneration:
        raise TypeError(
            f"with_image_logits expects a ChameleonForConditionalGeneration, got {type(model).__name__}"
        )
    model.__class__ = OmniChameleonForConditionalGeneration
    return model


def keeps_image_logits(model: Any) -> bool:
    return isinstance(model, OmniChameleonForConditionalGeneration)
