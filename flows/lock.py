"""One pipeline per workspace: an exclusive lock file in the project root.

Two flow runs in one checkout would race on params.yaml (override runs write it), dvc.lock
and the DVC outputs. ``workspace_lock`` takes ``fcntl.flock`` on ``orchestration.lock_file``;
a second run waits up to ``orchestration.lock_wait_s`` and then fails with a message naming
the run that holds the lock. The kernel releases the lock when the holder exits, so a
crashed run never leaves the workspace locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 1.0


class WorkspaceBusyError(RuntimeError):
    """Another pipeline run holds the workspace lock."""


def try_lock(handle: int) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def workspace_lock(path: Path, wait_s: float, holder: str) -> Iterator[None]:
    """Hold the lock at ``path`` for the block; ``holder`` is written into it for the next run's message."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while not try_lock(handle):
            if time.monotonic() >= deadline:
                owner = Path(path).read_text(encoding="utf-8").strip() or "an unknown run"
                raise WorkspaceBusyError(
                    f"{path}: the workspace is in use by {owner}; waited {wait_s:g}s "
                    "(orchestration.lock_wait_s). Run again when it has finished."
                )
            time.sleep(POLL_S)
        os.ftruncate(handle, 0)
        os.write(handle, f"{holder} (pid {os.getpid()})\n".encode())
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
