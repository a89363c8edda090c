"""Interleaved text-and-image generation: a logits-processor state machine and its decoding.

Omni-R1 generates its reasoning images itself (the generative paradigm, paper §3): inside
one answer the model writes text, opens an image with BOI, writes exactly H·W codebook
tokens, closes it with EOI and goes on writing text. The official code samples
"unrestricted" and splits the output on BOI/EOI afterwards (REFERENCE §2); here the grammar
is enforced while sampling by :class:`InterleavedLogitsProcessor`, so every emitted image is
complete and decodable:

    text mode ──BOI──► image mode (H·W image tokens, nothing else) ──EOI (forced)──► text mode

- text mode: any text token, BOI (unless the answer already holds ``max_images`` images, or
  fewer than H·W + 2 new tokens remain so the image could not be finished), EOS; never an
  image token, EOI, BOS or pad;
- image mode: only image tokens until H·W of them, then only EOI.

The state is read from the tokens themselves: the first call derives it from the prompt
(a prompt may end inside an open image), every later call advances it by the one token
generated since, and a call whose length is not previous + 1 re-derives it from all tokens.
All work is on [B]-shaped tensors plus one [B, V] mask gather, with no host
synchronisation, so the same processor serves HF ``generate``, the local PeRPO rollouts and
a rollout engine that hands over (token ids, logits) per step.

Tool insertion at BOI. With an ``image_tool`` the model writes only the BOI of each image;
the tool (an executor that renders the action just written, see
:func:`omni_r1.training.rollout.executor_image_tool`) returns the image's H·W codes, and the
processor forces them, then EOI, one per step: the grammar and the token budget are the
ones above, only who chooses the image tokens changes. Forced tokens are context, not the
policy's actions: :func:`tool_context_mask` marks them (every image token and EOI of a
response written under a tool), and training gives them no loss, no log-prob ratio, no KL
and no entropy. Every caller (PeRPO rollouts, evaluation) reaches the tool through this one
processor.

Decoding (:func:`split_segments`, :func:`decode_interleaved`) turns generated ids back into
the trajectory text of :mod:`omni_r1.trajectory`, with ``IMAGE_SLOT`` where each complete
image was, plus the images' codes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import StaticCache, StaticLayer
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.streamers import BaseStreamer

from omni_r1.model.layout import TokenLayout
from omni_r1.model.logits import with_image_logits
from omni_r1.trajectory import IMAGE_SLOT

# (rows that just wrote BOI, their generated ids so far [n_i] ending in BOI) → codes [rows, H*W]
ImageTool = Callable[[Sequence[int], Sequence[torch.Tensor]], torch.Tensor]

IMAGE_PLACEHOLDER_ID = -1  # stands for one complete image in split_segments' text ids

TEXT, TEXT_NO_BOI, IMAGE, CLOSE_IMAGE = 0, 1, 2, 3  # row modes, index into the mask table


@dataclass
class InterleaveState:
    """Per-row grammar state, [B] tensors."""

    in_image: torch.Tensor  # bool: a BOI was emitted and its EOI not yet
    image_pos: torch.Tensor  # long: image tokens emitted in the open image
    image_count: torch.Tensor  # long: images opened in the generated part


def interleave_state(ids: torch.Tensor, prompt_length: int, layout: TokenLayout) -> InterleaveState:
    """Derive the grammar state from all tokens so far.

    Args:
        ids: prompt + generated tokens [B, n] (left padding is fine).
        prompt_length: number of prompt columns; images are counted after it only.
        layout: the model's token layout.

    Returns:
        The :class:`InterleaveState` after the last column.
    """
    positions = torch.arange(ids.shape[1], device=ids.device)  # [n]
    none = torch.full_like(ids, -1)  # [B, n]
    last_boi = torch.where(ids == layout.boi_id, positions, none).amax(-1)  # [B]
    last_eoi = torch.where(ids == layout.eoi_id, positions, none).amax(-1)  # [B]
    in_image = last_boi > last_eoi  # [B]
    after_boi = positions.unsqueeze(0) > last_boi.unsqueeze(1)  # [B, n]
    image_pos = (layout.is_image_token(ids) & after_boi).sum(-1) * in_image  # [B]
    image_count = (ids[:, prompt_length:] == layout.boi_id).sum(-1)  # [B]
    return InterleaveState(in_image, image_pos, image_count)


def advance_state(state: InterleaveState, last: torch.Tensor, layout: TokenLayout) -> InterleaveState:
    """The state after one more token ``last`` [B]."""
    is_boi = last == layout.boi_id  # [B]
    is_image = layout.is_image_token(last) & state.in_image  # [B]
    in_image = (state.in_image | is_boi) & (last != layout.eoi_id)  # [B]
    image_pos = torch.where(is_boi, 0, state.image_pos + is_image) * in_image  # [B]
    return InterleaveState(in_image, image_pos, state.image_count + is_boi)


def blocked_token_table(layout: TokenLayout, vocab: int, device: torch.device) -> torch.Tensor:
    """Which tokens each mode forbids: bool [4, V] indexed by TEXT, TEXT_NO_BOI, IMAGE, CLOSE_IMAGE."""
    ids = torch.arange(vocab, device=device)  # [V]
    image = layout.is_image_token(ids)  # [V]
    text_blocked = image | (ids == layout.eoi_id) | (ids == layout.bos_id)
    if layout.pad_id != layout.eos_id:
        text_blocked |= ids == layout.pad_id
    no_boi_blocked = text_blocked | (ids == layout.boi_id)
    close_blocked = ids != layout.eoi_id
    return torch.stack([text_blocked, no_boi_blocked, ~image, close_blocked])  # [4, V]


class InterleavedLogitsProcessor(LogitsProcessor):
    """Text → BOI → exactly H·W image tokens → EOI → text, per row, as a logits processor.

    Use one instance per ``generate`` call (or call :meth:`reset` in between): its first
    call fixes the prompt length (a call shorter than the previous one also starts anew). Rows must keep their identity between steps (greedy or
    sampling; not beam search, which reorders rows).

    Args:
        layout: the model's token layout.
        batch_size: rows per step (prompts x ``num_return_sequences``); checked each call.
        max_images: most images per answer; None for no limit.
        max_new_tokens: the generation budget; when given, BOI is forbidden once fewer than
            H·W + 2 new tokens remain, so no image is ever cut off. When None, an image can
            be left unfinished only by running out of tokens.
        image_tool: None: the model writes its images. Else called when rows write BOI;
            its codes [rows, H*W] are forced as those rows' image tokens (module docstring).
    """

    def __init__(
        self,
        layout: TokenLayout,
        batch_size: int,
        max_images: int | None = None,
        max_new_tokens: int | None = None,
        image_tool: ImageTool | None = None,
    ) -> None:
        self.layout = layout
        self.batch_size = batch_size
        self.max_images = max_images
        self.max_new_tokens = max_new_tokens
        self.image_tool = image_tool
        self._blocked: torch.Tensor | None = None  # [4, V] bool, built on the scores' device
        self.reset()

    def reset(self) -> None:
        self._prompt_length: int | None = None
        self._seen_length = -1
        self._state: InterleaveState | None = None
        self._forced: torch.Tensor | None = None  # [B, H*W] image token ids the tool chose

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask ``scores`` [B, V] to the tokens the grammar allows after ``input_ids`` [B, n]."""
        if scores.shape[0] != self.batch_size:
            raise ValueError(
                f"InterleavedLogitsProcessor built for batch {self.batch_size}, got {scores.shape[0]} rows"
            )
        state = self._update(input_ids)
        mode = self._modes(state, generated=input_ids.shape[1] - self._prompt_length)  # [B]
        if self._blocked is None or self._blocked.shape[1] != scores.shape[1]:
            self._blocked = blocked_token_table(self.layout, scores.shape[1], scores.device)
        blocked = self._blocked.index_select(0, mode)  # [B, V]
        # Out of place: HF keeps the tensor it passed in as the raw logits (output_logits).
        scores = scores.masked_fill(blocked, float("-inf"))  # [B, V]
        if self.image_tool is None:
            return scores
        return self._force_tool_tokens(input_ids, scores, state, mode)

    def _force_tool_tokens(
        self, input_ids: torch.Tensor, scores: torch.Tensor, state: InterleaveState, mode: torch.Tensor
    ) -> torch.Tensor:
        """Rows inside an image get the tool's next code as their only allowed token."""
        if self._forced is None or self._forced.shape[0] != scores.shape[0]:
            self._forced = torch.zeros(
                scores.shape[0], self.layout.tokens_per_image, dtype=torch.long, device=scores.device
            )  # [B, H*W]
        opened = (input_ids[:, -1] == self.layout.boi_id) & state.in_image  # [B]
        if input_ids.shape[1] > self._prompt_length and bool(opened.any()):
            rows = opened.nonzero().flatten().tolist()
            generated = [input_ids[row, self._prompt_length :].cpu() for row in rows]
            codes = self.image_tool(rows, generated).to(scores.device)  # [rows, H*W]
            self._forced[rows] = self.layout.codes_to_ids(codes.long())
        forcing = mode == IMAGE  # [B]
        position = state.image_pos.clamp(max=self.layout.tokens_per_image - 1)  # [B]
        token = self._forced.gather(1, position.unsqueeze(1))  # [B, 1]
        only = torch.full_like(scores, float("-inf")).scatter(1, token, 0.0)  # [B, V]
        return torch.where(forcing.unsqueeze(1), only, scores)  # [B, V]

    def _update(self, input_ids: torch.Tensor) -> InterleaveState:
        length = input_ids.shape[1]
        if self._prompt_length is None or length <= self._seen_length:  # a new generation
            self._prompt_length = length
        if self._state is not None and length == self._seen_length + 1:
            self._state = advance_state(self._state, input_ids[:, -1], self.layout)
        else:
            self._state = interleave_state(input_ids, self._prompt_length, self.layout)
        self._seen_length = length
        return self._state

    def _modes(self, state: InterleaveState, generated: int) -> torch.Tensor:
        tokens_per_image = self.layout.tokens_per_image
        no_boi = torch.zeros_like(state.in_image)  # [B]
        if self.max_images is not None:
            no_boi = state.image_count >= self.max_images
        if self.max_new_tokens is not None and self.max_new_tokens - generated < tokens_per_image + 2:
            no_boi = torch.ones_like(state.in_image)
        text_mode = torch.where(no_boi, TEXT_NO_BOI, TEXT)  # [B]
        image_mode = torch.where(state.image_pos >= tokens_per_image, CLOSE_IMAGE, IMAGE)  # [B]
        return torch.where(state.in_image, image_mode, text_mode)  # [B]


