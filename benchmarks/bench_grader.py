"""Grading throughput (responses/s) on ordinary answers: the bounded grader vs the unbounded path.

"bounded" is :func:`omni_r1.rewards.accuracy.grade_response` as PeRPO and evaluation call it:
the symbolic check screened and run in the reusable worker process (one pipe round-trip per
formula). "unbounded" is the same grader with the symbolic check run in this process (the
grader before the limits: math-verify called directly). Both grade the same responses.

Mixes, each of distinct answers (math-verify caches parses, so no answer repeats):

- *ordinary*: what a PeRPO batch on the project's tasks looks like — numbers, option
  letters, short texts and some formulas (1 in 5);
- *formulas*: every answer reaches sympy (the worst case for the protection's cost).

Goal: bounded ≥ 0.9 × unbounded on the ordinary mix.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from unittest import mock

from omni_r1.config import load_config
from omni_r1.rewards import accuracy
from omni_r1.rewards.registry import accuracy_settings
from omni_r1.rewards.sandbox import SymbolicOutcome, math_verify_equal

RESPONSES = 500
Pair = tuple[str, str, tuple[str, ...]]


def formula_pair(rng: random.Random) -> Pair:
    a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(1, 9)
    gold = f"{a}x^{c} + {b}"
    pred = rng.choice([f"{b} + {a}x^{c}", f"{a}x^{c} + {b + 1}", f"\\frac{{{2 * a}x^{c}}}{{2}} + {b}"])
    return pred, gold, ()


def ordinary_pair(rng: random.Random) -> Pair:
    kind = rng.choice(["number", "number", "choice", "text", "formula"])
    if kind == "number":
        gold = str(rng.randint(0, 500))
        return rng.choice([gold, str(rng.randint(0, 500)), f"{gold} cm"]), gold, ()
    if kind == "choice":
        letters = "ABCD"
        return f"({rng.choice(letters)})", rng.choice(letters), ("red", "green", "blue", "cyan")
    if kind == "text":
        words = ["red circle", "blue square", "green triangle", "left", "right", "upper left"]
        return rng.choice(words), rng.choice(words), ()
    return formula_pair(rng)


def responses(make: Callable[[random.Random], Pair], seed: int) -> list[Pair]:
    rng = random.Random(seed)
    return [
        (f"THOUGHT 1: reason {i}.\nFinal Answer: {pred}", gold, choices)
        for i, (pred, gold, choices) in enumerate(make(rng) for _ in range(RESPONSES))
    ]


def unbounded_outcome(pred: str, gold: str, settings: accuracy.AccuracySettings) -> SymbolicOutcome:
    """The symbolic check before the limits: math-verify in the grading process itself."""
    return SymbolicOutcome(math_verify_equal(gold, pred, settings.symbolic_timeout_s), False, 0)


def throughput(batch: list[Pair], settings: accuracy.AccuracySettings) -> tuple[float, list[float]]:
    started = time.perf_counter()
    scores = [accuracy.grade_response(text, gold, settings, choices).score for text, gold, choices in batch]
    return len(batch) / (time.perf_counter() - started), scores


def measure(make: Callable[[random.Random], Pair], settings: accuracy.AccuracySettings) -> tuple[float, float]:
    """Best of three (responses/s) for the bounded and the unbounded path, distinct answers each run."""
    bounded, unbounded = [], []
    for run in range(3):
        rate, bounded_scores = throughput(responses(make, seed=2 * run), settings)
        bounded.append(rate)
        with mock.patch.object(accuracy, "symbolic_outcome", unbounded_outcome):
            rate, _ = throughput(responses(make, seed=2 * run + 1), settings)
            unbounded.append(rate)
            _, unbounded_scores = throughput(responses(make, seed=2 * run), settings)
        assert bounded_scores == unbounded_scores, "the bounded grader must give the same scores"
    return max(bounded), max(unbounded)


def main() -> None:
    settings = accuracy_settings(load_config().reward)
    accuracy.grade_response("Final Answer: x + 1", "1 + x", settings)  # start the worker
    math_verify_equal("x + 1", "1 + x", settings.symbolic_timeout_s)  # import math-verify here too
    ordinary_bounded, ordinary_unbounded = measure(ordinary_pair, settings)
    formula_bounded, formula_unbounded = measure(formula_pair, settings)
    print(
        f"grader: ordinary answers {ordinary_bounded:.0f} responses/s bounded vs "
        f"{ordinary_unbounded:.0f} unbounded = {ordinary_bounded / ordinary_unbounded:.2f}x (goal >= 0.9); "
        f"formulas only {formula_bounded:.0f} vs {formula_unbounded:.0f} responses/s = "
        f"{formula_bounded / formula_unbounded:.2f}x [{RESPONSES} distinct responses per run, best of 3]"
    )


if __name__ == "__main__":
    main()
