"""PeRPO on the local engine: rollouts, the DAPO-style step, checkpoints (paper §4.2, Table 6).

One step (verl's DAPO recipe, written out):

1. Generation. Take ``gen_batch_size`` prompts, sample ``rollout_n`` interleaved responses
   each with the grammar-constrained sampler (:func:`generate_interleaved`, temperature and
   top-p from ``generation``), decode them and score them with :func:`score_batch`
   (accuracy, format, perception → R).
2. Group filter (dynamic sampling). Keep the prompt groups whose rewards are not all equal
   (:func:`mixed_outcome_mask`); generate again until ``train_batch_size`` groups are kept
   or ``max_gen_batches`` generation batches were tried, then train on what was kept
   (an empty keep skips the update and is logged).
3. Old and reference log-probs of the kept responses: π_old is the policy before this
   step's update, π_ref the frozen starting checkpoint (PeSFT).
4. Group-relative advantages A_i = (r_i − mean_G)/(std_G + ε) and, per PPO mini-batch of
   ``ppo_mini_batch_size`` prompts, the loss of :func:`ppo_loss`: clipped surrogate with
   ε_low/ε_high, − entropy_coeff·H + kl_loss_coef·KL_k3(π‖π_ref), aggregated by
   ``loss_agg_mode``; gradients accumulate over micro-batches, are clipped to ``grad_clip``,
   AdamW steps. The learning rate warms up linearly over ``warmup_steps`` steps.

Where it differs from verl: rollouts run through HF ``generate`` in-process (verl needs a
vLLM/SGLang server, and vLLM's Chameleon cannot emit image tokens); old log-probs are
recomputed by a forward pass as verl does, except when the step makes one on-policy update
(one epoch, one mini-batch), where log π_old is the detached log π of the same forward pass
(ratio 1, the same loss and gradient, one forward pass fewer); no sequence packing or
dynamic batch size.

Checkpoints (:mod:`omni_r1.training.checkpoint`) hold the weights, optimizer, scheduler,
RNG, the prompt cursor and the metric history, so a resumed run is identical to an
uninterrupted one on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from omni_r1.config import Config
from omni_r1.data.records import Record, record_to_trajectory
from omni_r1.gallery import GalleryEntry, GalleryStep, render_gallery_html
from omni_r1.model.generation import decode_interleaved, generate_interleaved, generation_kwargs
from omni_r1.model.layout import TokenLayout
from omni_r1.model.logprobs import token_logprobs
from omni_r1.model.packing import left_pad_prompts, pack_prompt
from omni_r1.rewards.accuracy import LIMIT_REASON
from omni_r1.rewards.perception import codebook_squared_distances
from omni_r1.rewards.registry import RewardBatch, score_batch
from omni_r1.training.checkpoint import (
    TrainerState,
    load_checkpoint_state,
    load_model_weights,
    save_checkpoint,
)
from omni_r1.training.grpo import ADVANTAGE_ESTIMATORS, mixed_outcome_mask, ppo_loss
from omni_r1.trajectory import parse_trajectory

# Record answer types (omni_r1.data.records.ANSWER_TYPES) → the accuracy grader's check order.
GRADER_ANSWER_TYPES = {"number": "numeric", "choice": "choice", "text": "text"}
PROBE_SEED_OFFSET = 7919  # the probe's prompt order and sampling seed: run.seed + this

StepHook = Callable[[int, dict[str, float]], None]
# (texts, prompt of each response, response ids [B, N], response mask [B, N]) → rewards
Scorer = Callable[[Sequence[str], Sequence["PromptItem"], torch.Tensor, torch.Tensor], RewardBatch]
CheckpointHook = Callable[[int, Path, list["Response"]], None]


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


def build_prompts(
    records: Sequence[Record],
    codes: dict[tuple[str, str], torch.Tensor],
    layout: TokenLayout,
    tokenizer: Any,
    source: str = "perpo_train",
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
    accuracy_reason: str = ""  # why the grader gave its score (``grader_limit``: a limit was hit)
    grader_timeouts: int = 0  # math-verify timeouts met while grading


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
    sampling: dict[str, Any]  # HF generate kwargs: do_sample, temperature, top_p, top_k
    micro_batch_size: int


def rollout_settings(cfg: Config) -> RolloutSettings:
    sampling = generation_kwargs(cfg.generation)
    sampling["max_new_tokens"] = cfg.perpo.max_new_tokens
    sampling["top_k"] = 0  # Table 6 samples with temperature and top-p only
    return RolloutSettings(
        n=cfg.perpo.rollout_n,
        max_new_tokens=cfg.perpo.max_new_tokens,
        max_images=cfg.generation.max_images_per_answer,
        sampling=sampling,
        micro_batch_size=cfg.perpo.micro_batch_size,
    )


@torch.no_grad()
def sample_responses(
    policy: Any, layout: TokenLayout, prompts: Sequence[torch.Tensor], settings: RolloutSettings
) -> list[torch.Tensor]:
    """``settings.n`` responses per prompt, grouped prompt by prompt. Returns B·n id rows [N_i]."""
    per_chunk = max(1, settings.micro_batch_size // settings.n)
    responses: list[torch.Tensor] = []
    for start in range(0, len(prompts), per_chunk):
        input_ids, attention_mask = left_pad_prompts(
            prompts[start : start + per_chunk], layout.pad_id
        )  # [b, P]
        device = next(policy.parameters()).device
        sequences = generate_interleaved(
            policy, layout, input_ids.to(device), attention_mask.to(device),
            max_images=settings.max_images, num_return_sequences=settings.n, **settings.sampling,
        )  # fmt: skip  # [b*n, P+N]
        generated = sequences[:, input_ids.shape[1] :].cpu()  # [b*n, N]
        lengths = response_lengths(generated, layout.eos_id)  # [b*n]
        responses += [row[:length] for row, length in zip(generated, lengths.tolist(), strict=True)]
    return responses


def reward_scorer(cfg: Config, policy: Any, layout: TokenLayout) -> Scorer:
    """The PeRPO reward (:func:`score_batch` as ``cfg.reward`` names it) against the policy's codebook."""
    codebook = policy.model.vqmodel.quantize.embedding.weight.detach().float().cpu()  # [K, D]
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
            cfg.reward, texts, [item.gold for item in owners], response_ids, response_mask, codebook, layout,
            choices=[item.choices for item in owners], answer_types=[item.answer_type for item in owners],
            squared_distances=squared_distances,
        )  # fmt: skip

    return score


