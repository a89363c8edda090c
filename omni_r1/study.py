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

Equal compute: every regime runs ``pesft.max_steps`` PeSFT and ``perpo.max_steps``
PeRPO optimiser steps with the same batch sizes, the same PeRPO prompts in the same seeded
order, ``perpo.rollout_n`` rollouts each and the same token budgets (:func:`budget`); what
differs, and is reported, is what those steps cost in tokens and wall time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omni_r1.config import TRACKS, Config

REGIMES: tuple[str, ...] = ("generated", "text_only", "rendered")
STUDY_TRACK = TRACKS[0]  # the track name of every regime's runs (each regime has its own checkpoint root)
NO_PERCEPTION = frozenset({"text_only", "rendered"})  # regimes whose images the model does not generate


def regime_dir(cfg: Config, regime: str) -> Path:
    """``<study.out_dir>/<regime>``: the regime's checkpoints, metrics and predictions."""
    return Path(cfg.study.out_dir) / regime


def regime_config(cfg: Config, regime: str) -> Config:
    """The configuration one regime trains and evaluates with.

    Outputs go under :func:`regime_dir`; PeSFT trains on ``study.dataset`` (its text-only copy
    ``study.text_only_dataset`` for ``text_only``); the perception loss and reward are off where the model does not
    generate images. Every budget is the same for every regime (:func:`budget`).

    Raises:
        ValueError: an unknown regime, or ``rendered`` with the verl engine.
    """
    if regime not in REGIMES:
        raise ValueError(f"study.regimes: unknown regime {regime!r} (known: {', '.join(REGIMES)})")
    if regime == "rendered" and cfg.perpo.engine != "local":
        raise ValueError("study.regimes: rendered needs perpo.engine: local (the verl agent loop does not insert tool images)")
    root = regime_dir(cfg, regime)
    dataset = cfg.study.text_only_dataset if regime == "text_only" else cfg.study.dataset
    perception_weight = 0.0 if regime in NO_PERCEPTION else cfg.perception.weight
    reward_weight = 0.0 if regime in NO_PERCEPTION else cfg.reward.perception_weight
    steps = cfg.perpo.max_steps
    return cfg.model_copy(
        update={
            "paths": cfg.paths.model_copy(
                update={"checkpoints_dir": str(root / "checkpoints"), "metrics_dir": str(root / "metrics")}
            ),
            "pesft": cfg.pesft.model_copy(update={"datasets": {STUDY_TRACK: dataset}}),
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


# ---------------------------------------------------------------------------------------------
# The report: accuracy with intervals, paired differences, image statistics, cost
# ---------------------------------------------------------------------------------------------

IMAGE_SOURCE = {"generated": "the model", "text_only": "none", "rendered": "the executor"}


def _finite_mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def image_statistics(regime: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Images per answer, and for generated images their perception score and fidelity.

    Perception and fidelity (agreement with the executor's rendering of the same action,
    :mod:`omni_r1.rewards.fidelity`) describe generated images only: a rendered image *is*
    the executor's rendering, and text-only answers have none (NaN).
    """
    generated = regime == "generated"
    return {
        "images_per_answer": _finite_mean([row["images"] for row in rows]),
        "perception": _finite_mean([row["perception"] for row in rows]) if generated else math.nan,
        "fidelity": _finite_mean([row["fidelity"] for row in rows]) if generated else math.nan,
    }


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(summary: Mapping[str, Any]) -> str:
    if summary.get("mean") is None:
        return "—"
    return f"{summary['mean']:.3f} [{_cell(summary['low'])}, {_cell(summary['high'])}] (n={summary['items']})"


def accuracy_table(accuracy: Mapping[str, Mapping[str, Mapping[str, Any]]], confidence: float) -> list[str]:
    """Markdown rows: one per regime, a column per Uni-Task slice and ``average``."""
    groups = list(next(iter(accuracy.values())))
    lines = [
        f"| regime | {' | '.join(groups)} |",
        "|---|" + "---|" * len(groups),
    ]
    for regime, block in accuracy.items():
        lines.append(f"| {regime} | {' | '.join(_interval(block[g]) for g in groups)} |")
    lines.append(f"\nAccuracy with its {confidence:.0%} percentile-bootstrap interval over items.")
    return lines


def paired_lines(paired: Mapping[str, Mapping[str, Mapping[str, Any]]], alpha: float) -> list[str]:
    """Markdown rows of B − A per pair and slice, and one sentence per pair on what is distinguishable."""
    lines = ["| B − A | slice | items | difference [interval] | B better / A better | p (sign test) | distinguishable |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    words = []
    for pair, block in paired.items():
        for group, entry in block.items():
            diff = entry["difference"]
            lines.append(
                f"| {pair} | {group} | {entry['items']} | {_cell(diff['mean'])} [{_cell(diff['low'])}, {_cell(diff['high'])}]"
                f" | {entry['better']} / {entry['worse']} | {entry['p_value']:.3g} | {'yes' if entry['distinguishable'] else 'no'} |"
            )
        found = [group for group, entry in block.items() if entry["distinguishable"]]
        words.append(
            f"- {pair}: distinguishable from noise at α = {alpha:.2g} on {', '.join(found)}."
            if found
            else f"- {pair}: no difference is distinguishable from noise at α = {alpha:.2g} (p ≥ α or the interval holds 0)."
        )
    return [*lines, "", *words]


def study_markdown(
    accuracy: Mapping[str, Mapping[str, Mapping[str, Any]]],
    paired: Mapping[str, Mapping[str, Mapping[str, Any]]],
    images: Mapping[str, Mapping[str, float]],
    costs: Mapping[str, Mapping[str, Any]],
    budgets: Mapping[str, Any],
    confidence: float,
    gallery: str,
) -> str:
    """``reports/study.md``: every number comes from the arguments (see :mod:`omni_r1.stages.study`)."""
    alpha = 1.0 - confidence
    cost_keys = list(next(iter(costs.values())))
    lines = [
        "# Does drawing help? Generated vs text-only vs rendered images",
        "",
        "Same records, same base, same budgets in every regime (`study` in params.yaml):",
        "",
        *[f"- `{key}`: {value}" for key, value in budgets.items()],
        "",
        "## Accuracy per regime and Uni-Task",
        "",
        *accuracy_table(accuracy, confidence),
        "",
        "## Paired differences on the same items",
        "",
        *paired_lines(paired, alpha),
        "",
        "## Images",
        "",
        "| regime | images drawn by | images per answer | perception score | fidelity to the executor |",
        "|---|---|---|---|---|",
        *[
            f"| {regime} | {IMAGE_SOURCE[regime]} | {_cell(s['images_per_answer'])} | {_cell(s['perception'])} | {_cell(s['fidelity'])} |"
            for regime, s in images.items()
        ],
        "",
        "## What each answer cost",
        "",
        f"| regime | {' | '.join(cost_keys)} |",
        "|---|" + "---|" * len(cost_keys),
        *[f"| {regime} | {' | '.join(_cell(c[k], 1) for k in cost_keys)} |" for regime, c in costs.items()],
        "",
        "Trained tokens: PeSFT mean labelled tokens per sequence × sequences per step × steps, plus the policy "
        "tokens in the PeRPO losses; generated tokens: policy-chosen tokens of the PeRPO training rollouts "
        "(inserted rendered images excluded).",
        "",
        f"## Gallery\n\nThe same Omni-Bench items under every regime: [{gallery}]({gallery})",
        "",
    ]
    return "\n".join(lines)
