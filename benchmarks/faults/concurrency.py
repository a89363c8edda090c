"""Concurrency: two pipeline flow runs started together in one workspace.

The workspace is the flow tests' toy DVC project (``tests/flows/toy_project``: the real
``flows.pipeline`` code, dvc, MLflow, with cheap stage commands). Each trial starts two
processes that call the pipeline flow's function (one of them with a parameter override, so
it writes params.yaml), a random fraction of a second apart. Expected: both finish, or one is
refused with the lock's message naming the holder. Afterwards params.yaml must be the committed
one, dvc.lock either the committed one or in line with the outputs (``dvc status``), and no
MLflow run may be left running. (The toy project has no model registry; the registry's
consistency under concurrency is not measured here.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REFUSAL = "the workspace is in use by flow run"  # flows.lock's message, naming the holder
RUNNER = """
import json, sys
from flows.pipeline import Overrides, Selection, pipeline
params = json.loads(sys.argv[2])
overrides = Overrides(params=params, experiment_name=sys.argv[3]) if params else Overrides()
pipeline.fn(selection=Selection(tracks=["omni_r1"], checkpoint_steps=[10]), overrides=overrides, project_dir=sys.argv[1])
"""


@dataclass
class ConcurrencyFigures:
    trials: int = 0
    both_finished: int = 0
    one_refused_clearly: int = 0
    consistent_after: int = 0
    notes: list[str] = field(default_factory=list)


def toy_project(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("_faults_flow_fixtures", REPO_ROOT / "tests/flows/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_toy_project(root)


def start(project: Path, params: dict, name: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(project), json.dumps(params), name], cwd=project, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def running_mlflow_runs(project: Path) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")) if experiments else 0


def consistent(project: Path, params_before: str) -> list[str]:
    """Problems left in the workspace: params.yaml not the committed one; dvc.lock neither the
    committed one (an override run puts it back) nor in line with the outputs (a plain run that
    finished); an MLflow run left RUNNING."""
    problems = []
    if (project / "params.yaml").read_text() != params_before:
        problems.append("params.yaml differs from the committed one")
    changed = subprocess.run(["git", "status", "--porcelain", "--", "dvc.lock"], cwd=project, capture_output=True, text=True)
    if changed.stdout.strip():
        status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True, text=True)
        if status.returncode != 0 or json.loads(status.stdout or "{}"):
            problems.append(f"dvc.lock changed and out of line with the outputs: {status.stdout.strip()[:200] or status.stderr[-200:]}")
    if running_mlflow_runs(project):
        problems.append("an MLflow run was left RUNNING")
    return problems


def run(root: Path, trials: int, seed: int, log: Callable[[str], None]) -> ConcurrencyFigures:
    rng = random.Random(seed)
    figures = ConcurrencyFigures()
    project = toy_project(root / "toy")
    params_before = (project / "params.yaml").read_text()
    for trial in range(trials):
        logs = [root / f"flow-{trial}-a.log", root / f"flow-{trial}-b.log"]
        first = start(project, {"run.seed": 3 + trial}, f"faults-{trial}", logs[0])
        time.sleep(rng.uniform(0.0, 1.0))
        second = start(project, {}, "", logs[1])
        codes = [first.wait(), second.wait()]
        texts = [path.read_text(errors="replace") for path in logs]
        figures.trials += 1
        if codes == [0, 0]:
            figures.both_finished += 1
        elif codes.count(0) == 1 and REFUSAL in texts[codes.index(next(c for c in codes if c != 0))]:
            figures.one_refused_clearly += 1
        else:
            figures.notes.append(f"trial {trial}: exit codes {codes}; see {logs}")
        problems = consistent(project, params_before)
        figures.consistent_after += not problems
        figures.notes += [f"trial {trial}: {p}" for p in problems]
        log(f"  concurrency trial {trial}: exit codes {codes}, problems {problems}")
    return figures
