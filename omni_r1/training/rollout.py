"""PeRPO rollouts: prompts, sampling, scoring, the group filter and collation (paper §4.2).

The half of a PeRPO step that does not touch the optimiser, shared by every caller that
needs rollouts without a trainer:

1. Prompts. :func:`build_prompts` packs each record's user turn with the cached codes of
   its input images; :class:`PromptCursor` walks them in an epoch-wise shuffled order whose
   state is one integer (checkpointed by the trainer).
2. Generation. :func:`sample_responses` draws ``rollout_n`` interleaved responses per prompt
   with the grammar-constrained sampler (:func:`omni_r1.model.generation.generate_interleaved`:
   text → BOI → exactly H·W image tokens → EOI → text).
3. Scoring. :func:`score_responses` decodes response token ids and scores them through the
   one grader (:func:`omni_r1.rewards.registry.score_batch`: accuracy, format, perception →
   R, paper §4.2 and Appendix B). It needs no policy and no trainer, so responses generated
   elsewhere (a verl reward manager receives token ids) are scored by the same code. With
   ``reward.fidelity_weight`` > 0 the scorer also compares each generated image with the
   executor's rendering of its action (:func:`omni_r1.rewards.fidelity.response_fidelity`,
   the scorer the evaluation uses) and adds the weighted mean; at 0 nothing is computed.
4. Group filter. :func:`keep_mixed_groups` keeps the prompt groups whose filter metric
   (``perpo.filter_metric``) is not the same for every response (DAPO dynamic sampling).
5. Collation. :func:`collate_responses` lays kept responses out as the log-prob inputs:
   left-padded prompt, right-padded response and the response mask the loss averages over.

Rendered images (the study's ``rendered`` regime): with an
:class:`omni_r1.rendering.ImageRenderer` the sampler hands each BOI to its ``tool``, which runs the executor on the
response's current visual state (:func:`omni_r1.rewards.fidelity.tool_rendering`), encodes
the image with the VQ tokenizer and has the interleave processor insert its codes. Inserted
tokens are context, as tool outputs in agentic RL: each :class:`Response` carries its
``context_mask``, the scorer does not read them (no perception term, no fidelity), and
:func:`collate_responses` leaves them out of ``response_mask`` (no loss, no log-prob in the
ratio, no KL, no entropy) while keeping them in ``attention_mask``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from omni_r1.config import Config, RewardConfig
from omni_r1.data.records import Record, record_to_trajectory
from omni_r1.data.synthetic import initial_state
from omni_r1.executor import Executor
from omni_r1.model.generation import (
    cache_kwargs,
    decode_interleaved,
    generate_interleaved,
    generation_kwargs,
    tool_context_mask,
)
from omni_r1.model.layout import TokenLayout
from omni_r1.model.packing import left_pad_prompts, pack_prompt
from omni_r1.rendering import ImageRenderer
from omni_r1.rewards.accuracy import LIMIT_REASON
from omni_r1.rewards.fidelity import (
    NEEDS_DECODER,
    response_fidelity,
    visual_codec,
)
from omni_r1.rewards.perception import codebook_squared_distances
from omni_r1.rewards.registry import RewardBatch, score_batch
from omni_r1.training.grpo import mixed_outcome_mask

# Record answer types (omni_r1.data.records.ANSWER_TYPES) → the accuracy grader's check order.
GRADER_ANSWER_TYPES = {"number": "numeric", "choice": "choice", "text": "text"}

# (texts, prompt of each response, response ids [B, N], response mask [B, N]) → rewards
Scorer = Callable[[Sequence[str], Sequence["PromptItem"], torch.Tensor, torch.Tensor], RewardBatch]
# the same arguments → mean fidelity of each response's scored images [B]
FidelityTerm = Callable[[Sequence[str], Sequence["PromptItem"], torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptItem:
    """One RL prompt: packed ids, reference answer and what the gallery shows."""

    record_id: str
    prompt_ids: torch.Tensor  # [P] BOS, user turn with input images, instruction
    gold: str
    choices: tuple[str, ...]
    answer_type: str | None  # grader answer type (AnswerType) or None
    question: str
    input_images: tuple[Image.Image, ...]
    initial_state: object | None  # task state PRED transitions start from (synthetic grids), else None


def build_prompts(
    records: Sequence[Record],
    codes: dict[tuple[str, str], torch.Tensor],
    layout: TokenLayout,
    tokenizer: Any,
    source: str,
) -> list[PromptItem]:
    """Pack every record's prompt with its input images' cached codes.

    Args:
        records: prepared records.
        codes: ``read_codes`` of the same dataset, ``(record_id, "input_i") -> [H*W]``.
        layout, tokenizer: the policy's.
        source: dataset name, for error messages.

    Raises:
        KeyError: an input image has no cached code (names dataset, record and image key).
    """
    prompts = []
    for record in records:
        keys = [f"input_{index}" for index in range(len(record.input_images))]
        missing = [key for key in keys if (record.id, key) not in codes]
        if missing:
            raise KeyError(
                f"{source}: record {record.id!r}, image {missing[0]!r}: no cached codes (run `omni-r1 encode`)"
            )
        traj = record_to_trajectory(record)
        prompt_ids = pack_prompt(traj, layout, tokenizer, [codes[(record.id, key)] for key in keys])
        prompts.append(
            PromptItem(
                record_id=record.id,
                prompt_ids=prompt_ids,
                gold=record.final_answer,
                choices=tuple(record.choices),
                answer_type=GRADER_ANSWER_TYPES.get(record.answer_type),
                question=record.question,
                input_images=tuple(traj.input_images),
                initial_state=initial_state(record),
            )
        )
    return prompts


class PromptCursor:
    """Epoch-wise shuffled prompt order from its own seeded generator; state = one integer."""

    def __init__(self, count: int, seed: int, position: int = 0) -> None:
        if count == 0:
            raise ValueError("no PeRPO prompts")
        self.count, self.seed, self.position = count, seed, position

    def _order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.count, generator=generator).tolist()

    def take(self, how_many: int) -> list[int]:
        indices = []
        for _ in range(how_many):
            epoch, offset = divmod(self.position, self.count)
            indices.append(self._order(epoch)[offset])
            self.position += 1
        return indices


# ---------------------------------------------------------------------------------------------
# Rollouts
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    """One sampled response and its reward breakdown."""

    prompt_index: int
    group: int  # unique per (step, generation batch, prompt)
    prompt_ids: torch.Tensor  # [P_i]
    response_ids: torch.Tensor  # [N_i], up to and including EOS
    text: str
    image_codes: torch.Tensor  # [n_images, H*W]
    reward: float
    accuracy: float
    format: float
    perception: float  # NaN without a complete image
    has_image: bool
    fidelity: float = math.nan  # mean fidelity of the scored images; NaN without one or when the term is off
    accuracy_reason: str = ""  # why the grader gave its score (``grader_limit``: a limit was hit)
    grader_timeouts: int = 0  # math-verify timeouts met while grading
    context_mask: torch.Tensor | None = None  # [N_i] bool, tokens a tool inserted (None: none)


def response_lengths(generated: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Tokens up to and including the first EOS, or all of them. [B, N] → [B]."""
    is_eos = generated == eos_id  # [B, N]
    first = torch.where(is_eos.any(-1), is_eos.float().argmax(-1) + 1, generated.shape[1])  # [B]
    return first.long()


