"""Run a stage function in a forked child process (its own session) and SIGKILL it.

Forking a parent that has already imported torch, transformers and MLflow spares each try the
seconds of imports, so many kills fit in minutes; the child is still a separate process that
the kernel kills outright (``SIGKILL`` to its whole process group, grader workers included).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

CONTEXT = multiprocessing.get_context("fork")


def _child(target: Callable[[], object], folder: Path, log_path: Path) -> None:
    os.setsid()  # its own process group: the kill reaches its grader workers too
    os.chdir(folder)
    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    try:
        target()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def start(target: Callable[[], object], folder: Path, log_path: Path) -> multiprocessing.Process:
    """Start ``target()`` in a forked child working in ``folder``, output appended to ``log_path``."""
    process = CONTEXT.Process(target=_child, args=(target, folder, log_path), daemon=False)
    process.start()
    return process


def kill(process: multiprocessing.Process) -> bool:
    """SIGKILL the child's process group; True when it was still running."""
    alive = process.is_alive()
    if alive:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # no group yet (before setsid) or already gone
            alive = process.is_alive()
            if alive:
                os.kill(process.pid, signal.SIGKILL)
    process.join()
    return alive


def run_to_end(target: Callable[[], object], folder: Path, log_path: Path) -> int:
    """Run ``target()`` in a child to completion; its exit code."""
    process = start(target, folder, log_path)
    process.join()
    return process.exitcode
