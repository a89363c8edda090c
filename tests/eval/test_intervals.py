"""Percentile-bootstrap intervals against hand-worked values and scipy's bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omni_r1.eval.intervals import NO_DATA, bootstrap_mean, bootstrap_ratio


def test_one_success_in_four_by_hand() -> None:
    # Resampling 4 items from [0, 0, 0, 1]: the number of ones is Binomial(4, 1/4):
    # P(0) = 0.316, P(1) = 0.422, P(2) = 0.211, P(3) = 0.047, P(4) = 0.004;
    # CDF of the mean: 0 → 0.316, 0.25 → 0.738, 0.5 → 0.949, 0.75 → 0.996, 1 → 1.
    # The 2.5% quantile lies in the first step (mean 0), the 97.5% quantile in the fourth
    # (0.949 < 0.975 < 0.996: mean 0.75), far from the step edges for 20000 resamples.
    interval = bootstrap_mean([0, 0, 0, 1], resamples=20000, confidence=0.95, seed=0)
    assert interval.estimate == 0.25
    assert (interval.low, interval.high) == (0.0, 0.75)


def test_two_items_by_hand() -> None:
    # [0, 1]: resampled means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are 0 and 1; the 25%..75% (50% interval) lies inside [0, 1] at 0.5's step.
    wide = bootstrap_mean([0.0, 1.0], resamples=20000, confidence=0.95, seed=1)
    assert (wide.estimate, wide.low, wide.high) == (0.5, 0.0, 1.0)
    narrow = bootstrap_mean([0.0, 1.0], resamples=20000, confidence=0.2, seed=1)  # 40%..60% quantiles
    assert (narrow.low, narrow.high) == (0.5, 0.5)


def test_pooled_ratio_by_hand() -> None:
    # items (sum, count) = (1, 2), (2, 4), (3, 6): every item's ratio is 0.5, so every resample is 0.5
    interval = bootstrap_ratio([1, 2, 3], [2, 4, 6], resamples=500, confidence=0.95, seed=0)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.5, 0.5)
    # pooled, not the mean of ratios: (1 + 0) / (1 + 3) = 0.25 (mean of ratios would be 0.5)
    assert bootstrap_ratio([1, 0], [1, 3], resamples=10, confidence=0.95, seed=0).estimate == 0.25


def test_resamples_without_images_are_left_out() -> None:
    # item 1 has no scored image: resamples made of it alone have no value; the others are 1.0
    interval = bootstrap_ratio([2, 0], [2, 0], resamples=1000, confidence=0.95, seed=0)
    assert (interval.estimate, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_no_data_and_bad_arguments() -> None:
    assert bootstrap_mean([], resamples=10, confidence=0.95, seed=0) is NO_DATA
    assert bootstrap_ratio([0.0], [0.0], resamples=10, confidence=0.95, seed=0) is NO_DATA
    assert NO_DATA.as_dict() == {"mean": None, "low": None, "high": None}
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([1.0], resamples=10, confidence=1.0, seed=0)
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        bootstrap_ratio([1.0, 2.0], [1.0], resamples=10, confidence=0.95, seed=0)


def test_seeded_and_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(3).random(200)
    first = bootstrap_mean(values.tolist(), resamples=4000, confidence=0.95, seed=7)
    assert first == bootstrap_mean(values.tolist(), resamples=4000, confidence=0.95, seed=7)
    assert first != bootstrap_mean(values.tolist(), resamples=4000, confidence=0.95, seed=8)
    reference = stats.bootstrap(
        (values,), np.mean, n_resamples=4000, confidence_level=0.95, method="percentile", random_state=0
    ).confidence_interval
    width = reference.high - reference.low
    assert math.isclose(first.low, reference.low, abs_tol=0.1 * width)
    assert math.isclose(first.high, reference.high, abs_tol=0.1 * width)
