"""Paired comparisons, accuracy intervals and the power lines against hand-worked values."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from omni_r1.eval.paired import (
    accuracy_intervals,
    compare_paired,
    items_needed,
    minimum_detectable_difference,
    mlflow_interval_metrics,
    paired_by_slice,
    sign_test_p,
)

BOOT = {"resamples": 2000, "confidence": 0.95, "seed": 0}


def test_sign_test_by_hand_and_against_scipy() -> None:
    # 3 better, 0 worse: n = 3, tail = C(3, 0) = 1, p = 2 · 1/8 = 0.25
    assert sign_test_p(3, 0) == 0.25
    # 7 better, 1 worse: n = 8, tail = C(8, 0) + C(8, 1) = 9, p = 2 · 9/256 = 0.0703125
    assert sign_test_p(7, 1) == 0.0703125
    # 9 vs 1: tail = 1 + 10 = 11, p = 22/1024 = 0.021484375 (below 0.05)
    assert sign_test_p(1, 9) == 0.021484375
    # 2 vs 2: tail = 1 + 4 + 6 = 11, 2 · 11/16 > 1, capped at 1; no discordant item: p = 1
    assert sign_test_p(2, 2) == 1.0 and sign_test_p(0, 0) == 1.0
    for better, worse in ((5, 0), (12, 4), (3, 9), (20, 11)):
        assert sign_test_p(better, worse) == pytest.approx(binomtest(better, better + worse).pvalue, rel=1e-12)
    with pytest.raises(ValueError, match="discordant counts"):
        sign_test_p(-1, 2)


def test_paired_difference_by_hand() -> None:
    # a = [1, 0, 0, 1], b = [1, 1, 1, 0]: d = [0, 1, 1, -1], mean 0.25; better 2, worse 1;
    # sign test n = 3, tail = C(3,0) + C(3,1) = 4, p = 2 · 4/8 = 1
    c = compare_paired([1, 0, 0, 1], [1, 1, 1, 0], **BOOT)
    assert (c.items, c.accuracy_a, c.accuracy_b, c.better, c.worse, c.p_value) == (4, 0.5, 0.75, 2, 1, 1.0)
    assert c.difference.estimate == 0.25 and not c.distinguishable(0.05)
    # d = [0, 1] (the pair (a, b) resampled jointly): resampled means 0, 0.5, 1 with
    # probabilities 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are 0 and 1
    two = compare_paired([1, 0], [1, 1], **BOOT)
    assert (two.difference.estimate, two.difference.low, two.difference.high) == (0.5, 0.0, 1.0)


def test_a_clear_difference_is_distinguishable() -> None:
    # 10 items, A wrong and B right on each: d = 1 everywhere, every resample is 1 → [1, 1];
    # p = 2 · C(10, 0)/2^10 = 2/1024 < 0.05
    c = compare_paired([0] * 10, [1] * 10, **BOOT)
    assert (c.difference.low, c.difference.high, c.p_value) == (1.0, 1.0, 2 / 1024)
    assert c.distinguishable(0.05) and not c.distinguishable(0.001)


def test_degenerate_comparisons() -> None:
    # all correct under both: d = 0 everywhere → [0, 0], no discordant item → p = 1
    same = compare_paired([1] * 5, [1] * 5, **BOOT)
    assert (same.difference.estimate, same.difference.low, same.difference.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not same.distinguishable(0.05)
    # n = 1, A wrong, B right: every resample is that one item → [1, 1], but p = 2 · 1/2 = 1
    one = compare_paired([0], [1], **BOOT)
    assert (one.difference.low, one.difference.high, one.p_value) == (1.0, 1.0, 1.0)
    assert not one.distinguishable(0.05)
    # no items: no estimate, p = 1
    empty = compare_paired([], [], **BOOT)
    assert empty.items == 0 and math.isnan(empty.difference.estimate) and empty.p_value == 1.0
    assert empty.as_dict(0.05)["difference"] == {"mean": None, "low": None, "high": None}
    with pytest.raises(ValueError, match="must be paired"):
        compare_paired([1], [1, 0], **BOOT)


def test_accuracy_intervals_per_slice_and_overall() -> None:
    # natural [1, 1] (all correct: [1, 1]); structured [0] (n = 1: [0, 0]);
    # all items [1, 1, 0]: mean 2/3, resampled means 0, 1/3, 2/3, 1 with P(0) = 1/27 > 2.5%,
    # so the low end is 0; P(1) = 8/27 > 2.5%, so the high end is 1
    block = accuracy_intervals(["natural", "natural", "structured"], [True, True, False], **BOOT)
    assert list(block) == ["natural", "structured", "average"]
    assert block["natural"] == {"mean": 1.0, "low": 1.0, "high": 1.0, "items": 2}
    assert block["structured"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "items": 1}
    assert block["average"]["mean"] == pytest.approx(2 / 3)
    assert (block["average"]["low"], block["average"]["high"], block["average"]["items"]) == (0.0, 1.0, 3)
    # an empty bench: only the overall entry, with no value
    assert accuracy_intervals([], [], **BOOT) == {"average": {"mean": None, "low": None, "high": None, "items": 0}}
    metrics = mlflow_interval_metrics(block)
    assert metrics["omnibench_ci.structured.high"] == 0.0 and len(metrics) == 6
    assert mlflow_interval_metrics(accuracy_intervals([], [], **BOOT)) == {}


def test_paired_by_slice_matches_records_by_id() -> None:
    rows_a = [{"record_id": "r1", "slice": "natural", "verdict": False},
              {"record_id": "r2", "slice": "structured", "verdict": True},
              {"record_id": "r3", "slice": "natural", "verdict": False}]  # fmt: skip
    rows_b = [{"record_id": "r3", "slice": "natural", "verdict": True},  # other order, r2 missing
              {"record_id": "r1", "slice": "natural", "verdict": True}]  # fmt: skip
    groups = paired_by_slice(rows_a, rows_b, **BOOT)
    assert list(groups) == ["natural", "average"]  # structured has no shared item
    assert (groups["natural"].items, groups["natural"].better, groups["natural"].worse) == (2, 2, 0)
    # p = 2 · 1/4 = 0.5
    assert groups["average"].p_value == 0.5
    with pytest.raises(ValueError, match="'r1' appears twice"):
        paired_by_slice(rows_a + rows_a[:1], rows_b, **BOOT)
    with pytest.raises(ValueError, match="record 'r1': field 'slice'"):
        paired_by_slice(rows_a, [{"record_id": "r1", "slice": "structured", "verdict": True}], **BOOT)


def test_sizing_by_hand() -> None:
    # ψ = 0.2, δ = 0.1, α = 0.05, power 0.8: z = 1.959964, 0.841621;
    # root = 1.959964 · √0.2 + 0.841621 · √0.19 = 0.876523 + 0.366854 = 1.243377;
    # n = 1.243377² / 0.01 = 154.6 → 155 items
    assert items_needed(0.2, 0.1, 0.05, 0.8) == 155
    # the inverse: 155 items detect just under 0.1, 154 items just over it
    assert minimum_detectable_difference(155, 0.2, 0.05, 0.8) < 0.1 < minimum_detectable_difference(154, 0.2, 0.05, 0.8)
    # no discordance, or δ² ≥ ψ: no answer
    assert items_needed(0.0, 0.1, 0.05, 0.8) is None and items_needed(0.01, 0.1, 0.05, 0.8) is None
    assert minimum_detectable_difference(0, 0.2, 0.05, 0.8) is None
    assert minimum_detectable_difference(10, 0.0, 0.05, 0.8) is None
    # one item cannot detect anything at ψ = 0.2 (even δ = √ψ needs (1.96 · 0.447)² / 0.2 = 3.84 items)
    assert minimum_detectable_difference(1, 0.2, 0.05, 0.8) is None
