"""The report's paired comparisons: which checkpoint differences stand out from noise.

Pairs (B − A, on the Omni-Bench items both answered, :mod:`omni_r1.eval.paired`):

- every PeRPO checkpoint ``<track>_<k>`` against the PeSFT checkpoint it started from
  (``<track>_pesft``), per track;
- the perception-reward ablation at equal steps: PeRPO step k (with R_pe) against
  ``<track>_no_perception_<k>`` (without it).

Each comparison gives, per slice and over all items, the accuracy difference with its
paired-bootstrap interval, the discordant counts and the exact sign-test p-value, and the
smallest difference that slice's item count detects at the configured power given the
discordance observed there. The page states which differences are distinguishable at the
configured confidence, and how many items per slice the target difference needs at the
pooled discordance of all comparisons (Connor's approximation). Not in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omni_r1.config import IntervalsConfig
from omni_r1.eval.checkpoints import PESFT_STEP, CheckpointRef
from omni_r1.eval.paired import (
    ALL_ITEMS,
    PairedComparison,
    items_needed,
    minimum_detectable_difference,
    paired_by_slice,
)
from omni_r1.eval.report import SLICE_TITLES, checkpoint_label, step_order

PERPO_VS_PESFT = "perpo_vs_pesft"
PERCEPTION_ABLATION = "with_vs_without_perception"


@dataclass(frozen=True)
class Pair:
    """B − A: ``kind`` is :data:`PERPO_VS_PESFT` or :data:`PERCEPTION_ABLATION`."""

    a: CheckpointRef
    b: CheckpointRef
    kind: str

    @property
    def label(self) -> str:
        return f"{checkpoint_label(self.b)} − {checkpoint_label(self.a)}"


def comparison_pairs(refs: Sequence[CheckpointRef]) -> list[Pair]:
    """PeRPO k vs its track's PeSFT, then PeRPO k vs no_perception_k, for the checkpoints present."""
    present = set(refs)
    ordered = sorted(present, key=step_order)
    pairs = [
        Pair(CheckpointRef(ref.track, PESFT_STEP), ref, PERPO_VS_PESFT)
        for ref in ordered
        if ref.kind == "perpo" and CheckpointRef(ref.track, PESFT_STEP) in present
    ]
    pairs += [
        Pair(ref, CheckpointRef(ref.track, str(ref.perpo_step)), PERCEPTION_ABLATION)
        for ref in ordered
        if ref.kind == "no_perception" and CheckpointRef(ref.track, str(ref.perpo_step)) in present
    ]
    return pairs


def compare_checkpoints(
    pairs: Sequence[Pair], predictions: Mapping[CheckpointRef, Sequence[Mapping[str, Any]]], intervals: IntervalsConfig, seed: int
) -> list[tuple[Pair, dict[str, PairedComparison]]]:
    """Every pair's per-slice and overall comparison (``intervals``: resamples, confidence)."""
    return [
        (pair, paired_by_slice(predictions[pair.a], predictions[pair.b], intervals.resamples, intervals.confidence, seed))
        for pair in pairs
    ]


def pooled_discordance(compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]]) -> float | None:
    """Σ discordant / Σ items over the whole-bench entry of every comparison; None without items."""
    overall = [groups[ALL_ITEMS] for _, groups in compared]
    items = sum(c.items for c in overall)
    return sum(c.better + c.worse for c in overall) / items if items else None


def detectable(comparison: PairedComparison, intervals: IntervalsConfig) -> float | None:
    """The smallest difference this comparison's items detect at its own discordance."""
    if comparison.items == 0:
        return None
    discordance = (comparison.better + comparison.worse) / comparison.items
    return minimum_detectable_difference(comparison.items, discordance, 1.0 - intervals.confidence, intervals.power)


def comparisons_json(
    compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]], intervals: IntervalsConfig
) -> dict[str, Any]:
    """The report's metrics file: settings, every comparison per slice, and the sizing line."""
    alpha = 1.0 - intervals.confidence
    discordance = pooled_discordance(compared)
    needed = items_needed(discordance, intervals.target_difference, alpha, intervals.power) if discordance else None
    return {
        "confidence": intervals.confidence,
        "power": intervals.power,
        "target_difference": intervals.target_difference,
        "pooled_discordance": discordance,
        "items_per_slice_for_target": needed,
        "comparisons": [
            {
                "a": pair.a.name,
                "b": pair.b.name,
                "kind": pair.kind,
                "groups": {
                    group: {**c.as_dict(alpha), "minimum_detectable_difference": detectable(c, intervals)}
                    for group, c in groups.items()
                },
            }
            for pair, groups in compared
        ],
    }


