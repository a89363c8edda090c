"""A bounded home for the grader's symbolic check: one reusable worker process under hard limits.

sympy (through ``math-verify``) can be handed a short answer whose evaluation never ends or
fills the machine's memory (a tower of powers such as ``9^{9^{9^{9}}}``). math-verify's own
timeout is a ``signal.alarm``: it is switched off outside the main thread, and it cannot
interrupt one long C-level arithmetic operation. So the comparison runs in a separate
process that the caller can always stop:

- **memory**: the worker sets ``RLIMIT_AS`` on itself; an allocation beyond it fails there
  (``MemoryError``, or the worker dies), never in the caller;
- **time**: the caller waits at most ``time_limit_s`` for each answer, then kills the worker
  and starts a fresh one on the next call; ``RLIMIT_CPU`` (raised before every task) also
  ends a worker that is stuck after its caller is gone;
- **cost**: the worker is started lazily, once, and reused; one comparison costs a
  round-trip through a pipe (``benchmarks/bench_grader.py`` measures it);
- **clean-up**: the worker exits when its input pipe closes (the caller exited or died),
  an ``atexit`` hook stops it, and a forked child of the caller forgets the parent's worker
  (it starts its own) so two processes never share a pipe.

The worker is started as ``python -m omni_r1.rewards.sandbox`` (fork + exec), so it is safe
under threads, torch, pytest, DVC stages and multiprocessing of any start method.

math-verify logs "Timeout during comparison/parsing" once per slow answer; the worker counts
those lines instead of printing them and returns the count with each answer.
"""

from __future__ import annotations

import atexit
import logging
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

WORKER_START_TIMEOUT_S = 300.0  # importing sympy on a loaded machine; not model-controlled
LIBRARY_TIMEOUT_PREFIX = "Timeout during"  # math-verify's "Timeout during comparison/parsing"


@dataclass(frozen=True)
class GraderLimits:
    """Hard limits of one symbolic comparison (params.yaml ``reward``)."""

    time_limit_s: float  # wall-clock seconds the caller waits for one comparison
    memory_limit_mb: int  # address-space limit (RLIMIT_AS) of the worker process


@dataclass(frozen=True)
class SymbolicOutcome:
    """What the worker said: equal / not equal / unparsable (None), or a limit was hit."""

    equal: bool | None
    limit_hit: bool
    library_timeouts: int  # math-verify "Timeout during ..." lines counted in this comparison


# ---------------------------------------------------------------------------------------------
# Caller side
# ---------------------------------------------------------------------------------------------


