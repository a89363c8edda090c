"""vLLM plugin: Chameleon that can emit images, sampled under the interleave grammar.

Stock vLLM's ``ChameleonForConditionalGeneration.compute_logits`` sets every image-token
logit to the dtype's minimum (as transformers does), so a vLLM rollout can never draw an
image. This plugin, installed through the ``vllm.general_plugins`` entry point
(pyproject.toml), re-registers the architecture name with
:class:`omni_r1.verl.vllm_chameleon.OmniVllmChameleon`, whose logits keep image tokens, and
offers the interleave grammar as a per-request logits processor
(``vllm.logits_processors`` entry point): text → BOI → exactly H·W image tokens → EOI →
text, at most ``max_images`` images, no image begun that the token budget cannot finish.

The grammar is :class:`omni_r1.model.generation.InterleavedLogitsProcessor`, the processor
of the local engine's HF ``generate``, run on one request's tokens: one state machine for
both engines. Requests opt in with ``SamplingParams.extra_args[EXTRA_ARG] = max_images``
(:class:`omni_r1.verl.agent_loop.OmniAgentLoop` sets it).

vLLM is not part of the CPU stack: this module imports without it; the vLLM classes live
in :mod:`omni_r1.verl.vllm_chameleon`, imported only inside a vLLM process.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch

from omni_r1.model.generation import InterleavedLogitsProcessor
from omni_r1.model.layout import TokenLayout

ARCHITECTURE = "ChameleonForConditionalGeneration"
MODEL_CLASS = "omni_r1.verl.vllm_chameleon:OmniVllmChameleon"
EXTRA_ARG = "omni_r1_max_images"  # SamplingParams.extra_args key: the request's image cap


class InterleaveRequest:
    """The interleave grammar for one request, called with (generated ids, logits [V]).

    vLLM's per-request logits processors see only the generated tokens; the grammar state
    is derived from them behind a BOS stand-in for the prompt (a PeRPO prompt never ends
    inside an image), so the same :class:`InterleavedLogitsProcessor` decides every mask.
    """

    def __init__(self, layout: TokenLayout, max_images: int | None, max_new_tokens: int | None):
        self.layout = layout
        self.grammar = InterleavedLogitsProcessor(layout, 1, max_images, max_new_tokens)

    def __call__(self, output_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor([[self.layout.bos_id, *output_ids]], device=logits.device)  # [1, 1+n]
        return self.grammar(ids, logits.unsqueeze(0)).squeeze(0)  # [V]


@lru_cache(maxsize=4)
def layout_of(model_dir: str) -> TokenLayout:
    """The :class:`TokenLayout` of the checkpoint vLLM serves (read once per process)."""
    from transformers import AutoConfig, AutoTokenizer

    return TokenLayout.from_model(AutoConfig.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir))


def request_processor(layout: TokenLayout, extra_args: dict[str, Any] | None, max_tokens: int | None):
    """The grammar for a request that opted in through ``extra_args``, else None."""
    if not extra_args or EXTRA_ARG not in extra_args:
        return None
    max_images = extra_args[EXTRA_ARG]
    return InterleaveRequest(layout, None if max_images is None else int(max_images), max_tokens)


def register() -> None:
    """``vllm.general_plugins`` entry point: the image-emitting Chameleon replaces vLLM's."""
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
