"""DVC experiments carry their metrics and plot data; MLflow groups each pipeline run.

A two-stage DVC project (both stages open ``omni_r1.tracking.stage_run``) is reproduced,
committed, and run as two experiments with ``dvc exp run -S run.seed=...``. The project uses
the repository's own .gitignore, so the test fails if metrics/ or reports/plots/
(``cache: false`` in dvc.yaml) stop being versioned by git: ``dvc exp show`` would then print
``!`` for every metric. MLflow must show one parent run per ``dvc repro`` / ``dvc exp run``
with both stage runs nested under it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from omni_r1 import tracking

REPO_ROOT = Path(__file__).resolve().parents[2]

STAGES = '''"""Toy stages: a metric and a plot series that depend on run.seed, under MLflow stage runs."""
import json
import sys
from pathlib import Path

import mlflow

from omni_r1 import tracking
from omni_r1.config import load_config

cfg = load_config("params.yaml")
stage = sys.argv[1]
with tracking.stage_run(cfg, stage):
    if stage == "score":
        seed = cfg.run.seed
        Path("metrics").mkdir(exist_ok=True)
        Path("metrics/score.json").write_text(json.dumps({"accuracy": seed / 10}))
        Path("reports/plots").mkdir(parents=True, exist_ok=True)
        rows = [f"{step},{seed * step / 100}" for step in (10, 20)]
        Path("reports/plots/accuracy.csv").write_text("step,accuracy\\n" + "\\n".join(rows) + "\\n")
    else:
        accuracy = json.loads(Path("metrics/score.json").read_text())["accuracy"]
        Path("metrics/summary.json").write_text(json.dumps({"error": 1 - accuracy}))
        mlflow.log_metric("error", 1 - accuracy)
'''

DVC_YAML = """stages:
  score:
    cmd: python stages.py score
    deps: [stages.py]
    params: [run.seed]
    metrics:
      - metrics/score.json:
          cache: false
    plots:
      - reports/plots:
          cache: false
          x: step
  summary:
    cmd: python stages.py summary
    deps: [stages.py, metrics/score.json]
    metrics:
      - metrics/summary.json:
          cache: false
"""


def dvc(project: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True,
        check=False,
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=omni-r1 tests", "-c", "user.email=tests@omni-r1.invalid", *args],
        cwd=project, check=True, capture_output=True,
    )


def dvc_env(mlflow_uri: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    for name in (tracking.PARENT_RUN_ENV, tracking.PIPELINE_RUN_ENV, tracking.DVC_EXPERIMENT_ENV):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> tuple[Path, str]:
    """The project after ``dvc repro`` (committed) and experiments seed-3 and seed-7."""
    root = tmp_path_factory.mktemp("experiments")
    project, mlflow_uri = root / "project", f"sqlite:///{root / 'mlflow.db'}"
    project.mkdir()
    shutil.copy(REPO_ROOT / ".gitignore", project / ".gitignore")
    shutil.copy(REPO_ROOT / "params.yaml", project / "params.yaml")
    (project / "stages.py").write_text(STAGES)
    (project / "dvc.yaml").write_text(DVC_YAML)
    env = dvc_env(mlflow_uri)
    git(project, "init", "-q")
    dvc(project, env, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "sources")
    dvc(project, env, "repro")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "baseline")
    dvc(project, env, "exp", "run", "-S", "run.seed=3", "-n", "seed-3")
    dvc(project, env, "exp", "run", "-S", "run.seed=7", "-n", "seed-7")
    return project, mlflow_uri


def metrics_by_name(shown: list[dict]) -> dict[str, float]:
    """``dvc exp show --json`` → ``{baseline or experiment name: accuracy}``."""
    found = {}
    for baseline in shown:
        rows = [baseline, *(run for exp in baseline.get("experiments") or [] for run in exp["revs"])]
        for row in rows:
            if row["rev"] == "workspace":
                continue
            data = (row.get("data") or {}).get("metrics") or {}
            score = data.get("metrics/score.json", {}).get("data", {})
            found[row.get("name") or row["rev"]] = score.get("accuracy")
    return found


@pytest.mark.slow
def test_two_experiments_carry_their_metrics_and_plots(experiments):
    project, mlflow_uri = experiments
    env = dvc_env(mlflow_uri)
    base_seed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["run"]["seed"]  # committed

    shown = json.loads(dvc(project, env, "exp", "show", "--json"))

    scores = metrics_by_name(shown)
    assert scores.pop("seed-3") == pytest.approx(0.3)
    assert scores.pop("seed-7") == pytest.approx(0.7)
    assert list(scores.values()) == [pytest.approx(base_seed / 10)]  # the committed baseline
    diff = json.loads(dvc(project, env, "metrics", "diff", "seed-3", "seed-7", "--json"))
    assert diff["metrics/score.json"]["accuracy"]["diff"] == pytest.approx(0.4)
    assert diff["metrics/summary.json"]["error"]["diff"] == pytest.approx(-0.4)
    plots = json.loads(dvc(project, env, "plots", "diff", "seed-3", "seed-7", "--json"))
    values = [
        point
        for entry in plots["data"]["reports/plots/accuracy.csv"]
        for point in entry["content"]["data"]["values"]
    ]
    by_revision = {
        rev: [(int(point["step"]), float(point["accuracy"])) for point in values if point["rev"] == rev]
        for rev in ("seed-3", "seed-7")
    }
    assert by_revision == {"seed-3": [(10, 0.3), (20, 0.6)], "seed-7": [(10, 0.7), (20, 1.4)]}


@pytest.mark.slow
def test_each_dvc_invocation_is_one_parent_run_with_nested_stages(experiments):
    project, mlflow_uri = experiments
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(
        yaml.safe_load((project / "params.yaml").read_text())["tracking"]["experiment"]
    )
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags["omni_r1.stage"] == "pipeline"]
    children = {
        parent.info.run_id: sorted(
            run.data.tags["omni_r1.stage"]
            for run in runs
            if run.data.tags.get(tracking.PARENT_RUN_TAG) == parent.info.run_id
        )
        for parent in parents
    }

    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.TRAINING_EXPERIMENT_KIND
    assert len(runs) == 3 * 3  # dvc repro, two dvc exp run: a parent and two stages each
    assert list(children.values()) == [["score", "summary"]] * 3
    assert sorted(p.data.tags.get("omni_r1.dvc_experiment", "") for p in parents) == ["", "seed-3", "seed-7"]
    assert all(p.info.status == "FINISHED" and p.data.tags["omni_r1.git_sha"] for p in parents)
    assert len({p.data.tags[tracking.PIPELINE_RUN_TAG] for p in parents}) == 3