class SymbolicWorker:
    """One worker process with fixed limits; thread-safe (calls are serialised)."""

    def __init__(self, limits: GraderLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._receive: Connection | None = None
        self._ready = False  # the worker has said "ready" (its imports are done)
        self.restarts = 0  # workers killed after a limit hit

    def compare(self, gold: str, pred: str, library_timeout_s: int) -> SymbolicOutcome:
        """math-verify equivalence of two LaTeX strings, within the limits."""
        return self.compare_many([(gold, pred)], library_timeout_s)[0]

    def compare_many(self, pairs: Sequence[tuple[str, str]], library_timeout_s: int) -> list[SymbolicOutcome]:
        """:meth:`compare` for (gold, prediction) pairs, sent together: one message out, the
        answers streamed back, each within ``time_limit_s`` of the previous one."""
        with self._lock:
            outcomes: list[SymbolicOutcome] = []
            while len(outcomes) < len(pairs):
                outcomes += self._run(pairs[len(outcomes) :], library_timeout_s)
            return outcomes

    def _run(self, pairs: Sequence[tuple[str, str]], library_timeout_s: int) -> list[SymbolicOutcome]:
        """Answers in order, up to and including the first limit hit (the worker is replaced)."""
        self._ensure_started()
        assert self._send is not None and self._receive is not None
        outcomes: list[SymbolicOutcome] = []
        try:
            self._send.send([(gold, pred, library_timeout_s) for gold, pred in pairs])
            for _ in pairs:
                if not self._receive.poll(self.limits.time_limit_s):
                    return [*outcomes, self._replace()]  # stuck
                equal, limit_hit, timeouts = self._receive.recv()
                outcomes.append(SymbolicOutcome(equal, limit_hit, timeouts))
        except (EOFError, OSError):  # the worker died (out of memory)
            return [*outcomes, self._replace()]
        return outcomes

    def _replace(self) -> SymbolicOutcome:
        """Kill the worker at a limit hit and start its successor now (it imports meanwhile)."""
        self._stop(kill=True)
        self.restarts += 1
        self._spawn()
        return SymbolicOutcome(None, True, 0)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def close(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def forget(self) -> None:
        """In a forked child: drop the parent's pipes without touching the parent's worker."""
        for connection in (self._send, self._receive):
            if connection is not None:
                connection.close()
        self._process, self._send, self._receive, self._ready = None, None, None, False

    def _ensure_started(self) -> None:
        if self._process is None or self._process.poll() is not None:
            self._stop(kill=True)
            self._spawn()
        if self._ready:
            return
        assert self._receive is not None
        try:
            self._ready = self._receive.poll(WORKER_START_TIMEOUT_S) and self._receive.recv() == "ready"
        except (EOFError, OSError):  # it exited while starting (its error is on stderr)
            self._ready = False
        if not self._ready:
            self._stop(kill=True)
            raise RuntimeError(
                f"the grader's symbolic worker ({sys.executable} -m omni_r1.rewards.sandbox) did not start"
            )

    def _spawn(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "omni_r1.rewards.sandbox", str(self.limits.memory_limit_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        self._process, self._ready = process, False
        self._send = Connection(os.dup(process.stdin.fileno()), readable=False)
        self._receive = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()

    def _stop(self, kill: bool) -> None:
        process, self._process, self._ready = self._process, None, False
        for connection in (self._send, self._receive):
            if connection is not None:
                connection.close()  # the worker reads EOF and exits
        self._send, self._receive = None, None
        if process is None:
            return
        if kill:
            process.kill()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_WORKERS: dict[GraderLimits, SymbolicWorker] = {}
_WORKERS_LOCK = threading.Lock()


def symbolic_worker(limits: GraderLimits) -> SymbolicWorker:
    """The process-wide worker for these limits (created on first use, reused after)."""
    with _WORKERS_LOCK:
        worker = _WORKERS.get(limits)
        if worker is None:
            worker = _WORKERS[limits] = SymbolicWorker(limits)
        return worker


def close_workers() -> None:
    """Stop every worker of this process (run at exit)."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.close()


def _forget_workers_after_fork() -> None:
    global _WORKERS_LOCK
    _WORKERS_LOCK = threading.Lock()  # it may have been held by another thread at fork time
    for worker in _WORKERS.values():
        worker._lock = threading.Lock()
        worker.forget()
    _WORKERS.clear()


atexit.register(close_workers)
os.register_at_fork(after_in_child=_forget_workers_after_fork)


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------


class _LibraryLog(logging.Filter):
    """Counts math-verify's "Timeout during ..." records and notices the ``MemoryError`` it
    swallows (logged at debug level with the exception); keeps both off the console."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts = 0
        self.out_of_memory = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MemoryError):
            self.out_of_memory = True
        if str(record.msg).startswith(LIBRARY_TIMEOUT_PREFIX):
            self.timeouts += 1
            return False
        return record.levelno >= logging.WARNING


def _as_latex(text: str) -> str:
    return text if "$" in text else f"${text}$"


def math_verify_equal(gold: str, pred: str, library_timeout_s: int) -> bool | None:
    """The comparison the worker runs: math-verify equivalence, None when a side does not parse.

    Unbounded in the calling process (it is what the worker is there for); called directly
    only by the grading benchmark, as the unprotected baseline.
    """
    from math_verify import parse, verify

    try:
        gold_parsed = parse(_as_latex(gold), parsing_timeout=library_timeout_s)
        pred_parsed = parse(_as_latex(pred), parsing_timeout=library_timeout_s)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=library_timeout_s))
    except MemoryError:
        raise
    except Exception:  # sympy errors on model output are not a grader failure
        return None


def _limit_cpu(seconds: int) -> None:
    """Let this process use ``seconds`` more CPU seconds (SIGXCPU ends it after that)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = spent + seconds if hard == resource.RLIM_INFINITY else min(spent + seconds, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _answer(log: _LibraryLog, gold: str, pred: str, library_timeout_s: int) -> tuple[Any, ...]:
    """(equal, limit_hit, library timeouts) of one comparison."""
    log.timeouts, log.out_of_memory = 0, False
    _limit_cpu(3 * library_timeout_s + 2)  # parse, parse, verify: each bounded by the timeout
    equal = None
    try:
        equal = math_verify_equal(gold, pred, library_timeout_s)
    except MemoryError:
        log.out_of_memory = True
    return (None if log.out_of_memory else equal, log.out_of_memory, log.timeouts)


def _serve(memory_limit_mb: int) -> None:
    receive = Connection(os.dup(0), writable=False)
    send = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # stray prints go to stderr, never into the answer pipe
    import math_verify  # noqa: F401  (imported before the memory limit is set)

    log = _LibraryLog()
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)  # debug records carry the exceptions math-verify swallows
        logger.addFilter(log)
    limit = memory_limit_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        send.send("ready")
        while True:
            for gold, pred, library_timeout_s in receive.recv():
                send.send(_answer(log, gold, pred, library_timeout_s))
    except (EOFError, BrokenPipeError):  # the caller closed the pipe or died
        return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
