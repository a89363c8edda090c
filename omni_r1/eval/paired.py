"""Accuracy intervals and paired comparisons of two checkpoints on the same benchmark items.

Not in the paper (which reports point accuracies on 800 items); on the small synthetic bench
one answer moves a slice by several points, so every accuracy carries a seeded percentile-
bootstrap interval (:mod:`omni_r1.eval.intervals`) and every comparison is paired:

- the difference of two checkpoints B − A is the mean of the per-item differences
  ``d_i = b_i − a_i`` (b_i, a_i ∈ {0, 1}); its interval resamples *items* jointly (the pair
  (a_i, b_i) stays together), i.e. :func:`omni_r1.eval.intervals.bootstrap_mean` of ``d``;
- the exact two-sided sign test on the discordant items (McNemar's exact test): with
  ``better`` items right only under B and ``worse`` items right only under A,
  ``p = min(1, 2 · P[Binom(better + worse, 1/2) ≤ min(better, worse)])``; no discordant item
  gives p = 1;
- the power line: McNemar's normal approximation (Connor 1987) links the items per slice n,
  the share of discordant items ψ, the difference δ, the two-sided level α and the power 1 − β:
  ``n = (z_{1−α/2} √ψ + z_{1−β} √(ψ − δ²))² / δ²``. :func:`items_needed` solves it for n,
  :func:`minimum_detectable_difference` for δ (bisection; the right side falls in δ).

A difference is called distinguishable from noise at level α when the exact test's p < α and
the paired interval excludes zero; otherwise it is not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from omni_r1.data.records import UNI_TASKS
from omni_r1.eval.intervals import NO_DATA, Interval, bootstrap_mean

ALL_ITEMS = "average"  # the key of the whole bench, as in the accuracy metrics
ACCURACY_INTERVAL_KEY = "accuracy_interval"  # the block of omnibench_<track>_<step>.json


def sign_test_p(better: int, worse: int) -> float:
    """Exact two-sided sign test (McNemar's exact test) on the discordant counts.

    Args:
        better: items right under B and wrong under A.
        worse: items right under A and wrong under B.

    Returns:
        ``min(1, 2 · Σ_{k ≤ min(better, worse)} C(n, k) / 2^n)`` with n = better + worse; 1.0 when n = 0.
    """
    if better < 0 or worse < 0:
        raise ValueError(f"discordant counts must be >= 0, got better={better}, worse={worse}")
    discordant = better + worse
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(better, worse) + 1))
    return min(1.0, 2.0 * tail / 2**discordant)


def items_needed(discordance: float, difference: float, alpha: float, power: float) -> int | None:
    """Items per slice for a paired difference ``difference`` at two-sided level ``alpha`` and ``power``.

    Connor's approximation (module docstring); None when it has no solution (no discordance,
    or a difference larger than the discordance allows, δ² ≥ ψ).
    """
    if not 0.0 < difference < 1.0:
        raise ValueError(f"difference {difference} must be in (0, 1)")
    if discordance <= difference**2:
        return None
    z_alpha, z_power = NormalDist().inv_cdf(1.0 - alpha / 2.0), NormalDist().inv_cdf(power)
    root = z_alpha * math.sqrt(discordance) + z_power * math.sqrt(discordance - difference**2)
    return math.ceil(root**2 / difference**2)


def minimum_detectable_difference(items: int, discordance: float, alpha: float, power: float) -> float | None:
    """The smallest paired difference ``items`` items detect at ``alpha`` with ``power`` (Connor).

    Bisection on δ ∈ (0, √ψ) of ``n(δ) = items`` (n falls as δ grows); None without items or
    discordance.
    """
    if items < 1 or discordance <= 0.0:
        return None
    z_alpha, z_power = NormalDist().inv_cdf(1.0 - alpha / 2.0), NormalDist().inv_cdf(power)

    def needed(delta: float) -> float:  # the continuous n(δ)
        root = z_alpha * math.sqrt(discordance) + z_power * math.sqrt(max(discordance - delta**2, 0.0))
        return root**2 / delta**2

    low, high = 0.0, math.sqrt(discordance)
    if needed(high) > items:  # even the largest possible difference needs more items
        return None
    for _ in range(100):
        middle = (low + high) / 2.0
        low, high = (middle, high) if needed(middle) > items else (low, middle)
    return high


@dataclass(frozen=True)
class PairedComparison:
    """B − A on the items both answered."""

    items: int
    accuracy_a: float
    accuracy_b: float
    difference: Interval  # mean of b_i − a_i with its paired-bootstrap interval
    better: int  # right only under B
    worse: int  # right only under A
    p_value: float  # exact two-sided sign test

    def distinguishable(self, alpha: float) -> bool:
        """p < α and the interval excludes zero (see the module docstring)."""
        interval = self.difference
        excludes_zero = not math.isnan(interval.low) and (interval.low > 0.0 or interval.high < 0.0)
        return self.p_value < alpha and excludes_zero

    def as_dict(self, alpha: float) -> dict[str, Any]:
        return {
            "items": self.items,
            "accuracy_a": self.accuracy_a,
            "accuracy_b": self.accuracy_b,
            "difference": self.difference.as_dict(),
            "better": self.better,
            "worse": self.worse,
            "p_value": self.p_value,
            "distinguishable": self.distinguishable(alpha),
        }


def compare_paired(
    correct_a: Sequence[bool], correct_b: Sequence[bool], resamples: int, confidence: float, seed: int
) -> PairedComparison:
    """Paired comparison of two verdict lists over the same items, in the same order.

    Args:
        correct_a, correct_b: [n] verdicts of checkpoint A and B on item i.
        resamples, confidence, seed: the bootstrap (``intervals`` section, ``run.seed``).
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"{len(correct_a)} verdicts of A for {len(correct_b)} of B: items must be paired")
    a = [int(bool(value)) for value in correct_a]
    b = [int(bool(value)) for value in correct_b]
    n = len(a)
    if n == 0:
        return PairedComparison(0, math.nan, math.nan, NO_DATA, 0, 0, 1.0)
    differences = [right - left for left, right in zip(a, b, strict=True)]  # [n] in {-1, 0, 1}
    better, worse = differences.count(1), differences.count(-1)
    return PairedComparison(
        items=n,
        accuracy_a=sum(a) / n,
        accuracy_b=sum(b) / n,
        difference=bootstrap_mean(differences, resamples, confidence, seed),
        better=better,
        worse=worse,
        p_value=sign_test_p(better, worse),
    )


