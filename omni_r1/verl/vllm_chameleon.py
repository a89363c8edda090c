"""vLLM classes of the plugin (:mod:`omni_r1.verl.vllm_plugin`); importable only where vLLM is.

- :class:`OmniVllmChameleon`: vLLM's Chameleon with the image-token logits left open;
- :class:`InterleaveLogitsProcessor`: the interleave grammar as a vLLM v1 logits processor,
  one :class:`~omni_r1.verl.vllm_plugin.InterleaveRequest` per opted-in request.

Written against vLLM 0.24 (the version ``verl[vllm]==0.9.1`` pins); not run on the CPU stack.
"""

from __future__ import annotations

import torch
from vllm.model_executor.models.chameleon import ChameleonForConditionalGeneration
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from omni_r1.verl.vllm_plugin import layout_of, request_processor


class OmniVllmChameleon(ChameleonForConditionalGeneration):
    """vLLM's Chameleon whose ``compute_logits`` does not mask image tokens."""

    def compute_logits(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states, *args, **kwargs)


class InterleaveLogitsProcessor(AdapterLogitsProcessor):
    """Per-request interleave grammar (requests opt in through ``extra_args``)."""

    def __init__(self, vllm_config, device, is_pin_memory):
        super().__init__(vllm_config, device, is_pin_memory)
        self.layout = layout_of(vllm_config.model_config.model)

    def is_argmax_invariant(self) -> bool:
        return False  # it forbids tokens, so greedy decoding changes too

    def new_req_logits_processor(self, params):
        return request_processor(self.layout, params.extra_args, params.max_tokens)
