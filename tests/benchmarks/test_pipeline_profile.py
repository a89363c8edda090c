"""pipeline_profile: which runs form the last pipeline run, and its per-stage seconds, on a real MLflow store."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmarks import pipeline_profile
from benchmarks.pipeline_profile import last_pipeline, profile_table, read_runs

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
T0 = 1_700_000_000  # seconds since the epoch; MLflow takes a start time of 0 as "now"


def add_run(client: MlflowClient, experiment: str, name: str, stage: str, start_s: float, end_s: float | None,
            parent: str | None = None) -> str:  # fmt: skip
    tags = {"omni_r1.stage": stage, **({"mlflow.parentRunId": parent} if parent else {})}
    run = client.create_run(experiment, start_time=int((T0 + start_s) * 1000), tags=tags, run_name=name)
    if end_s is not None:
        client.set_terminated(run.info.run_id, end_time=int((T0 + end_s) * 1000))
    return run.info.run_id


def test_plain_repro_takes_the_newest_run_of_every_stage(mlflow_tmp) -> None:
    client = MlflowClient(mlflow_tmp)
    experiment = client.create_experiment("profile")
    add_run(client, experiment, "prepare", "prepare", 0, 10)  # an older run of prepare
    add_run(client, experiment, "prepare", "prepare", 100, 104)
    add_run(client, experiment, "pesft-omni_r1", "pesft", 106, 136)
    add_run(client, experiment, "evaluate-omni_r1_pesft", "evaluate", 140, None)  # still open
    parent, stages = last_pipeline(read_runs(client, experiment))
    assert parent is None
    assert [(r.name, r.seconds) for r in stages] == [("prepare", 4.0), ("pesft-omni_r1", 30.0),
                                                     ("evaluate-omni_r1_pesft", None)]  # fmt: skip
    # span 100 → 136 = 36 s; stage runs 4 + 30 = 34 s; start-up 2 s = 5.6% of the span
    table = profile_table(parent, stages).splitlines()
    assert table[-3].split()[-1] == "34.0" and table[-2].split()[-1] == "36.0"
    assert table[-1].split()[-2:] == ["2.0", "5.6%"]
    assert table[2].split()[-2:] == ["30.0", "83.3%"]  # 30 / 36


def test_a_parent_pipeline_run_bounds_the_span(mlflow_tmp) -> None:
    client = MlflowClient(mlflow_tmp)
    experiment = client.create_experiment("profile")
    add_run(client, experiment, "prepare", "prepare", 0, 5)  # outside the pipeline run
    parent_id = add_run(client, experiment, "pipeline", "pipeline", 200, 300)
    add_run(client, experiment, "tokenizer", "tokenizer", 210, 250, parent=parent_id)
    add_run(client, experiment, "report", "report", 260, 270, parent=parent_id)
    parent, stages = last_pipeline(read_runs(client, experiment))
    assert parent.run_id == parent_id and [r.name for r in stages] == ["tokenizer", "report"]
    # span = the parent's 100 s; stage runs 40 + 10 = 50 s; start-up 50 s = 50.0%
    assert profile_table(parent, stages).splitlines()[-1].split()[-2:] == ["50.0", "50.0%"]


def test_no_run_recorded_is_said_not_raised(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    pipeline_profile.main(str(REPO_PARAMS))
    assert "no pipeline run recorded" in capsys.readouterr().out
    assert not (tmp_path / "absent.db").exists()  # reading did not create a store
    assert last_pipeline([]) == (None, [])
