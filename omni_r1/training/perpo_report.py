"""What a PeRPO run reports: the summary metrics file and the gallery of sampled rollouts.

:func:`summary_metrics` turns the trainer's per-step history and probes into
``metrics/perpo_<track>.json``; :func:`rollout_gallery_html` shows sampled responses as an
HTML trajectory gallery (:mod:`omni_r1.gallery`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from omni_r1.gallery import GalleryEntry, gallery_entry, render_gallery_html
from omni_r1.training.rollout import PromptItem, Response, finite_mean
from omni_r1.trajectory import parse_trajectory


def _window(history: Sequence[dict[str, float]], key: str, steps: slice) -> float | None:
    value = finite_mean([h[key] for h in history[steps] if key in h])
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
    probes: dict[str, dict[str, float]] | None,
    window: int,
) -> dict[str, float | int | str | None]:
    """``metrics/perpo_<track>.json``: values of the starting and of the final policy.

    ``<name>_step0`` / ``<name>_last`` come from the fixed-prompt probes when both exist
    (before any update / after the last one), otherwise from the first and last training
    steps' rollouts (``source`` says which). ``train_reward_first<w>`` / ``_last<w>`` are
    training-rollout means over the first and last ``window`` (``perpo.reward_window``) steps;
    ``history`` holds the
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
    summary["tokens_generated"] = int(sum(h.get("tokens/generated", 0.0) for h in history))  # training rollouts
    summary["tokens_trained"] = int(sum(h.get("tokens/trained", 0.0) for h in history))
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
    """The first ``limit`` responses as gallery entries; their images decoded when ``decode`` is given."""
    entries = []
    for response in list(responses)[:limit]:
        prompt = prompts[response.prompt_index]
        parsed = parse_trajectory(response.text)
        has_codes = decode is not None and response.image_codes.shape[0]
        verdict = (
            f"R={response.reward:.3f} acc={response.accuracy:.2f} fmt={response.format:.0f} "
            f"pe={response.perception:.3f}"
        )
        entries.append(
            gallery_entry(
                prompt.question, parsed.steps, decode(response.image_codes) if has_codes else [],
                parsed.final_answer, input_images=prompt.input_images, choices=prompt.choices,
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
    """The HTML gallery page of the first ``limit`` responses."""
    return render_gallery_html(gallery_entries(responses, prompts, decode, limit), title)
