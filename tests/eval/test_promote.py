"""Promote: register the best checkpoint as a pyfunc model; only a main-line win on the same
Omni-Bench version moves the champion alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from omni_r1.eval.checkpoints import CheckpointRef
from omni_r1.eval.promote import TAG_AVERAGE, TAG_BENCH, TAG_LINE, beats, champion_average, run_line
from omni_r1.tracking import file_sha256


def write_eval(cfg, track: str, step: str, average: float) -> None:
    ref = CheckpointRef(track, step)
    path = ref.metrics_path(cfg.paths.metrics_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fidelity = {"headline": "code_agreement", "average": {"code_agreement": {"mean": 0.5, "low": 0.4, "high": 0.6}}}
    path.write_text(json.dumps({"natural": average, "average": average, "fidelity": fidelity}))  # as evaluate writes
    folder = ref.checkpoint_dir(cfg.paths.checkpoints_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"track": track, "step": step}))


def write_bench_manifest(cfg, total: int) -> str:
    path = Path(cfg.paths.metrics_dir) / f"data_{cfg.eval.dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"total": total}))
    return file_sha256(path)


def test_beats_rule() -> None:
    assert beats(0.1, None, 0.0)  # no champion yet
    assert beats(0.2, 0.1, 0.0) and not beats(0.1, 0.1, 0.0) and not beats(0.15, 0.1, 0.1)
    assert champion_average(None) is None


def test_run_line_is_main_only_without_any_override() -> None:
    assert run_line(None, (), False) == ("main", "")
    assert run_line("exp-1", (), False)[0] == "experiment"
    assert run_line(None, ("paper.yaml",), False) == ("experiment", "overlays paper.yaml")
    assert "params.yaml differs" in run_line(None, (), True)[1]


def test_best_is_registered_and_alias_moves_only_on_a_win(eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from omni_r1.stages import promote

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    cfg = eval_cfg()
    bench = write_bench_manifest(cfg, 4)
    write_eval(cfg, "omni_r1", "pesft", 0.10)
    write_eval(cfg, "omni_r1", "30", 0.40)
    write_eval(cfg, "omni_r1_zero", "no_perception_10", 0.90)  # an ablation: not a candidate

    first = promote.run(cfg)
    assert first["checkpoint"] == "omni_r1_30" and first["promoted"] and first["champion_version"] is None
    assert first["line"] == "main" and first["omnibench_version"] == bench
    client = MlflowClient(mlflow_tmp)
    name, alias = cfg.tracking.registered_model, cfg.tracking.champion_alias
    champion = client.get_model_version_by_alias(name, alias)
    assert int(champion.version) == first["version"]
    assert champion.tags["omni_r1.track"] == "omni_r1" and champion.tags["omni_r1.step"] == "30"
    assert float(champion.tags[TAG_AVERAGE]) == 0.40 and champion.tags[TAG_BENCH] == bench
    assert champion.tags[TAG_LINE] == "main" and "omni_r1.data.omnibench" in champion.tags
    assert not any("fidelity" in key for key in champion.tags)  # nested blocks are not tags

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


def test_experiment_run_gets_the_challenger_alias_and_never_the_champion(
    eval_cfg, mlflow_tmp, tmp_path, monkeypatch
) -> None:
    from omni_r1.stages import promote

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    cfg = eval_cfg()
    write_bench_manifest(cfg, 4)
    write_eval(cfg, "omni_r1", "30", 0.10)
    main = promote.run(cfg)

    write_eval(cfg, "omni_r1", "30", 0.90)  # far better, but from an experiment
    monkeypatch.setenv("DVC_EXP_NAME", "lr-sweep")
    experiment = promote.run(cfg)
    monkeypatch.delenv("DVC_EXP_NAME")
    overlaid = promote.run(cfg, overlays=(Path("params/paper.yaml"),))

    client = MlflowClient(mlflow_tmp)
    name = cfg.tracking.registered_model
    assert int(client.get_model_version_by_alias(name, cfg.tracking.champion_alias).version) == main["version"]
    assert int(client.get_model_version_by_alias(name, cfg.tracking.challenger_alias).version) == overlaid["version"]
    assert not experiment["promoted"] and not overlaid["promoted"]
    assert experiment["line"] == overlaid["line"] == "experiment"
    tags = client.get_model_version(name, str(experiment["version"])).tags
    assert tags[TAG_LINE] == "experiment" and tags["omni_r1.dvc_experiment"] == "lr-sweep"


def test_champion_on_another_bench_that_cannot_be_reloaded_refuses(eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from omni_r1.stages import promote

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    cfg = eval_cfg()
    old_bench = write_bench_manifest(cfg, 4)
    write_eval(cfg, "omni_r1", "30", 0.10)  # a folder with only config.json: not a loadable model
    first = promote.run(cfg)
    new_bench = write_bench_manifest(cfg, 5)
    write_eval(cfg, "omni_r1", "30", 0.90)
    second = promote.run(cfg)

    assert not second["promoted"] and second["champion_version"] == first["version"]
    assert old_bench in second["refused"] and new_bench in second["refused"] and "cannot be re-evaluated" in second["refused"]
    client = MlflowClient(mlflow_tmp)
    champion = client.get_model_version_by_alias(cfg.tracking.registered_model, cfg.tracking.champion_alias)
    assert int(champion.version) == first["version"] and champion.tags[TAG_BENCH] == old_bench


def test_champion_on_another_bench_is_reevaluated_first(bench_dirs, eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from tiny_models import build_tiny_for_tests

    from omni_r1.data.codes import cache_key, encode_dataset
    from omni_r1.model.images import encode_images
    from omni_r1.model.tiny import save_tiny
    from omni_r1.stages import promote

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    dataset, _ = bench_dirs
    cfg = eval_cfg(max_per_slice=1)
    cfg = cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"prepared_dir": str(dataset.parent), "encoded_dir": str(tmp_path / "enc")}),
        "run": cfg.run.model_copy(update={"device": "cpu"}),
    })  # fmt: skip
    ref = CheckpointRef("omni_r1", "30")
    omni = build_tiny_for_tests(seed=0)
    save_tiny(omni, ref.checkpoint_dir(cfg.paths.checkpoints_dir))
    encode_dataset(dataset, tmp_path / "enc" / "omnibench", lambda ims: encode_images(omni, ims), cache_key(dataset, "t"))
    ref.metrics_path(cfg.paths.metrics_dir).parent.mkdir(parents=True, exist_ok=True)
    ref.metrics_path(cfg.paths.metrics_dir).write_text(json.dumps({"average": 2.0}))  # an impossible score
    write_bench_manifest(cfg, 4)
    first = promote.run(cfg)

    new_bench = write_bench_manifest(cfg, 5)
    ref.metrics_path(cfg.paths.metrics_dir).write_text(json.dumps({"average": 1.5}))
    second = promote.run(cfg)

    # re-evaluated on the new bench, the champion's real average is at most 1, so 1.5 wins
    assert second["refused"] is None and 0.0 <= second["champion_average"] <= 1.0
    assert second["promoted"]
    client = MlflowClient(mlflow_tmp)
    old = client.get_model_version(cfg.tracking.registered_model, str(first["version"]))
    assert old.tags[TAG_BENCH] == new_bench and float(old.tags[TAG_AVERAGE]) == second["champion_average"]


def test_missing_bench_manifest_is_a_clear_error(eval_cfg, mlflow_tmp, tmp_path, monkeypatch) -> None:
    from omni_r1.stages import promote

    monkeypatch.chdir(tmp_path)
    cfg = eval_cfg()
    write_eval(cfg, "omni_r1", "30", 0.10)
    with pytest.raises(FileNotFoundError, match="data_omnibench.json"):
        promote.run(cfg)
