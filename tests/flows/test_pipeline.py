"""The pipeline and retrain flows on the toy DVC project, under the Prefect test harness."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import Overrides, Selection, pipeline
from flows.retrain import retrain
from omni_r1 import tracking
from omni_r1.config import load_config

pytestmark = pytest.mark.slow  # runs the DVC pipeline end to end in subprocesses


@pytest.fixture(scope="module")
def first_run(toy_project_factory, prefect_harness):
    project = toy_project_factory("pipeline")
    params_before = (project / "params.yaml").read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = pipeline(
            selection=Selection(tracks=["omni_r1"], checkpoint_steps=[10]),
            overrides=Overrides(params={"run.seed": 3}, experiment_name="seed-3"),
            project_dir=str(project),
        )
    return project, params_before, result


def mlflow_client(project):
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def test_pipeline_runs_selected_stages_through_dvc(first_run):
    project, _, result = first_run

    assert result["stages"] == ["prepare", "pesft@omni_r1", "evaluate@omni_r1-10", "promote"]
    assert (project / "metrics/omnibench_omni_r1-10.json").exists()
    assert not (project / "metrics/omnibench_omni_r1-20.json").exists()
    assert not (project / "checkpoints/pesft_omni_r1_zero").exists()
    assert [row["checkpoint"] for row in result["omnibench"]] == ["omni_r1-10"]


def test_overrides_become_a_dvc_experiment_and_workspace_is_restored(first_run):
    project, params_before, result = first_run

    assert result["dvc_experiment"] == "seed-3"
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=project, capture_output=True, text=True, check=True,
    ).stdout
    assert "seed-3" in shown
    assert (project / "params.yaml").read_text() == params_before


def test_stage_runs_nest_under_the_parent_run(first_run):
    project, _, result = first_run
    client = mlflow_client(project)
    parent = client.get_run(result["parent_run_id"])
    experiment = parent.info.experiment_id

    children = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )

    assert sorted(run.data.tags["omni_r1.stage"] for run in children) == ["pesft@omni_r1", "promote"]
    assert parent.data.tags["omni_r1.dvc_experiment"] == "seed-3"
    assert parent.data.tags["omni_r1.prefect_flow_run_id"]
    for run in children:
        assert run.data.tags["omni_r1.dvc_experiment"] == "seed-3"
        assert run.data.tags["omni_r1.prefect_flow_run_id"] == parent.data.tags["omni_r1.prefect_flow_run_id"]
        assert run.data.params["run.seed"] == "3"  # the override reached the stage
        assert "omni_r1.data.toy" in run.data.tags
    pesft = next(run for run in children if run.data.tags["omni_r1.stage"] == "pesft@omni_r1")
    assert [d.dataset.name for d in pesft.inputs.dataset_inputs] == ["toy"]
    files = [f.path for f in client.list_artifacts(pesft.info.run_id, "checkpoints/pesft_omni_r1")]
    assert "checkpoints/pesft_omni_r1/weights.bin" in files


def latest_artifact(key: str) -> dict:
    """The newest artifact with ``key``, read from the Prefect API as JSON."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {
        "artifacts": {"key": {"any_": [key]}},
        "sort": "CREATED_DESC",
        "limit": 1,
        "offset": 0,
    }
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30)
    response.raise_for_status()
    found = response.json()
    assert found, f"no Prefect artifact {key!r}"
    return found[0]


def test_pipeline_publishes_prefect_artifacts(first_run):
    table = latest_artifact("omnibench-results")
    note = latest_artifact("mlflow-run")

    assert table["type"] == "table" and "omni_r1-10" in json.dumps(table["data"])
    assert first_run[2]["parent_run_id"] in note["data"]
    assert "version 1" in note["data"]  # the toy promote stage registered a champion


def test_retrain_skips_unchanged_data_and_reruns_on_new_data(first_run):
    project = first_run[0]
    selection = Selection(tracks=["omni_r1"], checkpoint_steps=[10])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        unchanged = retrain(selection=selection, project_dir=str(project))
        (project / "data/raw.txt").write_text("first line of toy data\nand a new second line\n")
        changed = retrain(selection=selection, project_dir=str(project))

    assert unchanged["retrained"] is False and unchanged["changed_data"] == []
    assert changed["retrained"] is True
    assert changed["changed_data"] == ["omni_r1.data.toy"]
    new_parent = changed["pipeline"]["parent_run_id"]
    assert new_parent != first_run[2]["parent_run_id"]
    base = load_config(project / "params.yaml")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    cfg = base.model_copy(update={"tracking": base.tracking.model_copy(update={"tracking_uri": uri})})
    champion_data = tracking.champion_data_tags(cfg)
    assert champion_data["omni_r1.data.toy"] == tracking.file_sha256(project / "metrics/data_toy.json")
