"""The progress reporter's plain-line cadence (fake clock, no real timing) and library quieting."""

from __future__ import annotations

import io
import logging
import os

import pytest

from omni_r1.console import (
    StageProgress,
    format_duration,
    format_postfix,
    progress_line,
    quiet_libraries,
    verbose_requested,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_progress(total: int | None, every_s: float, clock: FakeClock) -> tuple[StageProgress, io.StringIO]:
    stream = io.StringIO()
    return StageProgress("perpo omni_r1", total, unit="steps", every_s=every_s, stream=stream,
                         live=False, clock=clock), stream  # fmt: skip


def test_plain_lines_every_interval_then_final_count() -> None:
    clock = FakeClock()
    progress, stream = plain_progress(60, every_s=20.0, clock=clock)
    with progress:
        for step in range(1, 61):
            clock.now += 3.0  # 3 s per step: 180 s in all
            progress.update(step, reward=0.25, kl=0.001)
    lines = stream.getvalue().splitlines()
    # a line once 20 s have passed since the last one: at 21, 42, ..., 168 s (8 lines), then the final count
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["7/60", "14/60", "21/60", "28/60",
                                                                    "35/60", "42/60", "49/60", "56/60",
                                                                    "60/60"]  # fmt: skip
    assert "\r" not in stream.getvalue()
    assert lines[0] == "perpo omni_r1: 7/60 steps (11%) · 21s elapsed · ~2m39s left · reward 0.25 · kl 0.001"
    assert lines[-1] == "perpo omni_r1: 60/60 steps (100%) · 3m00s elapsed · reward 0.25 · kl 0.001"


def test_time_left_counts_only_the_steps_of_this_run() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    with StageProgress("pesft omni_r1", 60, unit="steps", every_s=30.0, stream=stream, live=False,
                       clock=clock, resumed_at=30) as progress:  # fmt: skip
        for step in range(31, 41):
            clock.now += 3.0
            progress.update(step)
    first = stream.getvalue().splitlines()[0]
    assert first == "pesft omni_r1: 40/60 steps (66%) · 30s elapsed · ~1m00s left"  # 20 steps at 3 s


def test_short_loop_writes_nothing() -> None:
    clock = FakeClock()
    progress, stream = plain_progress(10, every_s=20.0, clock=clock)
    with progress:
        for step in range(1, 11):
            clock.now += 1.0
            progress.update(step)
    assert stream.getvalue() == ""


def test_no_final_line_repeats_the_last_one_or_follows_a_failure() -> None:
    clock = FakeClock()
    progress, stream = plain_progress(2, every_s=5.0, clock=clock)
    with progress:
        clock.now += 6.0
        progress.update(2)
    assert len(stream.getvalue().splitlines()) == 1  # the final count was already written

    progress, stream = plain_progress(4, every_s=5.0, clock=clock)
    with pytest.raises(RuntimeError), progress:
        clock.now += 6.0
        progress.update(1)
        progress.update(2)
        raise RuntimeError("stage failed")
    assert [line.split(" ")[2] for line in stream.getvalue().splitlines()] == ["1/4"]


def test_advance_and_unknown_total() -> None:
    clock = FakeClock()
    progress, stream = plain_progress(None, every_s=10.0, clock=clock)
    with progress:
        for _ in range(3):
            clock.now += 10.0
            progress.update(advance=64)
    assert stream.getvalue().splitlines()[-1] == "perpo omni_r1: 192 steps · 30s elapsed"


def test_live_bar_writes_the_postfix_to_a_terminal() -> None:
    stream = io.StringIO()
    with StageProgress("tokenizer VQ", 5, unit="steps", every_s=1.0, stream=stream, live=True) as progress:
        for step in range(1, 6):
            progress.update(step, loss=0.125)
    assert "5/5" in stream.getvalue() and "loss 0.125" in stream.getvalue()


def test_formatting_helpers() -> None:
    assert format_duration(9.4) == "9s"
    assert format_duration(151.2) == "2m31s"
    assert format_duration(3725) == "1h02m05s"
    assert format_postfix({"reward": 0.213456, "steps": 3, "kl": 3.1e-5}) == "reward 0.2135 · steps 3 · kl 3.1e-05"
    assert progress_line("x", 0, 10, "items", 0.0, {}) == "x: 0/10 items (0%) · 0s elapsed"


def test_verbose_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNI_R1_VERBOSE", raising=False)
    assert not verbose_requested(False)
    assert verbose_requested(True)
    monkeypatch.setenv("OMNI_R1_VERBOSE", "0")
    assert not verbose_requested(False)
    monkeypatch.setenv("OMNI_R1_VERBOSE", "1")
    assert verbose_requested(False)


def test_quiet_libraries_mutes_timeouts_and_info(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    import transformers  # imported before: quieting must switch its bars off directly

    transformers.utils.logging.enable_progress_bar()
    muted, mlflow_logger = logging.getLogger("math_verify"), logging.getLogger("mlflow")
    saved = (muted.propagate, list(muted.handlers), mlflow_logger.level)
    counted: list[str] = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            counted.append(record.getMessage())  # both handlers write here: the root one must not

    grader_logger = logging.getLogger("math_verify.grader")
    counter, on_root = Counter(), Counter()  # on_root: an application's log set-up
    grader_logger.addHandler(counter)
    logging.root.addHandler(on_root)
    root_level = logging.root.level
    logging.root.setLevel(logging.INFO)
    try:
        quiet_libraries()
        grader_logger.warning("Timeout during comparison")
        logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"
        assert not transformers.utils.logging.is_progress_bar_enabled()
        assert mlflow_logger.level == logging.WARNING
    finally:
        grader_logger.removeHandler(counter)
        logging.root.removeHandler(on_root)
        logging.root.setLevel(root_level)
        muted.propagate, muted.handlers[:] = saved[0], saved[1]
        mlflow_logger.setLevel(saved[2])
        monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
        transformers.utils.logging.enable_progress_bar()
    captured = capsys.readouterr()
    assert "Timeout during comparison" not in captured.err + captured.out
    assert "Creating initial" not in captured.err + captured.out
    # a counting handler below the muted logger sees the timeout; the root logger's handlers never do
    assert counted == ["Timeout during comparison"]
