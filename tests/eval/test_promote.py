"""Promote: register the best checkpoint; the champion alias moves only when it is beaten."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.promote import TAG_AVERAGE, beats, champion_average


def write_eval(cfg, track: str, step: str, average: float) -> None:
    ref = CheckpointRef(track, step)
    path = ref.metrics_path(cfg.paths.metrics_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fidelity = {"headline": "code_agreement", "average": {"code_agreement": {"mean": 0.5, "low": 0.4, "high": 0.6}}}
    path.write_text(json.dumps({"natural": average, "average": average, "fidelity": fidelity}))  # as evaluate writes
    folder = ref.checkpoint_dir(cfg.paths.checkpoints_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"track": track, "step": step}))


def test_beats_rule() -> None:
    assert beats(0.1, None, 0.0)  # no champion yet
    assert beats(0.2, 0.1, 0.0) and not beats(0.1, 0.1, 0.0) and not beats(0.15, 0.1, 0.1)
    assert champion_average(None) is None


def test_best_is_registered_and_alias_moves_only_on_a_win(eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from omni_r1.stages import promote

    monkeypatch.chdir(tmp_path)
    cfg = eval_cfg()
    (Path(cfg.paths.metrics_dir)).mkdir(parents=True)
    (Path(cfg.paths.metrics_dir) / "data_omnibench.json").write_text('{"total": 4}')
    write_eval(cfg, "omni_r1", "pesft", 0.10)
    write_eval(cfg, "omni_r1", "30", 0.40)
    write_eval(cfg, "omni_r1_zero", "no_perception_10", 0.90)  # an ablation: not a candidate

    first = promote.run(cfg)
    assert first["checkpoint"] == "omni_r1_30" and first["promoted"] and first["champion_version"] is None
    client = MlflowClient(mlflow_tmp)
    name, alias = cfg.tracking.registered_model, cfg.tracking.champion_alias
    champion = client.get_model_version_by_alias(name, alias)
    assert int(champion.version) == first["version"]
    assert champion.tags["omni_r1.track"] == "omni_r1" and champion.tags["omni_r1.step"] == "30"
    assert float(champion.tags[TAG_AVERAGE]) == 0.40 and "omni_r1.data.omnibench" in champion.tags
    assert not any("fidelity" in key for key in champion.tags)  # nested blocks are not tags
    files = [item.path for item in client.list_artifacts(champion.run_id, "checkpoint")]
    assert files == ["checkpoint/config.json"]

    # a worse best checkpoint: registered, alias stays
    write_eval(cfg, "omni_r1", "30", 0.20)
    second = promote.run(cfg)
    assert not second["promoted"] and second["champion_average"] == 0.40
    assert second["version"] == first["version"] + 1
    assert int(client.get_model_version_by_alias(name, alias).version) == first["version"]

    # a better one takes the alias
    write_eval(cfg, "omni_r1_zero", "20", 0.55)
    third = promote.run(cfg)
    assert third["promoted"] and third["checkpoint"] == "omni_r1_zero_20"
    assert int(client.get_model_version_by_alias(name, alias).version) == third["version"]
    assert json.loads((Path(cfg.paths.metrics_dir) / "promote.json").read_text())["promoted"] is True
