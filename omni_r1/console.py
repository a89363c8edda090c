"""What a person sees while a stage runs: a progress reporter, and quiet libraries.

Progress (:class:`StageProgress`): in a terminal, a live rich bar (done/total, elapsed, time
left, and the stage's own postfix numbers such as PeRPO's reward, accuracy and KL); anywhere
else (a log file, DVC or Prefect capturing the output) one plain line every
``console.log_every_s`` seconds while it runs and one with the final count when it ends —
never a carriage return; a loop shorter than that interval writes nothing. The reporter reads only a clock: it draws no random numbers, so a seeded
run gives the same numbers with or without it.

Quiet libraries (:func:`quiet_libraries`): the Hugging Face "Loading weights" / "Writing
model shards" bars, the ``datasets`` bars, the math-verify timeout lines, MLflow's database
and experiment INFO lines and alembic's migration lines are kept off the screen, unless
``omni-r1 -v`` or the environment variable ``OMNI_R1_VERBOSE=1`` asks for them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

VERBOSE_ENV = "OMNI_R1_VERBOSE"
LIVE_REFRESH_PER_SECOND = 2  # a live bar redraws this often (a background thread; keep it cheap)

# Environment switches read by the libraries when they are imported.
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also turns off transformers' logging.tqdm bars
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
# Loggers whose records below WARNING are dropped (their level is raised).
QUIET_LEVELS = {"mlflow": logging.WARNING, "alembic": logging.WARNING}
# Loggers whose records never reach the screen; handlers attached below them still see every
# record (the grader may count math-verify's timeouts that way).
MUTED_LOGGERS = ("math_verify",)


def verbose_requested(flag: bool = False) -> bool:
    """``omni-r1 -v`` or ``OMNI_R1_VERBOSE`` set to something other than empty/0/false."""
    return flag or os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_libraries() -> None:
    """Keep library progress bars and chatter off the screen (module docstring)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name, level in QUIET_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    for name in MUTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False
    # Libraries imported before this call read their switches already: tell them directly.
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def format_number(value: Any) -> str:
    """4 significant digits for floats, anything else (integers, text) as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_postfix(values: Mapping[str, Any]) -> str:
    """``{"reward": 0.2134, "kl": 0.0031}`` → ``"reward 0.2134 · kl 0.0031"``."""
    return " · ".join(f"{name} {format_number(value)}" for name, value in values.items())


def format_duration(seconds: float) -> str:
    """``151.2`` → ``"2m31s"``; ``9.4`` → ``"9s"``; ``3725`` → ``"1h02m05s"``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(
    title: str,
    completed: int,
    total: int | None,
    unit: str,
    elapsed: float,
    postfix: Mapping[str, Any],
    resumed_at: int = 0,
) -> str:
    """One plain progress line: ``"VQ: 120/650 steps (18%) · 27s elapsed · ~1m59s left · loss 0.04"``.

    The time left extrapolates the units done in ``elapsed`` (those after ``resumed_at``, the
    count a resumed run started from) to the units still to do.
    """
    if total:
        parts = [f"{title}: {completed}/{total} {unit} ({100 * completed // total}%)"]
    else:
        parts = [f"{title}: {completed} {unit}"]
    parts.append(f"{format_duration(elapsed)} elapsed")
    done_here = completed - resumed_at
    if total and done_here > 0 and completed < total:
        parts.append(f"~{format_duration(elapsed / done_here * (total - completed))} left")
    if postfix:
        parts.append(format_postfix(postfix))
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------
# The reporter
# ---------------------------------------------------------------------------------------------


class StageProgress:
    """Progress of one loop of a stage: a live bar in a terminal, timed plain lines elsewhere.

    Use as a context manager; call :meth:`update` after each unit of work.

    Args:
        title: what is counted, e.g. ``"tokenizer VQ"`` or ``"perpo omni_r1"``.
        total: units expected (None when unknown).
        unit: name of a unit (``"steps"``, ``"items"``, ``"images"``).
        every_s: seconds between plain lines (``console.log_every_s``).
        stream: where to write (stderr by default).
        live: force the live bar on or off; default: on when ``stream`` is a terminal.
        clock: seconds from any origin (tests pass a fake clock).
        resumed_at: units already done before this run (a resumed training run); they do not
            count towards the speed behind the time left.
    """

    def __init__(
        self,
        title: str,
        total: int | None,
        *,
        unit: str,
        every_s: float,
        stream: IO[str] | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        resumed_at: int = 0,
    ) -> None:
        self.title, self.total, self.unit, self.every_s = title, total, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.console = Console(file=self.stream)
        self.live = self.console.is_terminal if live is None else live
        self.clock = clock
        self.completed = self.resumed_at = resumed_at
        self.postfix: dict[str, Any] = {}
        self.started = self.last_line = 0.0
        self.lines_written = 0
        self.completed_written: int | None = None  # the count in the last plain line
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> StageProgress:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc_type is not None)

    def start(self) -> StageProgress:
        """Show the live bar (plain mode writes its first line ``every_s`` seconds from now)."""
        self.started = self.last_line = self.clock()
        if self.live:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn(self.unit), TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(),
                TextColumn("{task.fields[postfix]}"),
                console=self.console, refresh_per_second=LIVE_REFRESH_PER_SECOND,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=self.total, completed=self.completed, postfix="")
        return self

    def update(self, completed: int | None = None, *, advance: int = 0, **postfix: Any) -> None:
        """Set the units done (or add ``advance``) and the postfix values shown beside them
        (a value of None removes its entry)."""
        self.completed = completed if completed is not None else self.completed + advance
        for name, value in postfix.items():
            if value is None:
                self.postfix.pop(name, None)
            else:
                self.postfix[name] = value
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, postfix=format_postfix(self.postfix))
            return
        now = self.clock()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            self._write()

    def close(self, failed: bool = False) -> None:
        """Stop the bar; or write the final count when earlier lines were written (a loop shorter
        than ``every_s`` writes nothing: the stage's result line says what it did)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not failed and self.lines_written and self.completed != self.completed_written:
            self._write()

    def _write(self) -> None:
        line = progress_line(
            self.title, self.completed, self.total, self.unit, self.clock() - self.started, self.postfix,
            self.resumed_at,
        )  # fmt: skip
        self.stream.write(line + "\n")
        self.stream.flush()
        self.lines_written += 1
        self.completed_written = self.completed
