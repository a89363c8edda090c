"""Does drawing help? Three regimes of the same method at equal compute.

The paper's claim (§3) is that reasoning improves when the model generates its own
functional images. The study trains and evaluates the same base on the same records with
the same budgets in three regimes (``study.regimes``):

- ``generated``: Omni-R1 as in the paper; the model writes every image token.
- ``text_only``: the same traces with every step image removed, rationale and action kept as
  text (:func:`omni_r1.data.records.text_only_record`); PeSFT without the perception loss
  (``perception.weight`` 0), PeRPO without the perception reward (``reward.perception_weight`` 0).
- ``rendered``: the model writes the action and BOI; the executor renders the image from the
  current visual state, the VQ tokenizer encodes it and its codes are inserted as context
  (:class:`omni_r1.training.rollout.ImageRenderer`): no loss, no log-prob in the ratio, no KL,
  no entropy on them; PeSFT labels only the model's own tokens
  (:func:`omni_r1.model.packing.images_as_context`). Nothing is generated to score, so the
  perception loss and reward are off here as well.

Equal compute: every regime runs ``study.pesft_max_steps`` PeSFT and ``study.perpo_max_steps``
PeRPO optimiser steps with the same batch sizes, the same PeRPO prompts in the same seeded
order, ``perpo.rollout_n`` rollouts each and the same token budgets (:func:`budget`); what
differs, and is reported, is what those steps cost in tokens and wall time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_r1.config import Config

REGIMES: tuple[str, ...] = ("generated", "text_only", "rendered")
NO_PERCEPTION = frozenset({"text_only", "rendered"})  # regimes whose images the model does not generate


def regime_dir(cfg: Config, regime: str) -> Path:
    """``<study.out_dir>/<regime>``: the regime's checkpoints, metrics and predictions."""
    return Path(cfg.study.out_dir) / regime


def regime_config(cfg: Config, regime: str) -> Config:
    """The configuration one regime trains and evaluates with.

    Outputs go under :func:`regime_dir`; the PeSFT track reads ``study.text_only_dataset``
    for ``text_only``; the perception loss and reward are off where the model does not
    generate images. Every budget is the same for every regime (:func:`budget`).

    Raises:
        ValueError: an unknown regime, or ``study.track`` not a key of ``pesft.datasets``.
    """
    if regime not in REGIMES:
        raise ValueError(f"study.regimes: unknown regime {regime!r} (known: {', '.join(REGIMES)})")
    if cfg.study.track not in cfg.pesft.datasets:
        raise ValueError(f"study.track: {cfg.study.track!r} is not a track of pesft.datasets")
    root = regime_dir(cfg, regime)
    dataset = cfg.study.text_only_dataset if regime == "text_only" else cfg.pesft.datasets[cfg.study.track]
    perception_weight = 0.0 if regime in NO_PERCEPTION else cfg.perception.weight
    reward_weight = 0.0 if regime in NO_PERCEPTION else cfg.reward.perception_weight
    steps = cfg.study.perpo_max_steps
    return cfg.model_copy(
        update={
            "paths": cfg.paths.model_copy(
                update={"checkpoints_dir": str(root / "checkpoints"), "metrics_dir": str(root / "metrics")}
            ),
            "pesft": cfg.pesft.model_copy(
                update={"max_steps": cfg.study.pesft_max_steps, "datasets": {cfg.study.track: dataset}}
            ),
            "perpo": cfg.perpo.model_copy(update={"max_steps": steps, "save_steps": [steps]}),
            "perception": cfg.perception.model_copy(update={"weight": perception_weight}),
            "reward": cfg.reward.model_copy(update={"perception_weight": reward_weight}),
            "eval": cfg.eval.model_copy(
                update={"predictions_dir": str(root / "predictions"), "gallery_dir": str(root / "gallery")}
            ),
        }
    )


def budget(cfg: Config) -> dict[str, Any]:
    """What fixes a regime's compute: optimiser steps, batches, prompts, rollouts, token budgets, seed."""
    pesft, perpo = cfg.pesft, cfg.perpo
    return {
        "seed": cfg.run.seed,
        "pesft.max_steps": pesft.max_steps,
        "pesft.sequences_per_step": pesft.per_device_batch_size * pesft.gradient_accumulation_steps,
        "perpo.max_steps": perpo.max_steps,
        "perpo.dataset": perpo.dataset,
        "perpo.train_batch_size": perpo.train_batch_size,
        "perpo.gen_batch_size": perpo.gen_batch_size,
        "perpo.max_gen_batches": perpo.max_gen_batches,
        "perpo.rollout_n": perpo.rollout_n,
        "perpo.max_new_tokens": perpo.max_new_tokens,
        "perpo.ppo_epochs": perpo.ppo_epochs,
        "generation.max_images_per_answer": cfg.generation.max_images_per_answer,
        "eval.dataset": cfg.eval.dataset,
        "eval.max_new_tokens": cfg.eval.max_new_tokens,
        "packing.max_length": cfg.packing.max_length,
    }