class DecodeStepCounter(BaseStreamer):
    """HF ``generate`` streamer that calls ``on_step(k)`` after the k-th new token of the batch.

    For progress only: it reads nothing but the call count, so outputs are unchanged. HF
    hands it the prompt first (not counted), then each decoding step's tokens.
    """

    def __init__(self, on_step: Callable[[int], None]) -> None:
        self.on_step = on_step
        self.calls = 0

    def put(self, value: torch.Tensor) -> None:
        if self.calls:
            self.on_step(self.calls)
        self.calls += 1

    def end(self) -> None:
        """Nothing to flush."""


def _setting(generation_config: GenerationConfig | None, kwargs: dict[str, Any], key: str) -> Any:
    if key in kwargs:
        return kwargs[key]
    return getattr(generation_config, key, None) if generation_config is not None else None


def cache_kwargs(kv_cache: str) -> dict[str, Any]:
    """HF ``generate`` cache arguments.

    ``static`` preallocates the KV cache for prompt + budget, so a decoding step writes into it
    instead of concatenating every layer's keys and values, and attention reads only the
    positions written so far (:class:`PrefixStaticLayer`; the same tokens; no
    ``torch.compile``, which HF would otherwise switch on for a static cache on GPU);
    ``dynamic`` is HF's growing cache.
    """
    if kv_cache == "static":
        return {"cache_implementation": "static", "disable_compile": True}
    if kv_cache == "dynamic":
        return {}
    raise ValueError(f"unknown kv_cache {kv_cache!r} (known: static, dynamic)")