def generate_and_score(
    policy: Any,
    tokenizer: Any,
    layout: TokenLayout,
    prompts: Sequence[PromptItem],
    prompt_indices: Sequence[int],
    first_group: int,
    settings: RolloutSettings,
    scorer: Scorer,
) -> list[Response]:
    """One generation batch: sample, decode and score ``n`` responses per prompt."""
    items = [prompts[index] for index in prompt_indices]
    rows = sample_responses(policy, layout, [item.prompt_ids for item in items], settings)
    decoded = [decode_interleaved(tokenizer, layout, row) for row in rows]
    owners = [items[row // settings.n] for row in range(len(rows))]
    response_ids, response_mask = right_pad(rows, layout.pad_id)  # [B, N]
    scores = scorer([text for text, _ in decoded], owners, response_ids, response_mask)
    timeouts = scores.accuracy_timeouts or [0] * len(rows)
    return [
        Response(
            prompt_index=prompt_indices[row // settings.n],
            group=first_group + row // settings.n,
            prompt_ids=owners[row].prompt_ids,
            response_ids=rows[row],
            text=decoded[row][0],
            image_codes=decoded[row][1],
            reward=float(scores.reward[row]),
            accuracy=float(scores.accuracy[row]),
            format=float(scores.format[row]),
            perception=float(scores.perception[row]),
            has_image=bool(scores.has_image[row]),
            accuracy_reason=scores.accuracy_reasons[row],
            grader_timeouts=timeouts[row],
        )
        for row in range(len(rows))
    ]


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
    input_ids: torch.Tensor  # [B, P+N] left-padded prompt, right-padded response
    attention_mask: torch.Tensor  # [B, P+N]
    response_mask: torch.Tensor  # [B, N]
    prompt_width: int  # P
    rewards: torch.Tensor  # [B]
    groups: list[int]  # [B]


def collate_responses(responses: Sequence[Response], pad_id: int) -> TrainingBatch:
    prompt_ids, prompt_mask = left_pad_prompts([r.prompt_ids for r in responses], pad_id)  # [B, P]
    response_ids, response_mask = right_pad([r.response_ids for r in responses], pad_id)  # [B, N]
    return TrainingBatch(
        input_ids=torch.cat([prompt_ids, response_ids], dim=1),  # [B, P+N]
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),  # [B, P+N]
        response_mask=response_mask.float(),  # [B, N]
        prompt_width=prompt_ids.shape[1],
        rewards=torch.tensor([r.reward for r in responses], dtype=torch.float32),  # [B]
        groups=[r.group for r in responses],
    )


def response_logprobs(
    model: Any, batch: TrainingBatch, rows: slice, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(response token) (and entropy) for ``rows`` of the batch. [b, N] each."""
    device = next(model.parameters()).device
    logp, entropy = token_logprobs(
        model, batch.input_ids[rows].to(device), batch.attention_mask[rows].to(device),
        temperature=temperature, with_entropy=with_entropy,
    )  # fmt: skip  # [b, P+N-1]
    start = batch.prompt_width - 1  # entry t scores token t+1: the first response token is P
    mask = batch.response_mask[rows].to(device)  # [b, N]
    logp = logp[:, start:] * mask  # [b, N]
    return logp, (entropy[:, start:] * mask if entropy is not None else None)


@torch.no_grad()
def batch_logprobs(
    model: Any, batch: TrainingBatch, micro_batch_size: int, temperature: float
) -> torch.Tensor:
    """log-probs of every response of the batch under a frozen pass of ``model``. [B, N]."""
    parts = []
    for start in range(0, batch.input_ids.shape[0], micro_batch_size):
        rows = slice(start, start + micro_batch_size)
        parts.append(response_logprobs(model, batch, rows, temperature, with_entropy=False)[0])
    return torch.cat(parts)


def outcome_advantages(batch: TrainingBatch, cfg: Config) -> torch.Tensor:
    """Group-relative advantages of the outcome reward, broadcast over tokens. [B, N]."""
    last = (batch.response_mask.sum(-1).long() - 1).clamp(min=0)  # [B]
    token_rewards = torch.zeros_like(batch.response_mask)  # [B, N]
    token_rewards[torch.arange(last.shape[0]), last] = batch.rewards
    estimator = ADVANTAGE_ESTIMATORS[cfg.grpo.adv_estimator]
    return estimator(
        token_rewards, batch.response_mask, batch.groups, cfg.grpo.epsilon, cfg.grpo.norm_adv_by_std
    )


# ---------------------------------------------------------------------------------------------
# Optimiser
# ---------------------------------------------------------------------------------------------


def build_optimizer(
    policy: torch.nn.Module, cfg: Config
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the policy's trainable parameters, linear warm-up then constant lr."""
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.perpo.lr,
        betas=tuple(cfg.perpo.adam_betas),
        weight_decay=cfg.perpo.weight_decay,
    )
    warmup = cfg.perpo.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    return optimizer, scheduler


def config_fingerprint(cfg: Config, extra: str = "") -> str:
    """Hash of every section a PeRPO run depends on (a checkpoint resumes only a same-hash run)."""
    sections = {
        name: getattr(cfg, name).model_dump(mode="json")
        for name in ("perpo", "grpo", "reward", "generation", "run")
    }
    text = json.dumps(sections, sort_keys=True) + extra
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class PerpoTrainer:
    """Holds the policy, reference, optimiser and prompt cursor; runs and checkpoints steps.

    Args:
        policy: the Chameleon model trained (switched to image-logit-keeping forward).
        reference: the frozen starting checkpoint (None: no KL term).
        tokenizer, layout: the policy's.
        prompts: RL prompts (:func:`build_prompts`).
        cfg: the whole config (``perpo``, ``grpo``, ``reward``, ``generation``, ``run.seed``).
        write_model: writes the policy's model files into a checkpoint folder.
        fingerprint: config hash stored in checkpoints (see :func:`config_fingerprint`).
        scorer: reward of a generation batch; default :func:`reward_scorer`.
    """

    def __init__(
        self,
        policy: Any,
        reference: Any | None,
        tokenizer: Any,
        layout: TokenLayout,
        prompts: Sequence[PromptItem],
        cfg: Config,
        write_model: Callable[[Path], None],
        fingerprint: str = "",
        scorer: Scorer | None = None,
    ) -> None:
        self.policy, self.reference = policy, reference
        self.tokenizer, self.layout, self.prompts, self.cfg = tokenizer, layout, list(prompts), cfg
        self.write_model, self.fingerprint = write_model, fingerprint
        if reference is not None:
            reference.requires_grad_(False)
        self.optimizer, self.scheduler = build_optimizer(policy, cfg)
        self.cursor = PromptCursor(len(self.prompts), cfg.run.seed)
        self.settings = rollout_settings(cfg)
        self.scorer = scorer or reward_scorer(cfg, policy, layout)
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.last_responses: list[Response] = []
        self.last_kept: list[list[Response]] = []
        self.probes: dict[str, dict[str, float]] = {}  # "start" / "end": fixed-prompt rewards

    # -- one step ---------------------------------------------------------------------------

    def collect(self) -> tuple[list[list[Response]], int, list[Response], int, float]:
        """Generate batches until enough mixed groups are kept (or the batch limit).

        Returns:
            (groups to train on, at most ``train_batch_size``; mixed groups found; all
            responses generated; generation batches used; generation seconds).
        """
        perpo = self.cfg.perpo
        kept: list[list[Response]] = []
        generated: list[Response] = []
        seconds, batches = 0.0, 0
        while batches < perpo.max_gen_batches and len(kept) < perpo.train_batch_size:
            indices = self.cursor.take(perpo.gen_batch_size)
            first_group = (self.step_count * perpo.max_gen_batches + batches) * perpo.gen_batch_size
            started = time.perf_counter()
            responses = generate_and_score(
                self.policy,
                self.tokenizer,
                self.layout,
                self.prompts,
                indices,
                first_group,
                self.settings,
                self.scorer,
            )
            seconds += time.perf_counter() - started
            generated += responses
            kept += keep_mixed_groups(responses, perpo.filter_metric)
            batches += 1
        return kept[: perpo.train_batch_size], len(kept), generated, batches, seconds

    def update(self, batch: TrainingBatch) -> dict[str, float]:
        """PPO mini-batch updates on the kept responses; returns averaged actor metrics."""
        cfg, grpo = self.cfg, self.cfg.grpo
        temperature = cfg.generation.temperature
        micro = cfg.perpo.micro_batch_size
        rows_per_mini = cfg.perpo.ppo_mini_batch_size * cfg.perpo.rollout_n
        total = batch.input_ids.shape[0]
        # One update on the whole batch is on-policy: π_old is the policy of that same forward pass.
        on_policy = cfg.perpo.ppo_epochs == 1 and total <= rows_per_mini
        old_logp = (
            None if on_policy else batch_logprobs(self.policy, batch, micro, temperature)
        )  # [B, N]
        ref_logp = (
            batch_logprobs(self.reference, batch, micro, temperature)
            if self.reference is not None
            else None
        )
        device = next(self.policy.parameters()).device
        advantages = outcome_advantages(batch, cfg).to(device)  # [B, N]
        response_mask = batch.response_mask.to(device)  # [B, N]
        collected: dict[str, list[float]] = {}
        params = [p for p in self.policy.parameters() if p.requires_grad]
        for _ in range(cfg.perpo.ppo_epochs):
            for mini_start in range(0, total, rows_per_mini):
                mini_end = min(total, mini_start + rows_per_mini)
                self.optimizer.zero_grad(set_to_none=True)
                for start in range(mini_start, mini_end, micro):
                    rows = slice(start, min(mini_end, start + micro))
                    logp, entropy = response_logprobs(
                        self.policy, batch, rows, temperature, with_entropy=True
                    )
                    loss, metrics = ppo_loss(
                        logp, logp.detach() if old_logp is None else old_logp[rows], advantages[rows],
                        response_mask[rows],
                        clip_ratio_low=grpo.clip_ratio_low, clip_ratio_high=grpo.clip_ratio_high,
                        clip_ratio_c=grpo.clip_ratio_c, loss_agg_mode=grpo.loss_agg_mode,
                        entropy_coeff=grpo.entropy_coeff, kl_loss_coef=grpo.kl_loss_coef,
                        kl_loss_type=grpo.kl_loss_type,
                        ref_log_prob=ref_logp[rows] if ref_logp is not None else None, entropy=entropy,
                    )  # fmt: skip
                    (loss * (rows.stop - rows.start) / (mini_end - mini_start)).backward()
                    for key, value in metrics.items():
                        collected.setdefault(key, []).append(value)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.perpo.grad_clip)
                collected.setdefault("actor/grad_norm", []).append(float(grad_norm))
                if torch.isfinite(grad_norm):
                    self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {key: _mean(values) for key, values in collected.items()}

    def step(self) -> dict[str, float]:
        """One PeRPO step: collect, filter, update; returns the step's metrics."""
        started = time.perf_counter()
        kept, mixed, generated, batches, gen_seconds = self.collect()
        generated_groups = batches * self.cfg.perpo.gen_batch_size
        metrics = rollout_metrics(generated, gen_seconds)
        metrics.update({
            "filter/gen_batches": float(batches),
            "filter/kept_groups": float(len(kept)),
            "filter/kept_group_fraction": mixed / generated_groups,  # passed the filter
            "filter/skipped_update": float(not kept),
        })  # fmt: skip
        metrics["actor/lr"] = self.scheduler.get_last_lr()[0]
        if kept:
            batch = collate_responses([r for group in kept for r in group], self.layout.pad_id)
            metrics.update(self.update(batch))
        # a step whose update was skipped still advances the schedule
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.step_count += 1
        metrics["perf/step_seconds"] = time.perf_counter() - started
        self.history.append(metrics)
        self.last_responses, self.last_kept = generated, kept
        return metrics

    # -- checkpoints ------------------------------------------------------------------------

    def save(self, directory: Path | str) -> Path:
        state = TrainerState(
            step=self.step_count,
            extra={
                "cursor": self.cursor.position,
                "history": self.history,
                "fingerprint": self.fingerprint,
                "probes": self.probes,
            },
        )
        return save_checkpoint(
            directory,
            write_model=self.write_model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=state,
        )

    def resume(self, directory: Path | str) -> None:
        """Load weights, optimiser, scheduler, RNG, cursor and history from a checkpoint."""
        load_model_weights(self.policy, directory)
        state = load_checkpoint_state(directory, self.optimizer, self.scheduler)
        self.step_count = state.step
        self.cursor.position = int(state.extra["cursor"])
        self.history = list(state.extra["history"])
        self.probes = dict(state.extra.get("probes", {}))

    def train(
        self,
        until_step: int,
        checkpoint_root: Path | str,
        save_steps: Sequence[int],
        on_step: StepHook | None = None,
        on_checkpoint: CheckpointHook | None = None,
    ) -> list[dict[str, float]]:
        """Run steps up to ``until_step``, saving ``checkpoint_root/step_<k>`` for k in ``save_steps``.

        With ``perpo.probe_prompts`` > 0 the fixed-prompt probe runs before the first step
        (``probes["start"]``) and after the last (``probes["end"]``).
        """
        probing = self.cfg.perpo.probe_prompts > 0
        if probing and self.step_count == 0 and "start" not in self.probes:
            self.probes["start"] = self.probe()
        while self.step_count < until_step:
            metrics = self.step()
            if on_step is not None:
                on_step(self.step_count, metrics)
            if self.step_count in save_steps:
                folder = self.save(Path(checkpoint_root) / f"step_{self.step_count}")
                if on_checkpoint is not None:
                    on_checkpoint(self.step_count, folder, self.last_responses)
        if probing:
            self.probes["end"] = self.probe()
        return self.history

    def probe(self) -> dict[str, float]:
        """Reward of the current policy on a fixed prompt set, sampled from a fixed seed.

        The same ``probe_prompts`` prompts and seed before and after training make the
        start/end comparison far less noisy than two training batches; the training RNG
        stream is left untouched (a forked RNG), so probing does not change the run.
        """
        count = min(self.cfg.perpo.probe_prompts, len(self.prompts))
        indices = PromptCursor(len(self.prompts), self.cfg.run.seed + PROBE_SEED_OFFSET).take(count)
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.run.seed + PROBE_SEED_OFFSET)
            started = time.perf_counter()
            responses = generate_and_score(
                self.policy, self.tokenizer, self.layout, self.prompts, indices, 0, self.settings,
                self.scorer,
            )  # fmt: skip
        return rollout_metrics(responses, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# Metrics and galleries
# ---------------------------------------------------------------------------------------------


def rollout_metrics(responses: Sequence[Response], gen_seconds: float) -> dict[str, float]:
    """Reward and its components, lengths and throughput over every generated response."""
    tokens = sum(int(r.response_ids.shape[0]) for r in responses)
    return {
        "reward/mean": _mean([r.reward for r in responses]),
        "reward/accuracy": _mean([r.accuracy for r in responses]),
        "reward/format": _mean([r.format for r in responses]),
        "reward/perception": _mean([r.perception for r in responses]),
        "reward/image_rate": _mean([float(r.has_image) for r in responses]),
        "response/length": tokens / max(1, len(responses)),
        "response/images": _mean([float(r.image_codes.shape[0]) for r in responses]),
        "perf/tokens_per_s": tokens / gen_seconds if gen_seconds > 0 else 0.0,
        "grader/limit_count": float(sum(r.accuracy_reason == LIMIT_REASON for r in responses)),
        "grader/timeout_count": float(sum(r.grader_timeouts for r in responses)),
    }


def _window(history: Sequence[dict[str, float]], key: str, steps: slice) -> float | None:
    value = _mean([h[key] for h in history[steps] if key in h])
    return None if math.isnan(value) else round(value, 6)


SUMMARY_KEYS = {
    "reward": "reward/mean",
    "accuracy": "reward/accuracy",
    "format": "reward/format",
    "perception": "reward/perception",
    "images": "response/images",
}


def summary_metrics(
    history: Sequence[dict[str, float]],
    probes: dict[str, dict[str, float]] | None = None,
    window: int = 5,
) -> dict[str, float | int | str | None]:
    """``metrics/perpo_<track>.json``: values of the starting and of the final policy.

    ``<name>_step0`` / ``<name>_last`` come from the fixed-prompt probes when both exist
    (before any update / after the last one), otherwise from the first and last training
    steps' rollouts (``source`` says which). ``train_<name>_first<w>`` / ``_last<w>`` are
    training-rollout means over the first and last ``window`` steps; ``history`` holds the
    per-step training-rollout reward and components.
    """
    if not history:
        return {"steps": 0}
    probes = probes or {}
    use_probes = "start" in probes and "end" in probes
    start = [probes["start"]] if use_probes else history[:1]
    end = [probes["end"]] if use_probes else history[-1:]
    summary: dict[str, float | int | str | None] = {
        "steps": len(history),
        "source": "probe" if use_probes else "training_rollouts",
    }
    for name, key in SUMMARY_KEYS.items():
        summary[f"{name}_step0"] = _window(start, key, slice(None))
        summary[f"{name}_last"] = _window(end, key, slice(None))
    summary[f"train_reward_first{window}"] = _window(history, "reward/mean", slice(0, window))
    summary[f"train_reward_last{window}"] = _window(history, "reward/mean", slice(-window, None))
    summary["kept_group_fraction"] = _window(history, "filter/kept_group_fraction", slice(None))
    summary["skipped_updates"] = int(sum(h.get("filter/skipped_update", 0.0) for h in history))
    summary["grader_limit_count"] = int(sum(h.get("grader/limit_count", 0.0) for h in history))
    summary["grader_timeout_count"] = int(sum(h.get("grader/timeout_count", 0.0) for h in history))
    summary["history"] = [  # per-step training-rollout values (the report's reward-vs-step plot)
        {"step": step, **{key: _window([entry], key, slice(None)) for key in SUMMARY_KEYS.values()}}
        for step, entry in enumerate(history, start=1)
    ]
    return summary


def gallery_entries(
    responses: Sequence[Response],
    prompts: Sequence[PromptItem],
    decode: Callable[[torch.Tensor], list[Image.Image]] | None,
    limit: int,
) -> list[GalleryEntry]:
    """Sampled trajectories as gallery entries; step images decoded when ``decode`` is given."""
    entries = []
    for response in list(responses)[:limit]:
        prompt = prompts[response.prompt_index]
        parsed = parse_trajectory(response.text)
        images = iter(
            decode(response.image_codes)
            if decode is not None and response.image_codes.shape[0]
            else []
        )
        steps = tuple(
            GalleryStep(step.rationale, step.action, next(images, None) if step.has_image else None)
            for step in parsed.steps
        )
        verdict = (
            f"R={response.reward:.3f} acc={response.accuracy:.2f} fmt={response.format:.0f} "
            f"pe={response.perception:.3f}"
        )
        entries.append(
            GalleryEntry(
                question=prompt.question, steps=steps, final_answer=parsed.final_answer,
                input_images=prompt.input_images, choices=prompt.choices,
                reference_answer=prompt.gold, verdict=verdict, name=prompt.record_id,
            )
        )  # fmt: skip
    return entries


def rollout_gallery_html(
    responses: Sequence[Response],
    prompts: Sequence[PromptItem],
    decode: Callable[[torch.Tensor], list[Image.Image]] | None,
    limit: int,
    title: str,
) -> str:
    return render_gallery_html(gallery_entries(responses, prompts, decode, limit), title)
