"""Functional-image fidelity of one evaluated checkpoint, per Uni-Task, with bootstrap intervals.

The per-image scores come from the one scorer :func:`omni_r1.rewards.fidelity.score_fidelity`
(the same code as the optional PeRPO fidelity reward). Here they are summarised per Omni-Bench
slice and over all answers (``average``): for each of code agreement, embedding distance,
PSNR and the pass share (headline score ≥ ``fidelity.pass_threshold``), the pooled mean over
scored images with a 95% cluster-bootstrap interval that resamples answers
(:func:`omni_r1.eval.intervals.bootstrap_ratio`), plus the image counts per status
(scored / no_action / rejected), so no image is dropped silently.

Written under ``"fidelity"`` in ``metrics/omnibench_<track>_<step>.json``::

    {"headline": "code_agreement", "pass_threshold": 0.5,
     "natural": {"images": {"scored": 7, "no_action": 1, "rejected": 0},
                 "code_agreement": {"mean": 0.41, "low": 0.30, "high": 0.52},
                 "embedding_distance": {...}, "psnr": {...}, "pass_share": {...}},
     ..., "average": {...}}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from omni_r1.config import Config
from omni_r1.data.records import UNI_TASKS, from_png
from omni_r1.data.synthetic import initial_state
from omni_r1.eval.intervals import bootstrap_ratio
from omni_r1.executor import Executor
from omni_r1.rewards.fidelity import (
    STATUSES,
    FidelityInput,
    FidelityScores,
    ImageStatus,
    score_fidelity,
    visual_codec,
)

AVERAGE = "average"
SCORE_NAMES = ("code_agreement", "embedding_distance", "psnr", "pass_share")


def fidelity_inputs(items: Sequence[Any], generations: Sequence[Any]) -> list[FidelityInput]:
    """One scorer input per answer: its text and codes, the record's first input image and task state."""
    inputs = []
    for item, generation in zip(items, generations, strict=True):
        record = item.record
        image = from_png(record.input_images[0]) if record.input_images else None
        inputs.append(FidelityInput(generation.text, generation.codes, image, initial_state(record)))
    return inputs


def score_generations(omni: Any, items: Sequence[Any], generations: Sequence[Any], cfg: Config) -> FidelityScores:
    """:func:`score_fidelity` of every answer with the checkpoint's own VQ tokenizer."""
    codec = visual_codec(omni.model.model.vqmodel, getattr(omni, "vq_decoder", None), cfg.fidelity.batch_size)
    return score_fidelity(
        fidelity_inputs(items, generations), Executor(cfg.executor), codec,
        cfg.fidelity.psnr_cap_db, cfg.fidelity.headline,
    )  # fmt: skip


def image_values(scores: FidelityScores, pass_threshold: float) -> dict[str, torch.Tensor]:
    """Per-image value of each summary score: [M] each, NaN where the image is not scored."""
    passed = (scores.headline >= pass_threshold).double()  # [M]
    return {
        "code_agreement": scores.code_agreement,
        "embedding_distance": scores.embedding_distance,
        "psnr": scores.psnr,
        "pass_share": torch.where(torch.isnan(scores.headline), scores.headline, passed),
    }


def per_answer_sums(values: torch.Tensor, owners: torch.Tensor, answers: int) -> tuple[list[float], list[float]]:
    """Σ of the non-NaN values and their count per answer: [M], [M] → ([B], [B])."""
    present = ~torch.isnan(values)  # [M]
    sums = torch.zeros(answers, dtype=torch.float64).index_add_(0, owners[present], values[present])
    counts = torch.zeros(answers, dtype=torch.float64).index_add_(
        0, owners[present], torch.ones(int(present.sum()), dtype=torch.float64)
    )  # [B]
    return sums.tolist(), counts.tolist()


def group_summary(
    answers: Sequence[int],
    scores: FidelityScores,
    values: dict[str, torch.Tensor],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Counts and interval of every score over the images of ``answers`` (indices into the batch)."""
    chosen = torch.tensor(list(answers), dtype=torch.long)
    in_group = torch.isin(scores.response_index, chosen)  # [M]
    statuses = [s for s, keep in zip(scores.status, in_group.tolist(), strict=True) if keep]
    summary: dict[str, Any] = {"images": {s.value: statuses.count(s) for s in STATUSES}}
    for name, per_image in values.items():
        sums, counts = per_answer_sums(per_image, scores.response_index, scores.response_count)
        interval = bootstrap_ratio(
            [sums[a] for a in answers], [counts[a] for a in answers], resamples, confidence, seed
        )  # fmt: skip
        summary[name] = interval.as_dict()
    return summary


def fidelity_metrics(slices: Sequence[str], scores: FidelityScores, cfg: Config) -> dict[str, Any]:
    """The ``"fidelity"`` block of the metrics file (see the module docstring).

    Args:
        slices: the slice of every answer, [B].
        scores: the per-image scores of the same answers.
        cfg: ``fidelity`` (headline, pass threshold), ``intervals``, ``run.seed``.
    """
    if len(slices) != scores.response_count:
        raise ValueError(f"{len(slices)} slices for {scores.response_count} scored answers")
    values = image_values(scores, cfg.fidelity.pass_threshold)
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(slices):
        groups.setdefault(name, []).append(index)
    order = [s for s in UNI_TASKS if s in groups] + sorted(set(groups) - set(UNI_TASKS))
    groups = {name: groups[name] for name in order} | {AVERAGE: list(range(len(slices)))}
    block: dict[str, Any] = {"headline": cfg.fidelity.headline, "pass_threshold": cfg.fidelity.pass_threshold}
    for name, answers in groups.items():
        block[name] = group_summary(
            answers, scores, values, cfg.intervals.resamples, cfg.intervals.confidence, cfg.run.seed
        )  # fmt: skip
    return block


def row_fields(scores: FidelityScores) -> list[dict[str, Any]]:
    """Per-answer predictions columns: status and scores of each generated image, and the mean headline."""
    per_answer = scores.per_response()  # [B]
    rows: list[dict[str, Any]] = [
        {"fidelity": float(per_answer[b]), "fidelity_status": [], "fidelity_code_agreement": [],
         "fidelity_embedding_distance": [], "fidelity_psnr": []}
        for b in range(scores.response_count)
    ]  # fmt: skip
    for m, owner in enumerate(scores.response_index.tolist()):
        row = rows[owner]
        row["fidelity_status"].append(scores.status[m].value)
        row["fidelity_code_agreement"].append(float(scores.code_agreement[m]))
        row["fidelity_embedding_distance"].append(float(scores.embedding_distance[m]))
        row["fidelity_psnr"].append(float(scores.psnr[m]))
    return rows


def mlflow_fidelity_metrics(block: dict[str, Any]) -> dict[str, float]:
    """``fidelity.<group>.<score>[.low|.high]`` and ``fidelity.<group>.images.<status>``, NaN/None left out."""
    flat: dict[str, float] = {}
    for group, summary in block.items():
        if not isinstance(summary, dict):
            continue
        for status, count in summary["images"].items():
            flat[f"fidelity.{group}.images.{status}"] = float(count)
        for name in SCORE_NAMES:
            for key, value in summary[name].items():
                if value is not None and not math.isnan(value):
                    suffix = "" if key == "mean" else f".{key}"
                    flat[f"fidelity.{group}.{name}{suffix}"] = float(value)
    return flat


def scored_count(block: dict[str, Any]) -> int:
    """Scored images over all answers."""
    return int(block[AVERAGE]["images"][ImageStatus.SCORED.value])