def group_order(slices: Sequence[str]) -> list[str]:
    """Uni-Task slices first, then any other slice name, then the whole bench."""
    present = set(slices)
    return [s for s in UNI_TASKS if s in present] + sorted(present - set(UNI_TASKS)) + [ALL_ITEMS]


def accuracy_intervals(
    slices: Sequence[str], correct: Sequence[bool], resamples: int, confidence: float, seed: int
) -> dict[str, dict[str, Any]]:
    """Accuracy with its bootstrap interval per slice and over all items (``average``).

    Returns:
        slice → ``{"mean", "low", "high", "items"}`` (None for a NaN value).
    """
    if len(slices) != len(correct):
        raise ValueError(f"{len(slices)} slices for {len(correct)} verdicts")
    block = {}
    for group in group_order(slices):
        values = [float(bool(ok)) for name, ok in zip(slices, correct, strict=True) if group in (name, ALL_ITEMS)]
        block[group] = {**bootstrap_mean(values, resamples, confidence, seed).as_dict(), "items": len(values)}
    return block


def mlflow_interval_metrics(block: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``omnibench_ci.<slice>.low`` / ``.high`` of an :func:`accuracy_intervals` block (no NaN entries)."""
    return {
        f"omnibench_ci.{group}.{bound}": float(summary[bound])
        for group, summary in block.items()
        for bound in ("low", "high")
        if summary[bound] is not None
    }


def paired_by_slice(
    rows_a: Sequence[Mapping[str, Any]],
    rows_b: Sequence[Mapping[str, Any]],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, PairedComparison]:
    """Per slice and over all items, B − A on the records both prediction tables hold.

    Args:
        rows_a, rows_b: predictions rows (``record_id``, ``slice``, ``verdict``) of A and B.

    Raises:
        ValueError: a record id appears twice in one table, or the two tables put one record
            in different slices.
    """
    by_id_a, by_id_b = _rows_by_id(rows_a, "A"), _rows_by_id(rows_b, "B")
    shared = [record for record in by_id_a if record in by_id_b]  # A's order
    for record in shared:
        if by_id_a[record]["slice"] != by_id_b[record]["slice"]:
            raise ValueError(
                f"record {record!r}: field 'slice' is {by_id_a[record]['slice']!r} in A, {by_id_b[record]['slice']!r} in B"
            )
    slices = [str(by_id_a[record]["slice"]) for record in shared]
    comparisons = {}
    for group in group_order(slices):
        chosen = [r for r, name in zip(shared, slices, strict=True) if group in (name, ALL_ITEMS)]
        comparisons[group] = compare_paired(
            [by_id_a[r]["verdict"] for r in chosen], [by_id_b[r]["verdict"] for r in chosen], resamples, confidence, seed
        )
    return comparisons


def _rows_by_id(rows: Sequence[Mapping[str, Any]], side: str) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        record = str(row["record_id"])
        if record in found:
            raise ValueError(f"predictions {side}: record {record!r} appears twice (field 'record_id')")
        found[record] = row
    return found
