"""Seeded percentile-bootstrap confidence intervals for evaluation metrics.

Every interval resamples *items* (benchmark answers) with replacement, ``resamples`` times,
from ``numpy.random.default_rng(seed)``, and takes the ``(1 − confidence)/2`` and
``(1 + confidence)/2`` quantiles of the resampled statistic (linear interpolation,
``numpy.quantile``'s default). The statistic is a pooled ratio ``Σ num / Σ den`` over the
resampled items:

- accuracy: num = 1 if correct else 0, den = 1 (a plain mean, :func:`bootstrap_mean`);
- a per-image score pooled over answers with several images: num = the sum of an answer's
  image scores, den = its number of scored images (a cluster bootstrap: images of one answer
  are resampled together, since they are not independent).

A resample whose Σ den is 0 has no value and is left out of the quantiles. One call draws
one ``[resamples, n]`` index matrix, so memory grows with ``resamples · n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval; NaN everywhere when there is no data."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-safe: NaN becomes None."""
        return {key: (None if math.isnan(value) else value) for key, value in
                (("mean", self.estimate), ("low", self.low), ("high", self.high))}  # fmt: skip


NO_DATA = Interval(math.nan, math.nan, math.nan)


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """``Σ num / Σ den`` with a percentile-bootstrap interval over items.

    Args:
        numerators, denominators: [n] per item (see the module docstring).
        resamples: bootstrap resamples.
        confidence: e.g. 0.95 for a 95% interval.
        seed: seeds ``numpy.random.default_rng``.

    Returns:
        :class:`Interval`; :data:`NO_DATA` when there are no items or Σ den is 0.
    """
    num = np.asarray(numerators, dtype=np.float64)  # [n]
    den = np.asarray(denominators, dtype=np.float64)  # [n]
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"numerators {num.shape} and denominators {den.shape} must be equal 1-D shapes")
    if num.size == 0 or den.sum() == 0:
        return NO_DATA
    if not 0.0 < confidence < 1.0 or resamples < 1:
        raise ValueError(f"confidence {confidence} must be in (0, 1) and resamples {resamples} >= 1")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, num.size, size=(resamples, num.size))  # [R, n]
    totals = den[index].sum(axis=1)  # [R]
    valid = totals > 0
    ratios = num[index].sum(axis=1)[valid] / totals[valid]  # [R']
    alpha = 1.0 - confidence
    low, high = np.quantile(ratios, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(float(num.sum() / den.sum()), float(low), float(high))


def bootstrap_mean(values: Sequence[float], resamples: int, confidence: float, seed: int) -> Interval:
    """The mean of ``values`` with a percentile-bootstrap interval (see :func:`bootstrap_ratio`)."""
    return bootstrap_ratio(values, [1.0] * len(values), resamples, confidence, seed)