def mlflow_comparison_metrics(compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]]) -> dict[str, float]:
    """``paired.<b>_vs_<a>.<slice>.{difference,low,high,p_value}`` (NaN entries left out)."""
    metrics = {}
    for pair, groups in compared:
        for group, c in groups.items():
            values = {"difference": c.difference.estimate, "low": c.difference.low, "high": c.difference.high,
                      "p_value": c.p_value}  # fmt: skip
            for key, value in values.items():
                if not math.isnan(value):
                    metrics[f"paired.{pair.b.name}_vs_{pair.a.name}.{group}.{key}"] = float(value)
    return metrics


def _signed(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.3f}"


def difference_cell(c: PairedComparison) -> str:
    """``+0.094 [-0.031, +0.219] p=0.180`` or ``–`` without items."""
    if c.items == 0:
        return "–"
    return f"{_signed(c.difference.estimate)} [{_signed(c.difference.low)}, {_signed(c.difference.high)}] p={c.p_value:.3f}"


def comparisons_markdown(
    compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]], intervals: IntervalsConfig
) -> str:
    """The report section: tables, the verdict in words and the power and sizing lines."""
    level = f"{100 * intervals.confidence:g}%"
    if not compared:
        return "No paired comparison: no PeRPO checkpoint was evaluated beside its PeSFT start."
    alpha = 1.0 - intervals.confidence
    header = ["B − A", "Items", "Acc A", "Acc B", f"Δ [{level} paired CI] p", "B better / worse", "Min. detectable Δ", "Verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pair, groups in compared:
        c = groups[ALL_ITEMS]
        verdict = "distinguishable" if c.distinguishable(alpha) else "not distinguishable"
        mdd = detectable(c, intervals)
        lines.append(
            f"| {pair.label} | {c.items} | {c.accuracy_a:.3f} | {c.accuracy_b:.3f} | {difference_cell(c)} | "
            f"{c.better} / {c.worse} | {'–' if mdd is None else f'{mdd:.3f}'} | {verdict} |"
        )
    return "\n".join(
        [
            f"Δ = accuracy of B − accuracy of A on the same items; the interval resamples items jointly "
            f"({intervals.resamples} seeded resamples); p = exact two-sided sign test (McNemar) on the items "
            f"only one of the two got right. A difference is distinguishable from noise at {level} when p < "
            f"{alpha:.2f} and the interval excludes 0. Min. detectable Δ = the smallest difference these items "
            f"detect with power {intervals.power:g} at the share of discordant items observed in this pair.",
            "",
            "\n".join(lines),
            "",
            "Per slice:",
            "",
            slice_table(compared),
            "",
            verdict_sentences(compared, alpha, level),
            "",
            sizing_sentence(compared, intervals),
        ]
    )


def slice_table(compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]]) -> str:
    """One row per comparison, one ``Δ [CI] p`` cell per slice (– where the slice has no items)."""
    slices = [name for name in SLICE_TITLES if any(name in groups for _, groups in compared)]
    header = ["B − A", *[SLICE_TITLES[name] for name in slices]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pair, groups in compared:
        cells = [difference_cell(groups[name]) if name in groups else "–" for name in slices]
        lines.append("| " + " | ".join([pair.label, *cells]) + " |")
    return "\n".join(lines)


def verdict_sentences(compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]], alpha: float, level: str) -> str:
    """Which differences (overall and per slice) are distinguishable from noise, in words."""
    significant, total = [], 0
    for pair, groups in compared:
        for group, c in groups.items():
            if c.items == 0:
                continue
            total += 1
            if c.distinguishable(alpha):
                where = "all items" if group == ALL_ITEMS else SLICE_TITLES.get(group, group)
                significant.append(f"{pair.label} on {where} ({difference_cell(c)})")
    if not significant:
        return f"None of the {total} differences (overall and per slice) is distinguishable from noise at {level}."
    return (
        f"Distinguishable from noise at {level}: " + "; ".join(significant) + f". The other "
        f"{total - len(significant)} of {total} differences (overall and per slice) are not."
    )


def sizing_sentence(compared: Sequence[tuple[Pair, Mapping[str, PairedComparison]]], intervals: IntervalsConfig) -> str:
    """Items per slice that the target difference needs at the pooled discordance."""
    discordance = pooled_discordance(compared)
    target = f"{100 * intervals.target_difference:g}-point"
    if not discordance:
        return f"Sizing: no discordant item in any comparison, so the items a {target} difference needs cannot be estimated."
    needed = items_needed(discordance, intervals.target_difference, 1.0 - intervals.confidence, intervals.power)
    slice_items = sorted({c.items for _, groups in compared for g, c in groups.items() if g != ALL_ITEMS and c.items})
    have = ", ".join(str(n) for n in slice_items) or "none"
    need = "no item count (the target exceeds what the discordance allows)" if needed is None else f"{needed} items per slice"
    return (
        f"Sizing: over all comparisons {discordance:.3f} of the paired items are discordant; at that rate a "
        f"{target} paired difference needs {need} for power {intervals.power:g} at "
        f"{100 * intervals.confidence:g}% (McNemar, Connor's approximation). Items per slice now: {have}."
    )
