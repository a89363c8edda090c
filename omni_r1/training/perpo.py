"""PeRPO on the local engine: the stateful trainer, its DAPO-style step and checkpoints (paper §4.2, Table 6).

One step (verl's DAPO recipe, written out; rollouts come from :mod:`omni_r1.training.rollout`):

1. Generation. Take ``gen_batch_size`` prompts, sample ``rollout_n`` interleaved responses
   each with the grammar-constrained sampler (temperature and top-p from ``generation``),
   decode them and score them (accuracy, format, perception → R, paper §4.2, Appendix B).
2. Group filter (dynamic sampling). Keep the prompt groups whose ``perpo.filter_metric``
   (accuracy by default) is not the same for every response; generate again until
   ``train_batch_size`` groups are kept or ``max_gen_batches`` generation batches were tried,
   then train on what was kept (an empty keep skips the update and is logged).
3. Old and reference log-probs of the kept responses: π_old is the policy before this
   step's update, π_ref the frozen starting checkpoint (PeSFT).
4. Group-relative advantages A_i = (r_i − mean_G)/(std_G + ε) (§4.2, GRPO) and, per PPO
   mini-batch of ``ppo_mini_batch_size`` prompts, the loss of :func:`ppo_loss` (§4.2, Table 6):
   clipped surrogate with ε_low/ε_high, − entropy_coeff·H + kl_loss_coef·KL_k3(π‖π_ref),
   aggregated by ``loss_agg_mode``; gradients accumulate over micro-batches, are clipped to
   ``max_grad_norm``, AdamW steps. The learning rate warms up linearly over ``warmup_steps`` steps.

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
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from omni_r1.config import Config
from omni_r1.model.layout import TokenLayout
from omni_r1.model.logprobs import token_logprobs
from omni_r1.rendering import ImageRenderer
from omni_r1.training.checkpoint import (
    TrainerState,
    load_checkpoint_state,
    load_model_weights,
    save_checkpoint,
)
from omni_r1.training.grpo import ADVANTAGE_ESTIMATORS, ppo_loss
from omni_r1.training.rollout import (
    PromptCursor,
    PromptItem,
    Response,
    Scorer,
    TrainingBatch,
    collate_responses,
    finite_mean,
    generate_and_score,
    keep_mixed_groups,
    reward_scorer,
    rollout_metrics,
    rollout_settings,
    without_timings,
)

PROBE_SEED_OFFSET = 7919  # the probe's prompt order and sampling seed: run.seed + this

StepHook = Callable[[int, dict[str, float]], None]
CheckpointHook = Callable[[int, Path, list[Response]], None]
ProbeHook = Callable[[str, int, int], None]  # (probe name, prompts done, prompts in all)


# ---------------------------------------------------------------------------------------------
# Log-probs and advantages
# ---------------------------------------------------------------------------------------------


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
    positions = torch.arange(batch.response_mask.shape[1])  # [N]
    last = (batch.response_mask.bool() * positions).argmax(-1)  # [B] last policy token (masks may have holes)
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
        lr=cfg.perpo.learning_rate,
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


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class PerpoTrainer:
    """Holds the policy, reference, optimiser and prompt cursor; runs and checkpoints steps.

    Args:
        policy: the Chameleon model trained (switched to image-logit-keeping forward); its VQ
            image tokenizer is frozen (no gradient reaches it, and the codebook must not move).
        reference: the frozen starting checkpoint (None: no KL term).
        tokenizer, layout: the policy's.
        prompts: RL prompts (:func:`build_prompts`).
        cfg: the whole config (``perpo``, ``grpo``, ``reward``, ``generation``, ``run.seed``).
        write_model: writes the policy's model files into a checkpoint folder.
        fingerprint: config hash stored in checkpoints (see :func:`config_fingerprint`).
        scorer: reward of a generation batch; default :func:`reward_scorer`.
        renderer: None: the policy draws its images; else the executor draws them and they
            are context (the study's rendered regime, :class:`ImageRenderer`).
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
        renderer: ImageRenderer | None = None,
    ) -> None:
        self.policy, self.reference = policy, reference
        self.tokenizer, self.layout, self.prompts, self.cfg = tokenizer, layout, list(prompts), cfg
        self.write_model, self.fingerprint = write_model, fingerprint
        if reference is not None:
            reference.requires_grad_(False)
        policy.model.vqmodel.requires_grad_(False)  # the image tokenizer stays frozen, as in PeSFT
        self.optimizer, self.scheduler = build_optimizer(policy, cfg)
        self.cursor = PromptCursor(len(self.prompts), cfg.run.seed)
        self.settings = rollout_settings(cfg)
        self.scorer = scorer or reward_scorer(cfg, policy, layout)
        self.renderer = renderer
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.last_responses: list[Response] = []
        self.last_kept: list[list[Response]] = []
        self.probes: dict[str, dict[str, float]] = {}  # "start" / "end": fixed-prompt rewards

    # -- one step ---------------------------------------------------------------------------

    def collect(self) -> tuple[list[list[Response]], int, list[Response], int, float]:
        """Generate batches until enough mixed groups are kept (or the batch limit).

        DAPO dynamic sampling, one generation batch after another. When
        ``perpo.rollout_batch_size`` holds several generation batches, they are sampled in one
        generate call and read in order; the prompts of batches that were not needed go back
        to the cursor, so the prompts seen and the groups kept follow the same rule as one
        batch at a time (only the random draws differ).

        Returns:
            (groups to train on, at most ``train_batch_size``; mixed groups found; all
            responses of the batches used; generation batches used; generation seconds).
        """
        perpo = self.cfg.perpo
        rows_per_batch = perpo.gen_batch_size * perpo.rollout_n
        ahead = max(1, self.settings.batch_size // rows_per_batch)  # generation batches per call
        kept: list[list[Response]] = []
        generated: list[Response] = []
        seconds, batches = 0.0, 0
        while batches < perpo.max_gen_batches and len(kept) < perpo.train_batch_size:
            count = min(ahead, perpo.max_gen_batches - batches)
            position = self.cursor.position
            indices = self.cursor.take(count * perpo.gen_batch_size)
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
                renderer=self.renderer,
            )
            seconds += time.perf_counter() - started
            for used in range(1, count + 1):
                part = responses[(used - 1) * rows_per_batch : used * rows_per_batch]
                generated += part
                kept += keep_mixed_groups(part, perpo.filter_metric)
                batches += 1
                if len(kept) >= perpo.train_batch_size:
                    self.cursor.position = position + used * perpo.gen_batch_size  # unused prompts go back
                    break
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
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.perpo.max_grad_norm)
                collected.setdefault("actor/grad_norm", []).append(float(grad_norm))
                if torch.isfinite(grad_norm):
                    self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {key: finite_mean(values) for key, values in collected.items()}

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
        metrics["tokens/trained"] = 0.0
        if kept:
            batch = collate_responses([r for group in kept for r in group], self.layout.pad_id)
            metrics["tokens/trained"] = float(batch.response_mask.sum())  # policy tokens in the loss
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
                "history": [without_timings(entry) for entry in self.history],  # byte-stable checkpoints
                "fingerprint": self.fingerprint,
                "probes": {name: without_timings(values) for name, values in self.probes.items()},
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
        on_probe: ProbeHook | None = None,
        resume_dir: Path | str | None = None,
        resume_every: int = 0,
    ) -> list[dict[str, float]]:
        """Run steps up to ``until_step``, saving ``checkpoint_root/step_<k>`` for k in ``save_steps``.

        With ``resume_dir``, every ``resume_every``-th step that is not a save step also writes
        a resumable checkpoint there (replacing the previous one), so a kill loses fewer than
        ``resume_every`` steps. With ``perpo.probe_prompts`` > 0 the fixed-prompt probe runs
        before the first step (``probes["start"]``) and after the last (``probes["end"]``);
        ``on_probe`` follows its progress. ``on_step`` gets each step's metrics.
        """
        probing = self.cfg.perpo.probe_prompts > 0
        if probing and self.step_count == 0 and "start" not in self.probes:
            self.probes["start"] = self.probe("start", on_probe)
        while self.step_count < until_step:
            metrics = self.step()
            if on_step is not None:
                on_step(self.step_count, metrics)
            if self.step_count in save_steps:
                folder = self.save(Path(checkpoint_root) / f"step_{self.step_count}")
                if on_checkpoint is not None:
                    on_checkpoint(self.step_count, folder, self.last_responses)
            elif resume_dir is not None and self.step_count % resume_every == 0:
                self.save(resume_dir)
        if probing:
            self.probes["end"] = self.probe("end", on_probe)
        return self.history

    def probe(self, name: str = "", on_probe: ProbeHook | None = None) -> dict[str, float]:
        """Reward of the current policy on a fixed prompt set, sampled from a fixed seed.

        The same ``probe_prompts`` prompts and seed before and after training make the
        start/end comparison far less noisy than two training batches; the training RNG
        stream is left untouched (a forked RNG), so probing does not change the run.
        """
        count = min(self.cfg.perpo.probe_prompts, len(self.prompts))
        indices = PromptCursor(len(self.prompts), self.cfg.run.seed + PROBE_SEED_OFFSET).take(count)
        done = [0]

        def on_prompts(prompts: int) -> None:
            done[0] += prompts
            if on_probe is not None:
                on_probe(name, done[0], count)

        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.run.seed + PROBE_SEED_OFFSET)
            started = time.perf_counter()
            responses = generate_and_score(
                self.policy, self.tokenizer, self.layout, self.prompts, indices, 0, self.settings,
                self.scorer, on_prompts, self.renderer,
            )  # fmt: skip
        return rollout_metrics(responses, time.perf_counter() - started)
