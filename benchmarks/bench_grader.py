"""Grading throughput (responses/s) on ordinary answers: the bounded grader vs the unbounded path.

"batch" is :func:`omni_r1.rewards.accuracy.grade_responses` as PeRPO and evaluation call it
(groups of ``GROUP`` responses, one worker round-trip per group); "single" is
:func:`~omni_r1.rewards.accuracy.grade_response` one response at a time (one round-trip per
formula). Both screen the formulas and run sympy in the reusable worker process.
"unbounded" is the same grader with the symbolic check run in this process (the grader
before the limits: math-verify called directly). All grade the same kind of responses.

Mixes, each of distinct answers (math-verify caches parses, so no answer repeats):

- *ordinary*: what a PeRPO batch on the project's tasks looks like — numbers, option
  letters, short texts and some formulas (1 in 5);
- *formulas*: every answer reaches sympy (the worst case for the protection's cost).

Goal: batch ≥ 0.9 × unbounded on the ordinary mix. Rates are wall-clock; on a machine whose
cores are shared the worker waits for a core at each round-trip, so the CPU milliseconds per
response (this process plus the worker) are printed beside them: the protection's own cost.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from omni_r1.config import load_config
from omni_r1.rewards import accuracy
from omni_r1.rewards.registry import accuracy_settings
from omni_r1.rewards.sandbox import SymbolicOutcome, math_verify_equal, symbolic_worker

RESPONSES = 480
GROUP = 16  # PeRPO's default generation batch: 2 prompts x 8 rollouts
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


def one_by_one(batch: list[Pair], settings: accuracy.AccuracySettings) -> list[float]:
    return [accuracy.grade_response(text, gold, settings, choices).score for text, gold, choices in batch]


def grouped(batch: list[Pair], settings: accuracy.AccuracySettings) -> list[float]:
    requests = [accuracy.GradeRequest(text, gold, choices) for text, gold, choices in batch]
    groups = [requests[i : i + GROUP] for i in range(0, len(requests), GROUP)]
    return [result.score for group in groups for result in accuracy.grade_responses(group, settings)]


Grader = Callable[[list[Pair], accuracy.AccuracySettings], list[float]]


def worker_cpu_s(settings: accuracy.AccuracySettings) -> float:
    """CPU seconds the symbolic worker has used (``/proc/<pid>/stat`` utime + stime)."""
    pid = symbolic_worker(settings.limits).pid
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(grade: Grader, batch: list[Pair], settings: accuracy.AccuracySettings) -> tuple[float, float, list[float]]:
    """(responses per wall second, CPU ms per response in this process and the worker, scores)."""
    started, cpu, worker = time.perf_counter(), time.process_time(), worker_cpu_s(settings)
    scores = grade(batch, settings)
    cpu_spent = time.process_time() - cpu + worker_cpu_s(settings) - worker
    return len(batch) / (time.perf_counter() - started), 1e3 * cpu_spent / len(batch), scores


def measure(make: Callable[[random.Random], Pair], settings: accuracy.AccuracySettings) -> dict[str, tuple[float, float]]:
    """Best of four (responses/s, CPU ms/response) per path; no run repeats an earlier answer.

    The paths take turns going first, so a change in the machine's load does not favour one.
    """
    paths: dict[str, Grader] = {"batch": grouped, "single": one_by_one, "unbounded": one_by_one}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for run in range(4):
        order = list(paths) if run % 2 == 0 else list(reversed(paths))
        for offset, name in enumerate(order):
            patch = mock.patch.object(accuracy, "symbolic_outcome", unbounded_outcome)
            with patch if name == "unbounded" else contextlib.nullcontext():
                rate, cpu, _ = throughput(paths[name], responses(make, seed=10 * run + offset), settings)
            rates[name].append((rate, cpu))
    check = responses(make, seed=1000)
    bounded_scores = grouped(check, settings)
    with mock.patch.object(accuracy, "symbolic_outcome", unbounded_outcome):
        assert bounded_scores == one_by_one(check, settings), "the bounded grader must give the same scores"
    return {name: (max(r for r, _ in values), min(c for _, c in values)) for name, values in rates.items()}


def summary(name: str, paths: dict[str, tuple[float, float]]) -> str:
    (batch, batch_cpu), (single, _), (unbounded, unbounded_cpu) = paths["batch"], paths["single"], paths["unbounded"]
    return (
        f"{name}: batch {batch:.0f} / single {single:.0f} / unbounded {unbounded:.0f} responses/s "
        f"(batch/unbounded {batch / unbounded:.2f}x), CPU {batch_cpu:.2f} vs {unbounded_cpu:.2f} ms/response "
        f"(unbounded/batch {unbounded_cpu / batch_cpu:.2f}x)"
    )


def main() -> None:
    settings = accuracy_settings(load_config().reward)
    accuracy.grade_response("Final Answer: x + 1", "1 + x", settings)  # start the worker
    math_verify_equal("x + 1", "1 + x", settings.symbolic_timeout_s)  # import math-verify here too
    ordinary = measure(ordinary_pair, settings)
    formulas = measure(formula_pair, settings)
    print(
        f"grader: {summary('ordinary answers', ordinary)} (goal >= 0.9x); {summary('formulas only', formulas)} "
        f"[{RESPONSES} distinct responses per run, groups of {GROUP}, best of 4]"
    )


if __name__ == "__main__":
    main()
