"""The grader's symbolic worker: limits, restart, fork safety, clean exit, counted timeouts."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hand_batch import HAND_CODEBOOK, HAND_LAYOUT

from omni_r1.rewards.accuracy import (
    LIMIT_REASON,
    AccuracySettings,
    GradeRequest,
    grade_response,
    grade_responses,
    too_large_to_evaluate,
)
from omni_r1.rewards.registry import score_batch
from omni_r1.rewards.sandbox import GraderLimits, SymbolicWorker, symbolic_worker
from omni_r1.training.perpo_report import summary_metrics
from omni_r1.training.rollout import Response, rollout_metrics

ROOT = Path(__file__).resolve().parents[2]
LIMITS = GraderLimits(time_limit_s=4.0, memory_limit_mb=512)
SETTINGS = AccuracySettings(
    partial_credit_threshold=0.77, symbolic_timeout_s=1, grader_time_limit_s=2.0, grader_memory_limit_mb=512
)
TOWER = "9^{9^{9^{9}}}"  # 9^(9^387420489): no computer holds it


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False


def _ends(pid: int, within_s: float = 60.0) -> bool:
    """Whether the process is gone, or goes within ``within_s`` (an orphan needs a moment)."""
    deadline = time.monotonic() + within_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


@pytest.fixture
def worker():
    running = SymbolicWorker(LIMITS)
    yield running
    running.close()


@pytest.mark.parametrize(
    ("text", "screened"),
    [
        (TOWER, True),
        ("10**10**10", True),
        ("2^{400000}", True),
        ("(83^45^71^86^21)!", True),
        ("100000!", True),
        ("2^{2^{2}}", False),  # 16
        ("(2^{2^{2}})!", False),  # 16!
        ("20000!", False),
        ("2^{100}", False),
        ("e^{x^2}", False),
        ("1" * 3000, False),  # a long literal is an ordinary (big) number
    ],
)
def test_screen_turns_away_astronomical_literals(text, screened) -> None:
    assert too_large_to_evaluate(text) is screened


def test_time_limit_kills_and_replaces_the_worker(worker) -> None:
    assert worker.compare("5", "2+3", library_timeout_s=1).equal is True
    first = worker.pid
    # unscreened, the tower reaches sympy; the caller stops waiting at the limit
    outcome = worker.compare("5", TOWER, library_timeout_s=60)
    assert outcome.limit_hit and outcome.equal is None
    assert worker.restarts == 1 and worker.pid != first
    assert first is not None and _ends(first)
    assert worker.compare("x+1", "1+x", library_timeout_s=1).equal is True  # the successor works


def test_worker_address_space_is_limited(worker) -> None:
    assert worker.compare("5", "2+3", library_timeout_s=1).equal is True
    limits = Path(f"/proc/{worker.pid}/limits").read_text().splitlines()
    address_space = next(line for line in limits if line.startswith("Max address space")).split()
    assert int(address_space[3]) == LIMITS.memory_limit_mb * 1024 * 1024  # soft limit, bytes


def test_worker_death_is_a_limit_hit(worker) -> None:
    """A worker that dies mid-comparison (an allocation failure that aborts it) scores a limit hit."""
    assert worker.compare("5", "2+3", library_timeout_s=1).equal is True
    pid = worker.pid
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    outcome = worker.compare("5", TOWER, library_timeout_s=60)
    killer.join()
    assert outcome.limit_hit and worker.restarts == 1 and worker.pid != pid
    assert worker.compare("5", "10/2", library_timeout_s=1).equal is True


def test_library_timeouts_are_counted_not_printed(capfd) -> None:
    # math-verify's own (1 s) alarm fires while comparing 3^(3^17) with 5, well inside the limit
    patient = SymbolicWorker(GraderLimits(30.0, 512))
    try:
        result = patient.compare("5", "3^{3^{17}}", library_timeout_s=1)
    finally:
        patient.close()
    assert not result.limit_hit and result.library_timeouts >= 1
    assert "Timeout during" not in capfd.readouterr().err


def test_grade_response_reports_the_limit() -> None:
    result = grade_response(f"THOUGHT 1: compute.\nFinal Answer: {TOWER}", "5", SETTINGS)
    assert (result.score, result.reason) == (0.0, LIMIT_REASON)
    assert grade_response("Final Answer: \\frac{10}{2}", "5", SETTINGS).reason == "symbolic"


def _grade_in_child(queue) -> None:
    result = grade_response("Final Answer: x + 1", "1 + x", SETTINGS)
    queue.put((result.reason, symbolic_worker(SETTINGS.limits).pid, os.getpid()))


def test_forked_child_starts_its_own_worker() -> None:
    parent_result = grade_response("Final Answer: 2x", "x + x", SETTINGS)
    parent_worker = symbolic_worker(SETTINGS.limits).pid
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_grade_in_child, args=(queue,))
    child.start()
    reason, child_worker, child_pid = queue.get(timeout=120)
    child.join(timeout=60)
    assert parent_result.reason == "symbolic" and reason == "symbolic"
    assert child_worker not in (None, parent_worker) and child_pid != os.getpid()
    assert _ends(child_worker)  # the child's worker ended with the child
    assert grade_response("Final Answer: 2x", "x + x", SETTINGS).reason == "symbolic"
    assert symbolic_worker(SETTINGS.limits).pid == parent_worker  # the parent's is untouched


def test_worker_ends_with_its_caller() -> None:
    script = (
        "from omni_r1.rewards.accuracy import AccuracySettings, grade_response\n"
        "from omni_r1.rewards.sandbox import symbolic_worker\n"
        "s = AccuracySettings(0.77, 1, 2.0, 512)\n"
        "print(grade_response('Final Answer: 2x', 'x+x', s).reason, symbolic_worker(s.limits).pid)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    reason, pid = done.stdout.split()
    assert reason == "symbolic"
    assert _ends(int(pid))


def test_limit_hits_are_counted_in_batch_and_step_metrics(cfg) -> None:
    layout, codebook = HAND_LAYOUT, HAND_CODEBOOK
    ids = torch.tensor([[26, 27, 28, 29], [26, 27, 28, 29]])
    texts = [f"THOUGHT 1: guess.\nFinal Answer: {TOWER}", "THOUGHT 1: add.\nFinal Answer: 4"]
    batch = score_batch(cfg.reward, texts, ["4", "4"], ids, torch.ones_like(ids), codebook, layout)
    assert batch.accuracy_reasons == [LIMIT_REASON, "numeric"]
    assert batch.accuracy.tolist() == [0.0, 1.0]
    responses = [
        Response(
            prompt_index=0, group=0, prompt_ids=ids[0], response_ids=ids[row], text=texts[row],
            image_codes=torch.zeros(0, 4, dtype=torch.long), reward=float(batch.reward[row]),
            accuracy=float(batch.accuracy[row]), format=1.0, perception=float("nan"), has_image=False,
            accuracy_reason=batch.accuracy_reasons[row], grader_timeouts=batch.accuracy_timeouts[row],
        )
        for row in range(2)
    ]  # fmt: skip
    metrics = rollout_metrics(responses, gen_seconds=1.0)
    assert metrics["grader/limit_count"] == 1.0
    assert summary_metrics([metrics, metrics], probes=None, window=1)["grader_limit_count"] == 2


def test_batch_grading_equals_one_by_one() -> None:
    answers = ["x + 1", "1 + x", TOWER, "5", "(B)", "\\frac{10}{2}", "2x", "red", "x^2 - 1", "x + 1"]
    golds = ["1 + x", "x + 2", "5", "5", "B", "5", "x + x", "red square", "(x-1)(x+1)", "1 + x"]
    requests = [
        GradeRequest(f"THOUGHT 1: work.\nFinal Answer: {answer}", gold, ("red", "blue") if gold == "B" else ())
        for answer, gold in zip(answers, golds, strict=True)
    ]
    batch = grade_responses(requests, SETTINGS)
    single = [grade_response(r.prediction_text, r.gold, SETTINGS, r.choices) for r in requests]
    assert batch == single
    assert [r.reason for r in batch].count("symbolic") == 5
    assert batch[2].reason == LIMIT_REASON


def test_batch_continues_after_a_limit_hit(worker) -> None:
    pairs = [("5", "2+3"), ("5", TOWER), ("x+1", "1+x"), ("2", "3")]
    outcomes = worker.compare_many(pairs, library_timeout_s=60)
    assert [o.limit_hit for o in outcomes] == [False, True, False, False]
    assert [o.equal for o in outcomes] == [True, None, True, False]
    assert worker.restarts == 1


def test_a_worker_that_cannot_start_is_a_clear_error(monkeypatch) -> None:
    broken = SymbolicWorker(LIMITS)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits at once, says nothing
    with pytest.raises(RuntimeError, match="did not start"):
        broken.compare("5", "2+3", library_timeout_s=1)
    broken.close()