def right_pad(rows: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors: ``(ids [B, N], mask [B, N])``."""
    width = max(1, max(row.shape[0] for row in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, N]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, N]
    for index, row in enumerate(rows):
        ids[index, : row.shape[0]] = row
        mask[index, : row.shape[0]] = 1
    return ids, mask


@dataclass
class RolloutSettings:
    n: int
    max_new_tokens: int
    max_images: int
    sampling: dict[str, Any]  # HF generate kwargs: do_sample, temperature, top_p, top_k, KV cache
    batch_size: int  # responses per generate call (whole groups)


def rollout_settings(cfg: Config) -> RolloutSettings:
    sampling = generation_kwargs(cfg.generation)
    sampling["max_new_tokens"] = cfg.perpo.max_new_tokens
    sampling["top_k"] = 0  # Table 6 samples with temperature and top-p only
    sampling.update(cache_kwargs(cfg.perpo.kv_cache))
    return RolloutSettings(
        n=cfg.perpo.rollout_n,
        max_new_tokens=cfg.perpo.max_new_tokens,
        max_images=cfg.generation.max_images_per_answer,
        sampling=sampling,
        batch_size=cfg.perpo.rollout_batch_size,
    )


@torch.no_grad()
def sample_responses(
    policy: Any,
    layout: TokenLayout,
    prompts: Sequence[torch.Tensor],
    settings: RolloutSettings,
    on_prompts: Callable[[int], None] | None = None,
    renderer: ImageRenderer | None = None,
    owners: Sequence[PromptItem] | None = None,
) -> list[torch.Tensor]:
    """``settings.n`` responses per prompt, grouped prompt by prompt. Returns B·n id rows [N_i].

    ``on_prompts`` is called with the number of prompts of each generate call (progress).
    With a ``renderer`` the executor draws every image (``owners``: the prompt item of each
    prompt, for its input image and task state).
    """
    if renderer is not None and owners is None:
        raise ValueError("sample_responses: a renderer needs the prompt items (owners)")
    per_chunk = max(1, settings.batch_size // settings.n)  # prompts per generate call
    responses: list[torch.Tensor] = []
    for start in range(0, len(prompts), per_chunk):
        input_ids, attention_mask = left_pad_prompts(
            prompts[start : start + per_chunk], layout.pad_id
        )  # [b, P]
        device = next(policy.parameters()).device
        tool = None
        if renderer is not None:
            chunk = owners[start : start + per_chunk]
            tool = renderer.tool([visual_start(chunk[row // settings.n]) for row in range(len(chunk) * settings.n)])
        sequences = generate_interleaved(
            policy, layout, input_ids.to(device), attention_mask.to(device),
            max_images=settings.max_images, image_tool=tool, num_return_sequences=settings.n, **settings.sampling,
        )  # fmt: skip  # [b*n, P+N]
        generated = sequences[:, input_ids.shape[1] :].cpu()  # [b*n, N]
        lengths = response_lengths(generated, layout.eos_id)  # [b*n]
        responses += [row[:length] for row, length in zip(generated, lengths.tolist(), strict=True)]
        if on_prompts is not None:
            on_prompts(input_ids.shape[0])
    return responses


def visual_start(item: PromptItem) -> tuple[Image.Image | None, object | None]:
    """v_0 and the task state a prompt's rendered images start from."""
    return (item.input_images[0] if item.input_images else None), item.initial_state


def fidelity_scorer(cfg: Config, policy: Any, layout: TokenLayout, vq_decoder: Any | None) -> FidelityTerm | None:
    """The fidelity of each response ([B], NaN: no scored image), or None when ``reward.fidelity_weight`` is 0.

    Raises:
        ValueError: the weight is on, ``fidelity.headline`` reads decoded pixels and there is no VQ decoder.
    """
    if cfg.reward.fidelity_weight == 0:
        return None
    headline = cfg.fidelity.headline
    if headline in NEEDS_DECODER and vq_decoder is None:
        raise ValueError(
            f"reward.fidelity_weight > 0 with fidelity.headline={headline!r} needs a VQ decoder; "
            "the policy checkpoint has none (use fidelity.headline: code_agreement)"
        )
    codec = visual_codec(policy.model.vqmodel, vq_decoder if headline in NEEDS_DECODER else None, cfg.fidelity.batch_size)
    executor = Executor(cfg.executor)

    def fidelity(texts: Sequence[str], owners: Sequence[PromptItem], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return response_fidelity(
            texts, ids, mask, layout, [item.input_images[0] if item.input_images else None for item in owners],
            [item.initial_state for item in owners], executor, codec, cfg.fidelity.psnr_cap_db, headline,
        )  # fmt: skip

    return fidelity


def reward_scorer(cfg: Config, policy: Any, layout: TokenLayout, vq_decoder: Any | None = None) -> Scorer:
    """The PeRPO reward (:func:`score_batch` as ``cfg.reward`` names it) against the policy's codebook.

    ``vq_decoder`` is read only by a fidelity term whose headline is PSNR (:func:`fidelity_scorer`).
    """
    codebook = policy.model.vqmodel.quantize.embedding.weight.detach().float().cpu()  # [K, D]
    return codebook_scorer(cfg.reward, codebook, layout, fidelity_scorer(cfg, policy, layout, vq_decoder))


def codebook_scorer(
    reward: RewardConfig, codebook: torch.Tensor, layout: TokenLayout, fidelity: FidelityTerm | None = None
) -> Scorer:
    """The PeRPO reward against a frozen codebook [K, D] (read from a model or from its weights file).

    Args:
        reward: the reward section (weights, perception map, combination).
        codebook: the frozen VQ codebook [K, D].
        layout: the policy's token layout.
        fidelity: the fidelity term (:func:`fidelity_scorer`); required when
            ``reward.fidelity_weight`` > 0, since it needs the executor and the VQ encoder.

    Raises:
        ValueError: ``reward.fidelity_weight`` > 0 without a fidelity term.
    """
    if reward.fidelity_weight > 0 and fidelity is None:
        raise ValueError(
            "reward.fidelity_weight > 0 needs the fidelity term (executor + VQ encoder), which this "
            "scorer was not given; set reward.fidelity_weight: 0 for this engine"
        )
    # The codebook is frozen: its [K, K] squared-distance table is built once, and each
    # image's total variation becomes H*W table lookups (benchmarks/bench_perception.py).
    squared_distances = codebook_squared_distances(codebook)  # [K, K]

    def score(
        texts: Sequence[str],
        owners: Sequence[PromptItem],
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> RewardBatch:
        return score_batch(
            reward, texts, [item.gold for item in owners], response_ids, response_mask, codebook, layout,
            choices=[item.choices for item in owners], answer_types=[item.answer_type for item in owners],
            squared_distances=squared_distances,
            fidelity=fidelity(texts, owners, response_ids, response_mask) if fidelity is not None else None,
        )  # fmt: skip

    return score


def score_responses(
    tokenizer: Any,
    layout: TokenLayout,
    rows: Sequence[torch.Tensor],
    owners: Sequence[PromptItem],
    prompt_indices: Sequence[int],
    groups: Sequence[int],
    scorer: Scorer,
    tool_inserted: bool = False,
) -> list[Response]:
    """Decode and score already-generated responses; no policy or trainer involved.

    Args:
        tokenizer, layout: the policy's.
        rows: response token ids, one [N_i] tensor per response (up to and including EOS).
        owners: the prompt of each response.
        prompt_indices: each response's prompt index (into the caller's prompt list).
        groups: each response's group id (responses of one prompt sample share it).
        scorer: the reward (:func:`reward_scorer`).
        tool_inserted: the rows were written under an image tool; its tokens are context
            (:func:`omni_r1.model.generation.tool_context_mask`), not scored as generated images.

    Returns:
        One :class:`Response` per row, in order, with its reward breakdown.
    """
    decoded = [decode_interleaved(tokenizer, layout, row) for row in rows]
    response_ids, response_mask = right_pad(rows, layout.pad_id)  # [B, N]
    context = [tool_context_mask(row, layout) if tool_inserted else None for row in rows]  # [N_i] each
    if tool_inserted:
        response_mask = response_mask * ~tool_context_mask(response_ids, layout)  # [B, N]
    scores = scorer([text for text, _ in decoded], owners, response_ids, response_mask)
    timeouts = scores.accuracy_timeouts or [0] * len(rows)
    return [
        Response(
            prompt_index=prompt_indices[row],
            group=groups[row],
            prompt_ids=owners[row].prompt_ids,
            response_ids=rows[row],
            text=decoded[row][0],
            image_codes=decoded[row][1],
            reward=float(scores.reward[row]),
            accuracy=float(scores.accuracy[row]),
            format=float(scores.format[row]),
            perception=float(scores.perception[row]),
            has_image=bool(scores.has_image[row]),
            fidelity=float(scores.fidelity[row]) if scores.fidelity is not None else math.nan,
            accuracy_reason=scores.accuracy_reasons[row],
            grader_timeouts=timeouts[row],
            context_mask=context[row],
        )
        for row in range(len(rows))
    ]


def generate_and_score(
    policy: Any,
    tokenizer: Any,
    layout: TokenLayout,
    prompts: Sequence[PromptItem],
    prompt_indices: Sequence[int],
    first_group: int,
    settings: RolloutSettings,
    scorer: Scorer,
    on_prompts: Callable[[int], None] | None = None,
    renderer: ImageRenderer | None = None,
) -> list[Response]:
    """One generation batch: sample ``n`` responses per prompt, then :func:`score_responses`.

    ``on_prompts``: progress, as in :func:`sample_responses`; ``renderer``: the executor
    draws every image (the rendered regime).
    """
    items = [prompts[index] for index in prompt_indices]
    rows = sample_responses(
        policy, layout, [item.prompt_ids for item in items], settings, on_prompts, renderer, items
    )
    per_prompt = [row // settings.n for row in range(len(rows))]  # response → its prompt's slot
    return score_responses(
        tokenizer, layout, rows, [items[slot] for slot in per_prompt],
        [prompt_indices[slot] for slot in per_prompt], [first_group + slot for slot in per_prompt],
        scorer, tool_inserted=renderer is not None,
    )  # fmt: skip


FILTER_METRICS = {
    "accuracy": lambda response: response.accuracy,  # verl DAPO recipe: filter_groups.metric=acc
    "reward": lambda response: response.reward,  # the total reward, perception term included
}


def keep_mixed_groups(responses: Sequence[Response], metric: str) -> list[list[Response]]:
    """The groups (in order) whose outcomes are not all equal (DAPO dynamic sampling).

    ``metric`` names the outcome (:data:`FILTER_METRICS`). With ``reward`` the continuous
    perception term makes nearly every group "mixed", so the filter rarely acts; with
    ``accuracy`` only groups whose answers differ in correctness are trained on.
    """
    outcome = FILTER_METRICS[metric]
    scores = torch.tensor([outcome(r) for r in responses], dtype=torch.float64)  # [B]
    keep = mixed_outcome_mask(scores, [r.group for r in responses])  # [B]
    groups: dict[int, list[Response]] = {}
    for response, kept in zip(responses, keep.tolist(), strict=True):
        if kept:
            groups.setdefault(response.group, []).append(response)
    return list(groups.values())


# ---------------------------------------------------------------------------------------------
# Training tensors
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainingBatch:
    """Kept responses laid out as the log-prob inputs: prompt left-padded, response right-padded."""

    input_ids: torch.Tensor  # [B, P+N] left-padded prompt, right-padded response
    attention_mask: torch.Tensor  # [B, P+N]
    response_mask: torch.Tensor  # [B, N] 1 on the policy's tokens: no pad, no tool-inserted context
    prompt_width: int  # P
    rewards: torch.Tensor  # [B]
    groups: list[int]  # [B]


def collate_responses(responses: Sequence[Response], pad_id: int) -> TrainingBatch:
    """One :class:`TrainingBatch` of the responses, in order.

    ``attention_mask`` covers every response token; ``response_mask`` only the policy's own
    (a response's ``context_mask`` tokens, inserted by a tool, get no loss, ratio, KL or entropy).
    """
    prompt_ids, prompt_mask = left_pad_prompts([r.prompt_ids for r in responses], pad_id)  # [B, P]
    response_ids, attended = right_pad([r.response_ids for r in responses], pad_id)  # [B, N]
    context = torch.zeros_like(attended, dtype=torch.bool)  # [B, N]
    for row, response in enumerate(responses):
        if response.context_mask is not None:
            context[row, : response.context_mask.shape[0]] = response.context_mask
    return TrainingBatch(
        input_ids=torch.cat([prompt_ids, response_ids], dim=1),  # [B, P+N]
        attention_mask=torch.cat([prompt_mask, attended], dim=1),  # [B, P+N]
        response_mask=(attended.bool() & ~context).float(),  # [B, N]
        prompt_width=prompt_ids.shape[1],
        rewards=torch.tensor([r.reward for r in responses], dtype=torch.float32),  # [B]
        groups=[r.group for r in responses],
    )


# ---------------------------------------------------------------------------------------------
# Metrics of a generation batch
# ---------------------------------------------------------------------------------------------


TIMING_PREFIX = "perf/"  # wall-clock metrics: logged to MLflow, never written into a checkpoint


def without_timings(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` less the wall-clock ones, so a checkpoint's bytes depend on its inputs only."""
    return {key: value for key, value in metrics.items() if not key.startswith(TIMING_PREFIX)}


def rollout_metrics(responses: Sequence[Response], gen_seconds: float) -> dict[str, float]:
    """Reward and its components, lengths and throughput over every generated response.

    ``reward/fidelity`` appears only when the fidelity term scored some response.
    """
    tokens = sum(int(r.response_ids.shape[0]) for r in responses)
    inserted = sum(int(r.context_mask.sum()) for r in responses if r.context_mask is not None)
    fidelity = finite_mean([r.fidelity for r in responses])
    return {
        "reward/mean": finite_mean([r.reward for r in responses]),
        "reward/accuracy": finite_mean([r.accuracy for r in responses]),
        "reward/format": finite_mean([r.format for r in responses]),
        "reward/perception": finite_mean([r.perception for r in responses]),
        "reward/image_rate": finite_mean([float(r.has_image) for r in responses]),
        "response/length": tokens / max(1, len(responses)),
        "response/inserted_tokens": inserted / max(1, len(responses)),  # tool-inserted context per response
        "tokens/generated": float(tokens - inserted),  # tokens the policy chose, over all responses
        "response/images": finite_mean([float(r.image_codes.shape[0]) for r in responses]),
        "perf/tokens_per_s": tokens / gen_seconds if gen_seconds > 0 else 0.0,
        **({} if math.isnan(fidelity) else {"reward/fidelity": fidelity}),
        "grader/limit_count": float(sum(r.accuracy_reason == LIMIT_REASON for r in responses)),
        "grader/timeout_count": float(sum(r.grader_timeouts for r in responses)),
    }


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