class PrefixStaticLayer(StaticLayer):
    """HF's static cache layer, handing attention only the filled prefix of its buffers.

    HF's ``StaticLayer`` returns the whole ``[B, H, prompt + budget, d]`` buffers at every
    step and masks the unwritten tail, so each decoding step reads keys and values for the
    full budget; this layer returns views of the first ``written`` positions (no copy) and
    sizes the attention mask to match. Masked positions contribute exactly zero, so the
    outputs are the same; on CPU, where a decoding step is bound by reading the cache,
    evaluation of the default bench takes about two thirds of the time.
    """

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        keys, values = super().update(key_states, value_states, *args, **kwargs)  # [B, H, L_max, d] each
        written = int(self.cumulative_length)
        return keys[:, :, :written], values[:, :, :written]  # [B, H, written, d]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        past = int(self.cumulative_length) if self.is_initialized else 0
        return past + query_length, 0


def with_cache(model: Any, input_ids: torch.Tensor, generation_config: GenerationConfig | None,
               generate_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``generate_kwargs`` with ``cache_implementation="static"`` turned into a prefix-reading
    static cache for prompt + ``max_new_tokens`` (:class:`PrefixStaticLayer`); others unchanged."""
    if _setting(generation_config, generate_kwargs, "cache_implementation") != "static":
        return generate_kwargs
    budget = _setting(generation_config, generate_kwargs, "max_new_tokens")
    if budget is None:
        raise ValueError("a static KV cache needs max_new_tokens")
    length = int(input_ids.shape[1]) + int(budget)
    cache = StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=length)
    cache.layers = [PrefixStaticLayer(length) for _ in cache.layers]
    kwargs = {key: value for key, value in generate_kwargs.items() if key != "cache_implementation"}
    if generation_config is not None and generation_config.cache_implementation is not None:
        generation_config = copy.copy(generation_config)
        generation_config.cache_implementation = None
        kwargs["generation_config"] = generation_config
    return {**kwargs, "past_key_values": cache}


class InverseCdfSampler(LogitsProcessor):
    """Draws each row's next token from the processed scores and leaves only it finite.

    The last processor of a sampled generation that HF then runs greedily
    (:func:`sampled_in_processors`): ``softmax`` → cumulative sum → one uniform per row →
    ``searchsorted``. The same distribution as HF's ``torch.multinomial`` draw, which on CPU
    costs about 2 ms per step for a [64, V] batch against 0.06 ms here (a different use of the
    seeded global generator, so different draws).
    """

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.float().softmax(dim=-1)  # [B, V]
        cdf = probs.cumsum(dim=-1)  # [B, V]
        draw = torch.rand(scores.shape[0], 1, device=scores.device) * cdf[:, -1:]  # [B, 1]
        tokens = torch.searchsorted(cdf, draw, right=True).clamp_(max=scores.shape[-1] - 1)  # [B, 1]
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, tokens, 0.0)  # [B, V]


SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p")


def _effective(model: Any, generation_config: GenerationConfig | None, kwargs: dict[str, Any], key: str) -> Any:
    """A sampling setting as HF ``generate`` resolves it: call, ``generation_config``, model, HF default."""
    value = _setting(generation_config, kwargs, key)
    if value is None:
        value = getattr(getattr(model, "generation_config", None), key, None)
    if value is None:
        value = GenerationConfig._get_default_generation_params().get(key)
    return value


def sampled_in_processors(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
    generation_config: GenerationConfig | None, generate_kwargs: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor | None, list[LogitsProcessor], dict[str, Any]]:
    """Move sampling out of HF ``generate`` into logits processors; unchanged when not sampling.

    HF's own warpers for the resolved temperature / top-k / top-p (the same kept tokens), then
    :class:`InverseCdfSampler`; ``generate`` then decodes greedily. ``num_return_sequences``
    copies are made here, row by row as HF makes them (greedy decoding takes one per row).

    Returns:
        (input_ids [B·n, P], attention_mask, processors to append, generate kwargs).
    """
    if not _effective(model, generation_config, generate_kwargs, "do_sample"):
        return input_ids, attention_mask, [], generate_kwargs
    temperature, top_k, top_p = (_effective(model, generation_config, generate_kwargs, key) for key in SAMPLING_KEYS[1:])
    warpers: list[LogitsProcessor] = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p))
    copies = _setting(generation_config, generate_kwargs, "num_return_sequences") or 1
    if copies > 1:
        input_ids = input_ids.repeat_interleave(copies, dim=0)  # [B·n, P]
        attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(copies, dim=0)
    kwargs = {key: value for key, value in generate_kwargs.items() if key not in SAMPLING_KEYS}
    if generation_config is not None:
        generation_config = copy.copy(generation_config)
        for key in SAMPLING_KEYS[1:]:
            setattr(generation_config, key, None)
        kwargs["generation_config"] = generation_config
    return input_ids, attention_mask, [*warpers, InverseCdfSampler()], {**kwargs, "do_sample": False, "num_return_sequences": 1}


def generate_interleaved(
    model: Any,
    layout: TokenLayout,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    generation_config: GenerationConfig | None = None,
    max_images: int | None = None,
    image_tool: ImageTool | None = None,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """HF ``generate`` under the interleaved grammar, image logits enabled.

    The model is switched in place to keep image-token logits
    (:func:`omni_r1.model.logits.with_image_logits`).

    Args:
        model: a Chameleon model.
        layout: its token layout.
        input_ids: left-padded prompts [B, P].
        attention_mask: [B, P], 0 on the padding.
        generation_config: HF generation settings (``max_new_tokens``, ``do_sample``,
            ``temperature``, ``top_p``, ``num_return_sequences``, ...); ``generate_kwargs``
            override it.
        max_images: most images per answer (None: no limit).
        image_tool: draws each image instead of the model (:class:`InterleavedLogitsProcessor`);
            rows are ``input_ids`` rows repeated ``num_return_sequences`` times, in order.

    Returns:
        sequences [B * num_return_sequences, P + N]: prompts followed by the new tokens,
        padded with ``layout.pad_id`` after EOS (HF's output object instead when
        ``return_dict_in_generate=True``).
    """
    if (_setting(generation_config, generate_kwargs, "num_beams") or 1) > 1:
        raise ValueError("generate_interleaved samples or decodes greedily; beam search is not supported")
    model = with_image_logits(model)
    copies = _setting(generation_config, generate_kwargs, "num_return_sequences") or 1
    processor = InterleavedLogitsProcessor(
        layout,
        batch_size=input_ids.shape[0] * copies,
        max_images=max_images,
        max_new_tokens=_setting(generation_config, generate_kwargs, "max_new_tokens"),
        image_tool=image_tool,
    )
    generate_kwargs.setdefault("eos_token_id", layout.eos_id)
    generate_kwargs.setdefault("pad_token_id", layout.pad_id)
    input_ids, attention_mask, sampling, generate_kwargs = sampled_in_processors(
        model, input_ids, attention_mask, generation_config, {"generation_config": generation_config, **generate_kwargs}
    )
    return model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_processor=LogitsProcessorList([processor, *sampling]),
        **with_cache(model, input_ids, generate_kwargs.get("generation_config"), generate_kwargs),
    )


def tool_context_mask(response_ids: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Tokens a tool inserted into responses written under an ``image_tool``: [B, N] bool.

    Under a tool the model chooses BOI and the tool every image token and the EOI after
    them, so the inserted tokens are exactly the image tokens and EOIs of the response.

    Args:
        response_ids: generated ids [B, N] (or [N]), without the prompt.
    """
    return layout.is_image_token(response_ids) | (response_ids == layout.eoi_id)


class ImageTokenMask(LogitsProcessor):
    """Stock Chameleon decoding: every image-token logit set to -inf, nothing else touched.

    This is what upstream ``ChameleonForConditionalGeneration.forward`` and vLLM's Chameleon do,
    so the released evaluation script decodes text only (REFERENCE §2, §8). BOI and EOI stay
    allowed as ordinary tokens, as they are upstream.
    """

    def __init__(self, layout: TokenLayout) -> None:
        self.layout = layout
        self._blocked: torch.Tensor | None = None  # [V] bool

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._blocked is None or self._blocked.shape[0] != scores.shape[1]:
            ids = torch.arange(scores.shape[1], device=scores.device)  # [V]
            self._blocked = self.layout.is_image_token(ids)  # [V]
        return scores.masked_fill(self._blocked, float("-inf"))  # [B, V]


def generate_text_only(
    model: Any,
    layout: TokenLayout,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """HF ``generate`` with image-token logits masked (:class:`ImageTokenMask`): [B, P + N].

    The same sequences as the stock model gives, whether or not ``model`` was switched to keep
    image logits by :func:`omni_r1.model.logits.with_image_logits`.
    """
    generate_kwargs.setdefault("eos_token_id", layout.eos_id)
    generate_kwargs.setdefault("pad_token_id", layout.pad_id)
    input_ids, attention_mask, sampling, generate_kwargs = sampled_in_processors(
        model, input_ids, attention_mask, generate_kwargs.get("generation_config"), generate_kwargs
    )
    return model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_processor=LogitsProcessorList([ImageTokenMask(layout), *sampling]),
        **with_cache(model, input_ids, generate_kwargs.get("generation_config"), generate_kwargs),
    )


def generation_kwargs(section: Any) -> dict[str, Any]:
    """HF ``generate`` keyword arguments from the ``generation`` section of params.yaml.

    ``max_images_per_answer`` is not an HF argument: pass it to :func:`generate_interleaved`
    as ``max_images``.
    """
    return {
        "max_new_tokens": section.max_new_tokens,
        "do_sample": True,
        "temperature": section.temperature,
        "top_p": section.top_p,
    }


@dataclass
class Segments:
    text_ids: list[int]  # text tokens, IMAGE_PLACEHOLDER_ID where each complete image was
    codes: list[torch.Tensor]  # per complete image: codebook indices [H*W]
    malformed_images: int  # BOI spans dropped: wrong length, no EOI, or cut off


def scan_segments(ids: torch.Tensor | list[int], layout: TokenLayout) -> Segments:
    """Split generated ids into text and complete images; see :func:`split_segments`."""
    tokens = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if layout.eos_id in tokens:
        tokens = tokens[: tokens.index(layout.eos_id)]
    text_ids: list[int] = []
    codes: list[torch.Tensor] = []
    malformed = 0
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token != layout.boi_id:
            if token not in (layout.bos_id, layout.pad_id, layout.eoi_id) and not (
                layout.image_token_start <= token < layout.image_token_end
            ):
                text_ids.append(token)
            index += 1
            continue
        end = index + 1
        while end < len(tokens) and layout.image_token_start <= tokens[end] < layout.image_token_end:
            end += 1
        closed = end < len(tokens) and tokens[end] == layout.eoi_id
        if closed and end - index - 1 == layout.tokens_per_image:
            codes.append(torch.tensor(tokens[index + 1 : end]) - layout.image_token_start)
            text_ids.append(IMAGE_PLACEHOLDER_ID)
        else:
            malformed += 1
        index = end + 1 if closed else end
    return Segments(text_ids, codes, malformed)


def split_segments(
    ids: torch.Tensor | list[int], layout: TokenLayout
) -> tuple[list[int], list[torch.Tensor]]:
    """Split one generated sequence into text ids and the codes of its complete images.

    Reading stops at the first EOS. A complete image is BOI, exactly H·W image tokens, EOI;
    it becomes one ``IMAGE_PLACEHOLDER_ID`` in the text ids. BOS, pad, stray image tokens
    and EOIs are dropped, and so is any BOI span that is not a complete image (an image cut
    off by the token budget, or a wrong length in unconstrained output).

    Args:
        ids: generated token ids [N] (without the prompt).
        layout: the model's token layout.

    Returns:
        ``(text_ids, codes)``: text ids with placeholders, and one LongTensor [H*W] of
        codebook indices per complete image, in order.
    """
    segments = scan_segments(ids, layout)
    return segments.text_ids, segments.codes


def decode_interleaved(
    tokenizer: Any, layout: TokenLayout, ids: torch.Tensor | list[int]
) -> tuple[str, torch.Tensor]:
    """Generated ids → trajectory text with ``IMAGE_SLOT`` per image, and the images' codes.

    The template markers (reasoning and answer open/close) are dropped, so the text is what
    :func:`omni_r1.trajectory.parse_trajectory` reads; for a sequence built by
    :func:`omni_r1.model.packing.pack_trajectory` it is ``render_trajectory(traj)``.

    Returns:
        ``(text, codes [n_images, H*W])``.
    """
    text_ids, codes = split_segments(ids, layout)
    markers = {
        layout.reasoning_open_id,
        layout.reasoning_close_id,
        layout.answer_open_id,
        layout.answer_close_id,
    }
    runs: list[list[int]] = [[]]
    for token in text_ids:
        if token == IMAGE_PLACEHOLDER_ID:
            runs.append([])
        elif token not in markers:
            runs[-1].append(token)
    text = IMAGE_SLOT.join(tokenizer.decode(run, skip_special_tokens=False) for run in runs)
    stacked = (
        torch.stack(codes)
        if codes
        else torch.empty(0, layout.tokens_per_image, dtype=torch.long)
    )  # [n_images, H*W]
    return text, stacked
