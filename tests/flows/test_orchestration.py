"""Prefect orchestration: streamed stage output, timeouts, retries from params, the
workspace lock, and a failed override run that leaves the workspace as committed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from flows.dvc_project import run_streamed, stage_timeout
from flows.lock import WorkspaceBusyError, workspace_lock
from flows.pipeline import Overrides, Selection, pipeline, run_stage, stage_task
from omni_r1.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_output_lines_arrive_while_the_command_runs(tmp_path):
    # The command prints "first", then waits for a file that only the line callback creates;
    # output read at the end would never see "first" and the timeout would stop the command.
    gate = tmp_path / "gate"
    script = (
        "import pathlib, sys, time\n"
        "print('first', flush=True)\n"
        f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)\n"
        "print('second', flush=True)\n"
    )
    seen = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "first":
            gate.touch()

    code, output, timed_out = run_streamed([sys.executable, "-c", script], tmp_path, {}, 120, on_line)
    assert (code, timed_out, seen) == (0, False, ["first", "second"]) and output == "first\nsecond"


def test_a_command_past_its_timeout_is_stopped(tmp_path):
    code, _, timed_out = run_streamed([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path, {}, 1, None)
    assert timed_out and code != 0


def test_stage_retries_backoff_and_timeouts_come_from_params():
    cfg = load_config(REPO_ROOT / "params.yaml")
    task = stage_task(cfg, "pesft@omni_r1")
    orchestration = cfg.orchestration
    assert task.retries == orchestration.retries
    assert task.retry_delay_seconds == [orchestration.retry_delay_s * 2**i for i in range(orchestration.retries)]
    assert stage_timeout(orchestration, "pesft@omni_r1_zero") == orchestration.stage_timeout_s["pesft"]
    assert stage_timeout(orchestration, "report") == orchestration.stage_timeout_s["default"]
    assert task.fn is run_stage.fn


def test_a_second_pipeline_in_the_workspace_fails_with_a_clear_message(tmp_path):
    lock = tmp_path / ".omni-r1-pipeline.lock"
    with workspace_lock(lock, 0, "flow run first-run"):
        with pytest.raises(WorkspaceBusyError, match="in use by flow run first-run"):
            with workspace_lock(lock, 0, "flow run second-run"):
                pass
    with workspace_lock(lock, 0, "flow run third-run"):  # free again once the first left
        assert "third-run" in lock.read_text()


def test_a_waiting_pipeline_gets_the_lock_when_the_first_leaves(tmp_path):
    lock = tmp_path / "lock"
    entered = threading.Event()
    leave = threading.Event()

    def first() -> None:
        with workspace_lock(lock, 0, "first"):
            entered.set()
            leave.wait(60)

    holder = threading.Thread(target=first)
    holder.start()
    entered.wait(60)
    threading.Timer(1.0, leave.set).start()
    with workspace_lock(lock, 120, "second"):
        assert leave.is_set()
    holder.join(60)


def test_failed_override_run_restores_the_workspace(toy_project_factory, prefect_harness):
    project = toy_project_factory("failing", {"orchestration": {"retries": 0}})
    params_before = (project / "params.yaml").read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        with pytest.raises(Exception, match="seed 13 fails on purpose"):
            pipeline(
                selection=Selection(tracks=["omni_r1"], checkpoint_steps=[10]),
                overrides=Overrides(params={"run.seed": 13}, experiment_name="drill"),
                project_dir=str(project),
            )
    assert (project / "params.yaml").read_text() == params_before
    assert not (project / "checkpoints/pesft_omni_r1").exists()  # outputs back to the committed (none)
    with workspace_lock(project / ".omni-r1-pipeline.lock", 0, "next"):  # and the lock is free
        pass
