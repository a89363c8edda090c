"""The retrain flow on the toy DVC project: a local source copy that changes between runs."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import Selection
from flows.retrain import REVISIONS_TAG, retrain
from omni_r1.config import load_config
from omni_r1.data.revisions import local_revision


def test_retrain_notices_a_moved_source_once(toy_project_factory, prefect_harness, tmp_path_factory):
    source = tmp_path_factory.mktemp("source") / "arxivqa.jsonl"
    source.write_text('{"id": "1", "question": "q"}\n')
    pin = local_revision(source)
    project = toy_project_factory(
        "retrain", {"data": {"sources": ["arxivqa"], "local_paths": {"arxivqa": str(source)}, "revisions": {"arxivqa": pin}}}
    )
    params_before = (project / "params.yaml").read_text()
    selection = Selection(tracks=["omni_r1"], checkpoint_steps=[10])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        first = retrain(selection=selection, project_dir=str(project))
        source.write_text('{"id": "1", "question": "q"}\n{"id": "2", "question": "a new row"}\n')
        second = retrain(selection=selection, project_dir=str(project))
        third = retrain(selection=selection, project_dir=str(project))

    assert first["retrained"] is False and first["changed"] == {} and first["reason"] == "pins current"
    new = local_revision(source)
    assert second["retrained"] is True and second["changed"] == {"arxivqa": new}
    assert second["pipeline"]["dvc_experiment"].startswith("retrain-")
    assert "promote" in second["pipeline"]["stages"]
    assert third["retrained"] is False and third["changed"] == {"arxivqa": new}
    assert third["reason"] == f"already trained in run {second['pipeline']['parent_run_id']}"
    # the pin moved on the DVC experiment only; the committed params keep the old one
    assert (project / "params.yaml").read_text() == params_before
    assert load_config(project / "params.yaml").data.revisions == {"arxivqa": pin}
    run = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(second["pipeline"]["parent_run_id"])
    assert new in run.data.tags[REVISIONS_TAG]
