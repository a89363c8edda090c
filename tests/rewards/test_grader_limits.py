"""Hostile answers cannot exhaust memory or stall the grader (property test under a memory limit).

The grader runs in a harness process whose address space the test limits (``RLIMIT_AS``), and
grades on a non-main thread, as a thread-pool task runner would (math-verify's own
``signal.alarm`` timeout does not work there). Every grade must come back within the grader's
time limit (plus the worker's start-up) with a score in [0, 1] and without a grader error.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
HARNESS_MEMORY_BYTES = 2 << 30  # the test's limit on the grading process
LIMITS = {  # the grader's own limits for this test (params.yaml holds the run's)
    "partial_credit_threshold": 0.77,
    "symbolic_timeout_s": 1,
    "grader_time_limit_s": 2.0,
    "grader_memory_limit_mb": 512,
}
WORKER_START_S = 60.0  # importing sympy in a fresh worker on a busy machine
REPLY_DEADLINE_S = LIMITS["grader_time_limit_s"] + WORKER_START_S

HARNESS = """
import json, sys, threading
from omni_r1.rewards.accuracy import AccuracySettings, grade_response
settings = AccuracySettings(**json.loads(sys.argv[1]))
def serve():
    for line in sys.stdin:
        answer, gold = json.loads(line)
        result = grade_response("THOUGHT 1: compute.\\nFinal Answer: " + answer, gold, settings)
        print(json.dumps([result.score, result.reason]), flush=True)
thread = threading.Thread(target=serve)
thread.start()
thread.join()
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (HARNESS_MEMORY_BYTES, HARNESS_MEMORY_BYTES))


class Harness:
    """A grading process under the test's memory limit; restarted after a failure."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> subprocess.Popen[str]:
        if self.process is None or self.process.poll() is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            self.process = subprocess.Popen(
                [sys.executable, "-c", HARNESS, json.dumps(LIMITS)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                preexec_fn=_limit_memory,
            )  # fmt: skip
        return self.process

    def grade(self, answer: str, gold: str) -> tuple[float, str]:
        process = self.start()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps([answer, gold]) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], REPLY_DEADLINE_S)
        if not ready:
            self.stop()
            pytest.fail(f"grading {answer!r} did not return within {REPLY_DEADLINE_S} s")
        line = process.stdout.readline()
        if not line:
            self.stop()
            pytest.fail(f"the grading process died on {answer!r} (memory limit {HARNESS_MEMORY_BYTES} bytes)")
        score, reason = json.loads(line)
        return score, reason

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def harness():
    running = Harness()
    yield running
    running.stop()


_small = st.integers(min_value=2, max_value=99)


@st.composite
def towers(draw) -> str:
    numbers = draw(st.lists(_small, min_size=3, max_size=5))
    style = draw(st.sampled_from(["braces", "bare", "python", "parens"]))
    if style == "bare":
        return "^".join(map(str, numbers))
    if style == "python":
        return "**".join(map(str, numbers))
    text = str(numbers[-1])
    for number in reversed(numbers[:-1]):
        text = f"{number}^{{{text}}}" if style == "braces" else f"{number}^({text})"
    return text


def _nested(opener: str, closer: str) -> st.SearchStrategy[str]:
    return st.integers(min_value=50, max_value=400).map(lambda depth: opener * depth + "1" + closer * depth)


HOSTILE = st.one_of(
    towers(),
    towers().map(lambda tower: f"x = {tower}"),
    towers().map(lambda tower: f"\\frac{{{tower}}}{{3}} + 1"),
    st.integers(min_value=10**50, max_value=10**290).map(str),
    st.text(alphabet="0123456789", min_size=300, max_size=4000),
    st.integers(min_value=10**5, max_value=10**12).map(lambda n: f"{n}!"),
    towers().map(lambda tower: f"({tower})!"),
    _nested("(", ")"),
    _nested("\\sqrt{", "}"),
    _nested("{", "}").map(lambda body: "2^" + body),
    st.text(alphabet="(){}[]^*!0123456789+-/\\x", min_size=1, max_size=300),
)
GOLDS = st.sampled_from(["5", "x + 1", "\\frac{1}{2}", "2^{10}", "B", "red"])


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(answer=HOSTILE, gold=GOLDS)
def test_hostile_answers_grade_within_limits(harness, answer, gold) -> None:
    score, reason = harness.grade(answer, gold)
    assert 0.0 <= score <= 1.0
    assert not reason.startswith("grader_error"), reason
